import assert from 'node:assert/strict';
import { ERROR_CATALOGUE } from '../../../../protocol/errors.js';
import {
  decodeDataResponse,
  emptyDataResponse,
  encodeDataHeader,
  encodeDataResponse,
  PV_DATA_HDR_WORDS,
  PV_DATA_SLOT_EXACT,
  PV_DATA_WQE_WORDS,
  PvDataOp,
  PvDataReqWord,
  PvDataRspWord,
  rejectWcStatus,
} from '../../../../protocol/rdma/pv/DataSlot.js';
import {
  PV_CTRL_RING_ORDER,
  PV_CTRL_SLOT_SIZE,
  PV_DATA_RING_ORDER,
  PV_DATA_SLOT_SIZE,
  PV_DATA_SLOT_WORDS,
} from '../../../../protocol/rdma/pv/PvConstants.js';
import { WcStatus } from '../../../../protocol/rdma/Verbs.js';
import { SEND_WQE_USED_WORDS } from '../../../../protocol/rdma/Wqe.js';
import { ringBytes, ringSlots } from '../../../../protocol/ring/Layout.js';

/** Three slots; the one under test is the middle one so a write outside it is caught. */
function slots(): { words: Int32Array; bytes: Uint8Array; w: number; base: number } {
  const sab = new SharedArrayBuffer(3 * PV_DATA_SLOT_SIZE);
  return { words: new Int32Array(sab), bytes: new Uint8Array(sab), w: PV_DATA_SLOT_WORDS, base: PV_DATA_SLOT_SIZE };
}

/** Bytes of the middle slot that are not zero. */
function touched(bytes: Uint8Array, base: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < PV_DATA_SLOT_SIZE; b++) if (bytes[base + b] !== 0) out.push(b);
  return out;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('vrdma rings: sizes of the control and data rings (PvConstants.ts table)', () => {
  it('control ring: one page of 1 KiB slots holds 2 slots (control is synchronous)', () => {
    assert.equal(ringSlots(ringBytes(PV_CTRL_RING_ORDER), PV_CTRL_SLOT_SIZE), 2);
  });

  it('data ring: eight pages of 128-byte slots hold 128 slots', () => {
    assert.equal(ringSlots(ringBytes(PV_DATA_RING_ORDER), PV_DATA_SLOT_SIZE), 128);
  });

  it('a data request is 4 header words + the 28 used words of a send WQE, filling the slot exactly', () => {
    assert.equal(PV_DATA_HDR_WORDS + SEND_WQE_USED_WORDS, PV_DATA_SLOT_WORDS);
    assert.equal(PV_DATA_WQE_WORDS, SEND_WQE_USED_WORDS);
    assert.equal(PV_DATA_SLOT_EXACT, true);
  });
});

describe('vrdma data slot layout: every field on its documented bytes (DataSlot.ts offset tables)', () => {
  it('request header: op at 0, qp at 4, reserved 8-15 written as zero, WQE from byte 16', () => {
    assert.equal(PvDataReqWord.OP * 4, 0);
    assert.equal(PvDataReqWord.QP * 4, 4);
    assert.equal(PvDataReqWord.WQE * 4, 16);
    const { words, bytes, w, base } = slots();
    encodeDataHeader(words, w, 0xff as PvDataOp, 0);
    assert.deepEqual(touched(bytes, base), [0], 'op is byte 0 (value < 256)');
    const s2 = slots();
    encodeDataHeader(s2.words, s2.w, 0 as PvDataOp, 0xffff_ffff);
    assert.deepEqual(touched(s2.bytes, s2.base), range(4, 4), 'qp is bytes 4-7');
    const s3 = slots();
    s3.bytes.fill(0xff);
    encodeDataHeader(s3.words, s3.w, PvDataOp.POST_SEND, 7);
    for (let b = 8; b < 16; b++) assert.equal(s3.bytes[s3.base + b], 0, `reserved byte ${b} is zeroed`);
    assert.equal(s3.bytes[s3.base - 1], 0xff, 'the previous slot is untouched');
    assert.equal(s3.bytes[s3.base + 16], 0xff, 'the WQE words are the caller’s to write');
  });

  it('response: op byte 0, status bytes 2-3 (i16), qp 4-7, wr_id 8-15, pad from 16', () => {
    assert.equal(PvDataRspWord.PAD * 4, 16);
    const fields: Array<[string, (w: Int32Array, at: number) => void, number[]]> = [
      ['op', (d, at) => encodeDataResponse(d, at, 0xff, 0, 0, 0), [0]],
      ['status', (d, at) => encodeDataResponse(d, at, 0, -1, 0, 0), [2, 3]],
      ['qp', (d, at) => encodeDataResponse(d, at, 0, 0, 0xffff_ffff, 0), range(4, 4)],
      ['wr_id', (d, at) => encodeDataResponse(d, at, 0, 0, 0, 2 ** 53 - 1), [...range(8, 4), 12, 13, 14]],
    ];
    for (const [name, write, want] of fields) {
      const { words, bytes, w, base } = slots();
      write(words, w);
      assert.deepEqual(touched(bytes, base), want, `${name} lands on bytes ${want.join(',')}`);
    }
  });
});

describe('vrdma data slot §5 (XSA-216): response padding is zeroed on every write', () => {
  it('a slot full of 0xFF has bytes 1 and 16-127 zero after encode, and the neighbours are untouched', () => {
    const { words, bytes, w, base } = slots();
    bytes.fill(0xff);
    encodeDataResponse(words, w, PvDataOp.POST_RECV, -108, 3, 42);
    assert.equal(bytes[base + 1], 0, 'pad byte 1');
    for (let b = 16; b < PV_DATA_SLOT_SIZE; b++) assert.equal(bytes[base + b], 0, `pad byte ${b}`);
    for (let b = 0; b < base; b++) assert.equal(bytes[b], 0xff, `byte ${b} before the slot`);
    for (let b = base + PV_DATA_SLOT_SIZE; b < bytes.length; b++) assert.equal(bytes[b], 0xff, `byte ${b} after`);
  });

  it('decode reads back what encode wrote; the status is sign-extended', () => {
    const { words, w } = slots();
    encodeDataResponse(words, w, PvDataOp.POST_SEND, ERROR_CATALOGUE.PV_ERR_RDMA_BAD_HANDLE.status, 9, 2 ** 40 + 3);
    const r = decodeDataResponse(words, w, emptyDataResponse());
    assert.deepEqual(r, { op: PvDataOp.POST_SEND, status: -100, qp: 9, wrId: 2 ** 40 + 3 });
  });
});

describe('vrdma data slot: a refused WR maps to the nearest verbs completion status', () => {
  it('bad memory → LOC_PROT_ERR, bad length → LOC_LEN_ERR, anything else → LOC_QP_OP_ERR', () => {
    assert.equal(rejectWcStatus(ERROR_CATALOGUE.PV_ERR_RDMA_BAD_MEMORY.status), WcStatus.LOC_PROT_ERR);
    assert.equal(rejectWcStatus(ERROR_CATALOGUE.PV_ERR_BAD_LENGTH.status), WcStatus.LOC_LEN_ERR);
    assert.equal(rejectWcStatus(ERROR_CATALOGUE.PV_ERR_RDMA_BAD_HANDLE.status), WcStatus.LOC_QP_OP_ERR);
    assert.equal(rejectWcStatus(ERROR_CATALOGUE.PV_ERR_BAD_OP.status), WcStatus.LOC_QP_OP_ERR);
  });
});
