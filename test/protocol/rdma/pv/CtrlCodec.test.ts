import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { CtrlCodec, readCtrlSlot, writeCtrlSlot } from '../../../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlCommand, CtrlResult } from '../../../../protocol/rdma/pv/CtrlSchema.js';
import {
  PV_CTRL_MAX_MESSAGE,
  PV_CTRL_SLOT_SIZE,
  PV_CTRL_SLOT_WORDS,
  PV_MAX_ERROR_TEXT,
} from '../../../../protocol/rdma/pv/PvConstants.js';

const codec = new CtrlCodec(protobuf);

const ATTR = {
  qpState: 3,
  curQpState: 2,
  qpAccessFlags: 7,
  pkeyIndex: 1,
  portNum: 1,
  pathMtu: 5,
  destQpNum: 0xff_ffff,
  rqPsn: 11,
  sqPsn: 12,
  maxRdAtomic: 16,
  maxDestRdAtomic: 15,
  minRnrTimer: 14,
  timeout: 13,
  retryCnt: 7,
  rnrRetry: 6,
  dlid: 0xffff_ffff,
};
const CAP = { maxSendWr: 128, maxRecvWr: 64, maxSendSge: 5, maxRecvSge: 3, maxInlineData: 80 };

/** One of every command, with values at the edges of their types. */
const COMMANDS: CtrlCommand[] = [
  { kind: 'queryPort' },
  { kind: 'allocPd' },
  { kind: 'deallocPd', pd: 0xffff_ffff },
  {
    kind: 'regMr',
    pd: 1,
    addr: 2 ** 53 - 1,
    length: 0xffff_ffff,
    access: 15,
    npages: 2049,
    indirectRefs: [8, 0xffff_ffff, 0],
  },
  { kind: 'deregMr', mr: 4 },
  { kind: 'createCq', entries: 4096, ringRefs: Array.from({ length: 65 }, (_, i) => 1000 + i), ringGpa: 0 },
  // virtio-rdma: no refs, the ring's guest-physical address (above 2^32: a u64 on the wire).
  { kind: 'createCq', entries: 16, ringRefs: [], ringGpa: 2 ** 40 + 4096 },
  { kind: 'destroyCq', cq: 2 },
  { kind: 'createQp', pd: 1, sendCq: 2, recvCq: 3, cap: CAP, sqSigAll: true },
  { kind: 'modifyQp', qp: 5, mask: 0x1fffff, attr: ATTR },
  { kind: 'destroyQp', qp: 5 },
];

const RESULTS: CtrlResult[] = [
  { kind: 'port', portId: 7, state: 4, activeMtu: 5 },
  { kind: 'pd', pd: 1 },
  { kind: 'mr', mr: 2, lkey: 0xffff_ff01, rkey: 0x101 },
  { kind: 'cq', cq: 3, entries: 256 },
  { kind: 'qp', qp: 4, qpNum: 17, cap: CAP },
];

describe('vrdma control schema: every command and result survives encode → decode', () => {
  for (const cmd of COMMANDS) {
    it(`request ${cmd.kind} round-trips with its sequence number`, () => {
      const bytes = codec.encodeRequest({ seq: 0xffff_fffe, cmd });
      assert.ok(bytes.length <= PV_CTRL_MAX_MESSAGE);
      assert.deepEqual(codec.decodeRequest(bytes), { seq: 0xffff_fffe, cmd });
    });
  }

  for (const result of RESULTS) {
    it(`response with a ${result.kind} result round-trips`, () => {
      const rsp = { seq: 9, status: 0, code: '', message: '', result };
      assert.deepEqual(codec.decodeResponse(codec.encodeResponse(rsp)), rsp);
    });
  }

  it('an error response carries its catalogue code and status; the detail text is cut to its bound', () => {
    const long = 'x'.repeat(PV_MAX_ERROR_TEXT * 2);
    const r = codec.decodeResponse(
      codec.encodeResponse({ seq: 1, status: -108, code: 'PV_ERR_RDMA_BAD_MEMORY', message: long }),
    );
    assert.equal(r.status, -108);
    assert.equal(r.code, 'PV_ERR_RDMA_BAD_MEMORY');
    assert.equal(r.message.length, PV_MAX_ERROR_TEXT);
    assert.equal(r.result, undefined);
  });
});

describe('vrdma control decode §6 (hostile peer): bad bytes are a typed error, never anything else', () => {
  const valid = codec.encodeRequest({ seq: 3, cmd: COMMANDS[3] });

  it('garbage bytes → PV_ERR_BAD_REQUEST', () => {
    let seed = 12345;
    for (let trial = 0; trial < 200; trial++) {
      const junk = new Uint8Array(1 + (trial % 60));
      for (let i = 0; i < junk.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        junk[i] = seed >>> 24;
      }
      try {
        const r = codec.decodeRequest(junk);
        // Junk that happens to parse must still be a well-formed command with u32 fields.
        assert.equal(typeof r.cmd.kind, 'string');
      } catch (err) {
        assert.ok(['PV_ERR_BAD_REQUEST', 'PV_ERR_BAD_OP'].includes((err as { code: string }).code), String(err));
      }
    }
  });

  it('every truncation of a valid request → PV_ERR_BAD_REQUEST or a shorter, still typed, message', () => {
    for (let n = 1; n < valid.length; n++) {
      try {
        const r = codec.decodeRequest(valid.subarray(0, n));
        assert.ok(Number.isInteger(r.seq));
      } catch (err) {
        assert.ok(['PV_ERR_BAD_REQUEST', 'PV_ERR_BAD_OP'].includes((err as { code: string }).code), String(err));
      }
    }
    assert.throws(() => codec.decodeRequest(valid.subarray(0, valid.length - 1)), { code: 'PV_ERR_BAD_REQUEST' });
  });

  it('a request without a command → PV_ERR_BAD_OP', () => {
    assert.throws(() => codec.decodeRequest(new Uint8Array([0x08, 0x05])), { code: 'PV_ERR_BAD_OP' });
    assert.throws(() => codec.decodeRequest(new Uint8Array(0)), { code: 'PV_ERR_BAD_OP' });
  });

  it('a 64-bit address that is not a safe integer decodes as -1 (the backend refuses it)', () => {
    // Field 13 (reg_mr), length-delimited, holding field 2 (addr) = 2^64 - 1 as a varint.
    const addr = [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    const bytes = new Uint8Array([0x6a, addr.length, ...addr]);
    const r = codec.decodeRequest(bytes);
    assert.equal(r.cmd.kind, 'regMr');
    assert.equal((r.cmd as Extract<CtrlCommand, { kind: 'regMr' }>).addr, -1);
  });
});

describe('vrdma control slot: u32 length + message, rest zeroed, length bounded', () => {
  it('write puts the length in word 0 and the bytes after it, and zeroes the rest of the slot', () => {
    const words = new Int32Array(new SharedArrayBuffer(3 * PV_CTRL_SLOT_SIZE));
    const bytes = new Uint8Array(words.buffer);
    bytes.fill(0xff);
    const msg = codec.encodeRequest({ seq: 1, cmd: { kind: 'allocPd' } });
    writeCtrlSlot(words, PV_CTRL_SLOT_WORDS, msg);
    const base = PV_CTRL_SLOT_SIZE;
    assert.equal(words[PV_CTRL_SLOT_WORDS], msg.length);
    assert.deepEqual([...bytes.subarray(base + 4, base + 4 + msg.length)], [...msg]);
    for (let b = base + 4 + msg.length; b < base + PV_CTRL_SLOT_SIZE; b++) assert.equal(bytes[b], 0, `pad ${b}`);
    assert.equal(bytes[base - 1], 0xff, 'the previous slot is untouched');
    assert.equal(bytes[base + PV_CTRL_SLOT_SIZE], 0xff, 'the next slot is untouched');
    assert.deepEqual(codec.decodeRequest(readCtrlSlot(words, PV_CTRL_SLOT_WORDS)).cmd, { kind: 'allocPd' });
  });

  it('read copies the message out: rewriting the slot afterwards does not change what was read', () => {
    const words = new Int32Array(new SharedArrayBuffer(PV_CTRL_SLOT_SIZE));
    writeCtrlSlot(words, 0, new Uint8Array([1, 2, 3]));
    const got = readCtrlSlot(words, 0);
    new Uint8Array(words.buffer).fill(9);
    assert.deepEqual([...got], [1, 2, 3]);
  });

  it('a length word beyond 1020 → PV_ERR_BAD_LENGTH; a message too long to write → PV_ERR_BAD_LENGTH', () => {
    const words = new Int32Array(PV_CTRL_SLOT_WORDS);
    words[0] = PV_CTRL_MAX_MESSAGE + 1;
    assert.throws(() => readCtrlSlot(words, 0), { code: 'PV_ERR_BAD_LENGTH' });
    words[0] = -1;
    assert.throws(() => readCtrlSlot(words, 0), { code: 'PV_ERR_BAD_LENGTH' });
    assert.throws(() => writeCtrlSlot(words, 0, new Uint8Array(PV_CTRL_MAX_MESSAGE + 1)), {
      code: 'PV_ERR_BAD_LENGTH',
    });
    const refs = Array.from({ length: 400 }, () => 0xffff_ffff);
    assert.throws(() => codec.encodeRequest({ seq: 1, cmd: { kind: 'createCq', entries: 1, ringRefs: refs } }), {
      code: 'PV_ERR_BAD_LENGTH',
    });
  });
});
