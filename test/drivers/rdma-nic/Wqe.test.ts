/**
 * The WQE and CQE layouts the driver writes and the device reads (protocol/rdma/Wqe.ts, Cq.ts):
 * every field survives an encode/decode round trip, padding is zeroed, 64-bit values split into
 * two u32 words, and an address that is not a safe integer decodes as -1 so a validator refuses it.
 */

import assert from 'node:assert/strict';
import { CQE_WORDS, CqeWord, decodeCqe, encodeCqe } from '../../../protocol/rdma/Cq.js';
import { emptyWc, SendFlags, type Wc, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import {
  decodeRecvWqe,
  decodeSendWqe,
  emptyRecvWqe,
  emptySendWqe,
  encodeRecvWqe,
  encodeSendWqe,
  inlineByte,
  RECV_WQE_WORDS,
  SEND_WQE_USED_WORDS,
  SEND_WQE_WORDS,
  SendWqeWord,
} from '../../../protocol/rdma/Wqe.js';

const BIG = 2 ** 53 - 1;

describe('rdma WQE layout: send WQE round trip', () => {
  it('carries wrId, opcode, flags, imm, remote address, rkey and 5 SGEs with 64-bit values intact', () => {
    const words = new Int32Array(SEND_WQE_WORDS * 2).fill(-1);
    const sgList = [
      { addr: 0, length: 1, lkey: 7 },
      { addr: 0x1_0000_0000, length: 0xffff_ffff, lkey: 0xffff_ffff },
      { addr: BIG, length: 4096, lkey: 3 },
      { addr: 12345, length: 0, lkey: 0 },
      { addr: 2 ** 40 + 17, length: 99, lkey: 0x8000_0000 },
    ];
    encodeSendWqe(words, SEND_WQE_WORDS, {
      wrId: BIG,
      opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
      sendFlags: SendFlags.SIGNALED | SendFlags.FENCE,
      immData: 0xdead_beef,
      remoteAddr: 2 ** 52 + 3,
      rkey: 0xcafe_f00d,
      sgList,
    });
    const d = decodeSendWqe(words, SEND_WQE_WORDS, emptySendWqe());
    assert.equal(d.wrId, BIG);
    assert.equal(d.opcode, WrOpcode.RDMA_WRITE_WITH_IMM);
    assert.equal(d.sendFlags, SendFlags.SIGNALED | SendFlags.FENCE);
    assert.equal(d.numSge, 5);
    assert.equal(d.immData, 0xdead_beef);
    assert.equal(d.remoteAddr, 2 ** 52 + 3);
    assert.equal(d.rkey, 0xcafe_f00d);
    assert.equal(d.inlineLen, 0);
    assert.deepEqual(
      sgList.map((_, i) => ({ addr: d.sgeAddr[i], length: d.sgeLen[i], lkey: d.sgeLkey[i] })),
      sgList,
    );
    // Padding zeroed; the WQE before it untouched.
    for (let i = SEND_WQE_USED_WORDS; i < SEND_WQE_WORDS; i++) assert.equal(words[SEND_WQE_WORDS + i], 0);
    assert.equal(words[SEND_WQE_WORDS - 1], -1);
  });

  it('unused SGE slots are zeroed and num_sge counts only the used ones', () => {
    const words = new Int32Array(SEND_WQE_WORDS).fill(-1);
    encodeSendWqe(words, 0, { wrId: 1, opcode: WrOpcode.SEND, sgList: [{ addr: 8, length: 8, lkey: 8 }] });
    const d = decodeSendWqe(words, 0, emptySendWqe());
    assert.equal(d.numSge, 1);
    for (let i = SendWqeWord.SGE + 4; i < SEND_WQE_WORDS; i++) assert.equal(words[i], 0, `word ${i}`);
  });

  it('an inline payload is packed little-endian into the SGE area with num_sge 0', () => {
    const words = new Int32Array(SEND_WQE_WORDS);
    const payload = Uint8Array.from({ length: 80 }, (_, i) => (i * 37 + 11) & 0xff);
    encodeSendWqe(words, 0, { wrId: 2, opcode: WrOpcode.SEND, sendFlags: SendFlags.INLINE, sgList: [] }, payload);
    const d = decodeSendWqe(words, 0, emptySendWqe());
    assert.equal(d.numSge, 0);
    assert.equal(d.inlineLen, 80);
    for (let i = 0; i < 80; i++) assert.equal(inlineByte(words, 0, i), payload[i], `byte ${i}`);
  });

  it('an address with a high word ≥ 2^21 (not a safe integer) decodes as -1', () => {
    const words = new Int32Array(SEND_WQE_WORDS);
    encodeSendWqe(words, 0, { wrId: 3, opcode: WrOpcode.RDMA_READ, sgList: [{ addr: 0, length: 1, lkey: 1 }] });
    words[SendWqeWord.RADDR_HI] = 0x20_0000;
    words[SendWqeWord.SGE + 1] = -1;
    const d = decodeSendWqe(words, 0, emptySendWqe());
    assert.equal(d.remoteAddr, -1);
    assert.equal(d.sgeAddr[0], -1);
  });
});

describe('rdma WQE layout: receive WQE round trip', () => {
  it('carries wrId and 3 SGEs; padding zeroed', () => {
    const words = new Int32Array(RECV_WQE_WORDS).fill(-1);
    const sgList = [
      { addr: 2 ** 45, length: 65536, lkey: 1 },
      { addr: 4096, length: 1, lkey: 0xffff_ffff },
      { addr: 1, length: 2, lkey: 3 },
    ];
    encodeRecvWqe(words, 0, { wrId: 2 ** 33 + 5, sgList });
    const d = decodeRecvWqe(words, 0, emptyRecvWqe());
    assert.equal(d.wrId, 2 ** 33 + 5);
    assert.equal(d.numSge, 3);
    assert.deepEqual(
      sgList.map((_, i) => ({ addr: d.sgeAddr[i], length: d.sgeLen[i], lkey: d.sgeLkey[i] })),
      sgList,
    );
    assert.equal(words[3], 0, 'pad word');
  });
});

describe('rdma CQ layout: CQE round trip', () => {
  it('carries every ibv_wc field and zeroes the padding', () => {
    const words = new Int32Array(CQE_WORDS).fill(-1);
    const wc: Wc = {
      wrId: BIG,
      status: WcStatus.REM_ACCESS_ERR,
      opcode: WcOpcode.RECV_RDMA_WITH_IMM,
      vendorErr: 0xffff_fffe,
      byteLen: 0x8000_0000,
      immData: 0xffff_ffff,
      qpNum: 0xff_ffff,
      srcQp: 42,
      wcFlags: WcFlags.WITH_IMM,
    };
    encodeCqe(words, 0, wc);
    assert.deepEqual(decodeCqe(words, 0, emptyWc()), wc);
    for (let i = CqeWord.PAD; i < CQE_WORDS; i++) assert.equal(words[i], 0);
  });
});
