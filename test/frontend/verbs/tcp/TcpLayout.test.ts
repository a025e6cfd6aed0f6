/**
 * The tcp transport's shared layouts, checked against their offset tables (style §3.4): the
 * control block (Layout.ts) and the wire header (Wire.ts), the framing rules `checkHeader`
 * enforces, and the transmit slab's contract (bytes are reused only after the socket's write
 * callback; frames stay contiguous across the wrap; 'drain' back-pressure).
 */

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import {
  CMD_MSG_BYTES,
  CMD_WORDS,
  CtrlWord,
  ctrlBytes,
  QP_WORDS,
  QpWord,
  qpWord,
  STAT_COUNT,
} from '../../../../frontend/verbs/tcp/Layout.js';
import { emptyJob, RespKind, RespQueue } from '../../../../frontend/verbs/tcp/RespQueue.js';
import { TxSlab } from '../../../../frontend/verbs/tcp/TxSlab.js';
import {
  checkHeader,
  decodeHeader,
  emptyHeader,
  encodeHeader,
  FrameFlag,
  type FrameHeader,
  Hdr,
  HEADER_SIZE,
  MAX_FRAME_PAYLOAD,
  WIRE_MAGIC,
  WIRE_VERSION,
  WireOp,
} from '../../../../frontend/verbs/tcp/Wire.js';

/** [name, first word, words] per documented control-block field. */
const CTRL_FIELDS: [string, number, number][] = [
  ['MAGIC', 0, 1],
  ['BELL', 1, 1],
  ['IDLE', 2, 1],
  ['CMD_SEQ', 3, 1],
  ['CMD_DONE', 4, 1],
  ['CMD_OPCODE', 5, 1],
  ['CMD_STATUS', 6, 1],
  ['CMD_MSG_LEN', 7, 1],
  ['STATS', 8, STAT_COUNT],
  ['CMD_IN', 16, CMD_WORDS],
  ['CMD_OUT', 48, CMD_WORDS],
  ['CMD_MSG', 80, CMD_MSG_BYTES / 4],
];

/** [field, byte offset, size] per documented header field. */
const HDR_FIELDS: [keyof typeof Hdr, number, number][] = [
  ['MAGIC', 0, 4],
  ['OPCODE', 4, 1],
  ['FLAGS', 5, 1],
  ['STATUS', 6, 1],
  ['AUX8', 7, 1],
  ['SRC_QPN', 8, 4],
  ['DST_QPN', 12, 4],
  ['PSN', 16, 4],
  ['EPOCH', 20, 4],
  ['LENGTH', 24, 4],
  ['RADDR_LO', 28, 4],
  ['RADDR_HI', 32, 4],
  ['RKEY', 36, 4],
  ['IMM', 40, 4],
  ['MSG_LEN', 44, 4],
  ['OFFSET', 48, 4],
  ['AUX32', 52, 4],
];

const ENUM_WORD: Record<string, number> = {
  MAGIC: CtrlWord.MAGIC,
  BELL: CtrlWord.BELL,
  IDLE: CtrlWord.IDLE,
  CMD_SEQ: CtrlWord.CMD_SEQ,
  CMD_DONE: CtrlWord.CMD_DONE,
  CMD_OPCODE: CtrlWord.CMD_OPCODE,
  CMD_STATUS: CtrlWord.CMD_STATUS,
  CMD_MSG_LEN: CtrlWord.CMD_MSG_LEN,
  STATS: CtrlWord.STATS,
  CMD_IN: CtrlWord.CMD_IN,
  CMD_OUT: CtrlWord.CMD_OUT,
  CMD_MSG: CtrlWord.CMD_MSG,
};

const HDR_OFFSET: Record<keyof typeof Hdr, number> = {
  MAGIC: Hdr.MAGIC,
  OPCODE: Hdr.OPCODE,
  FLAGS: Hdr.FLAGS,
  STATUS: Hdr.STATUS,
  AUX8: Hdr.AUX8,
  SRC_QPN: Hdr.SRC_QPN,
  DST_QPN: Hdr.DST_QPN,
  PSN: Hdr.PSN,
  EPOCH: Hdr.EPOCH,
  LENGTH: Hdr.LENGTH,
  RADDR_LO: Hdr.RADDR_LO,
  RADDR_HI: Hdr.RADDR_HI,
  RKEY: Hdr.RKEY,
  IMM: Hdr.IMM,
  MSG_LEN: Hdr.MSG_LEN,
  OFFSET: Hdr.OFFSET,
  AUX32: Hdr.AUX32,
};

/** Checks that [start, size) rows tile [0, total) exactly, in order, without overlap. */
function assertTiles(rows: [string, number, number][], total: number): void {
  let next = 0;
  for (const [name, start, size] of rows) {
    assert.equal(start, next, `${name} starts at ${start}, expected ${next} (gap or overlap)`);
    next = start + size;
  }
  assert.equal(next, total);
}

describe('tcp layout: control block matches its offset table', () => {
  it('fields tile the header words in order, every enum value matches the table', () => {
    for (const [name, word] of CTRL_FIELDS) assert.equal(ENUM_WORD[name], word, name);
    assertTiles(CTRL_FIELDS, CtrlWord.QP_TABLE);
  });

  it('QP doorbells: 4 aligned words per QP after the header; the block size covers maxQp QPs', () => {
    assert.equal(QP_WORDS, 4);
    assert.deepEqual([QpWord.SQ_PROD, QpWord.SQ_CONS, QpWord.RQ_PROD, QpWord.RQ_CONS], [0, 1, 2, 3]);
    assert.equal(qpWord(0, QpWord.SQ_PROD), CtrlWord.QP_TABLE);
    assert.equal(qpWord(7, QpWord.RQ_CONS), CtrlWord.QP_TABLE + 7 * 4 + 3);
    assert.equal(ctrlBytes(256), (CtrlWord.QP_TABLE + 256 * 4) * 4);
    assert.equal(ctrlBytes(256) % 4, 0, 'Int32Array over the whole block');
  });
});

describe('tcp wire: header matches its offset table and framing rules', () => {
  it('fields tile 56 bytes; encode puts each field at its offset, little-endian', () => {
    for (const [name, off] of HDR_FIELDS) assert.equal(HDR_OFFSET[name], off, name);
    assertTiles(
      HDR_FIELDS.map(([n, o, s]) => [n, o, s]),
      HEADER_SIZE,
    );
    const h: FrameHeader = {
      opcode: WireOp.SEND,
      flags: FrameFlag.FIRST,
      status: 0,
      aux8: 0,
      srcQpn: 0x0102_0304,
      dstQpn: 0x0506_0708,
      psn: 0x0a_0b0c,
      epoch: 0x1112_1314,
      length: 0x100,
      raddr: 0x1f_2122_2324_2526,
      rkey: 0x3132_3334,
      imm: 0x4142_4344,
      msgLen: 0x5152,
      offset: 0,
      aux32: 0,
    };
    const buf = Buffer.alloc(HEADER_SIZE + 8, 0xee);
    encodeHeader(buf, 4, h);
    assert.equal(buf.readUInt32LE(4 + Hdr.MAGIC), WIRE_MAGIC);
    assert.equal(buf[4 + Hdr.OPCODE], WireOp.SEND);
    assert.equal(buf.readUInt32LE(4 + Hdr.SRC_QPN), 0x0102_0304);
    assert.equal(buf.readUInt32LE(4 + Hdr.RADDR_LO), 0x2324_2526);
    assert.equal(buf.readUInt32LE(4 + Hdr.RADDR_HI), 0x1f_2122);
    assert.equal(buf.readUInt32LE(4 + Hdr.IMM), 0x4142_4344);
    assert.equal(buf[3], 0xee, 'nothing written before the header');
    assert.equal(buf[4 + HEADER_SIZE], 0xee, 'nothing written after it');
    const back = emptyHeader();
    assert.equal(decodeHeader(buf, 4, back), undefined);
    assert.deepEqual(back, h);
  });

  const base = (): FrameHeader => ({
    ...emptyHeader(),
    opcode: WireOp.WRITE,
    flags: FrameFlag.BOTH,
    length: 8,
    msgLen: 8,
  });
  const RULES: [string, Partial<FrameHeader>][] = [
    ['unknown opcode', { opcode: 0 }],
    ['unknown flags', { flags: 4 }],
    ['payload too large', { length: MAX_FRAME_PAYLOAD + 1, msgLen: MAX_FRAME_PAYLOAD + 1 }],
    ['psn over 24 bits', { psn: 0x100_0000 }],
    ['message over 2^31', { msgLen: 0x8000_0001, flags: FrameFlag.FIRST }],
    ['payload past the message', { msgLen: 4 }],
    ['FIRST at an offset', { offset: 8, msgLen: 16 }],
    ['LAST that ends early', { msgLen: 9 }],
    ['empty middle frame', { flags: 0, length: 0, offset: 4 }],
    ['control frame with payload', { opcode: WireOp.ACK }],
    ['status on a request', { status: 1 }],
    ['aux8 on a request', { aux8: 1 }],
    ['aux32 on a request', { aux32: 1 }],
    ['HELLO of another version', { opcode: WireOp.HELLO, length: 0, msgLen: 0, aux32: 1 }],
    ['HELLO without a port', { opcode: WireOp.HELLO, length: 0, msgLen: 0, aux8: WIRE_VERSION }],
  ];

  it('a well-formed header passes', () => {
    assert.equal(checkHeader(base()), undefined);
    const hello = { ...emptyHeader(), opcode: WireOp.HELLO, flags: FrameFlag.BOTH, aux8: WIRE_VERSION, aux32: 9 };
    assert.equal(checkHeader(hello), undefined);
  });

  for (const [rule, change] of RULES) {
    it(`refused: ${rule}`, () => {
      assert.notEqual(checkHeader({ ...base(), ...change }), undefined);
    });
  }

  it('refused: bad magic, and a remote address that is not a safe integer', () => {
    const buf = Buffer.alloc(HEADER_SIZE);
    encodeHeader(buf, 0, base());
    buf.writeUInt32LE(0x20_0000, Hdr.RADDR_HI);
    assert.match(decodeHeader(buf, 0, emptyHeader()) ?? '', /safe integer/);
    buf[Hdr.MAGIC] ^= 1;
    assert.equal(decodeHeader(buf, 0, emptyHeader()), 'bad magic');
  });
});

/** A socket that records writes and lets the test complete them (typed fake). */
class FakeSocket {
  writes: { len: number; first: number; cb: () => void }[] = [];
  full = false;
  write(buf: Buffer, cb: () => void): boolean {
    this.writes.push({ len: buf.length, first: buf[0], cb });
    return !this.full;
  }
  complete(n = this.writes.length): void {
    for (const w of this.writes.splice(0, n)) w.cb();
  }
}

describe('tcp tx slab: bounded, in-order reuse', () => {
  it('bytes are reserved again only after the write callback released them', () => {
    let released = 0;
    const slab = new TxSlab(100, () => released++);
    const sock = new FakeSocket();
    assert.equal(slab.reserve(60), 0);
    assert.equal(slab.reserve(30), 60);
    assert.equal(slab.reserve(20), -1, 'does not fit: back-pressure');
    slab.flush(sock as unknown as Socket);
    assert.deepEqual(
      sock.writes.map((w) => w.len),
      [90],
    );
    assert.equal(slab.reserve(20), -1, 'still in flight');
    sock.complete();
    assert.equal(released, 1);
    assert.equal(slab.used, 0);
    assert.equal(slab.reserve(100), 0, 'an empty slab restarts at 0: the largest frame fits');
  });

  it('a frame that does not fit at the end wraps to 0 and stays contiguous; flush writes both parts in order', () => {
    const slab = new TxSlab(100, () => {});
    const sock = new FakeSocket();
    slab.reserve(40);
    slab.reserve(40);
    slab.buf.fill(1, 0, 40);
    slab.buf.fill(2, 40, 80);
    slab.flush(sock as unknown as Socket);
    sock.complete(1); // the first 80 bytes are one write: nothing freed until it completes
    assert.equal(slab.used, 0);
    slab.reserve(50);
    slab.reserve(40); // 50 + 40 = 90 fits from 0
    sock.complete();
    const s2 = new TxSlab(100, () => {});
    const k2 = new FakeSocket();
    assert.equal(s2.reserve(70), 0);
    s2.flush(k2 as unknown as Socket);
    assert.equal(s2.reserve(20), 70);
    k2.complete(); // [0, 70) free, [70, 90) pending
    assert.equal(s2.reserve(40), 0, 'wraps: 40 bytes at 90 would not fit');
    s2.buf[70] = 7;
    s2.buf[0] = 9;
    s2.flush(k2 as unknown as Socket);
    assert.deepEqual(
      k2.writes.map((w) => [w.len, w.first]),
      [
        [20, 7],
        [40, 9],
      ],
    );
    assert.equal(s2.reserve(31), -1, 'the wrapped head may not run into the tail');
    k2.complete();
    assert.equal(s2.used, 0);
  });

  it("after write() returned false nothing more is handed over until 'drain' (unblock)", () => {
    const slab = new TxSlab(1000, () => {});
    const sock = new FakeSocket();
    sock.full = true;
    slab.reserve(10);
    slab.flush(sock as unknown as Socket);
    slab.reserve(10);
    slab.flush(sock as unknown as Socket);
    assert.equal(sock.writes.length, 1);
    slab.unblock();
    sock.full = false;
    slab.flush(sock as unknown as Socket);
    assert.equal(sock.writes.length, 2);
  });
});

describe('tcp response queue: FIFO across growth', () => {
  it('keeps order and fields when it doubles', () => {
    const q = new RespQueue(4);
    const j = emptyJob();
    for (let i = 0; i < 3; i++) {
      j.psn = i;
      q.push(j);
    }
    q.shift();
    for (let i = 3; i < 20; i++) {
      Object.assign(j, { kind: RespKind.READ, psn: i, addr: 2 ** 40 + i, len: i * 10 });
      q.push(j);
    }
    const out = emptyJob();
    const seen: number[] = [];
    while (q.peek(out)) {
      seen.push(out.psn);
      if (out.psn >= 3) assert.deepEqual([out.addr, out.len], [2 ** 40 + out.psn, out.psn * 10]);
      q.shift();
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 19 }, (_, i) => i + 1),
    );
  });
});
