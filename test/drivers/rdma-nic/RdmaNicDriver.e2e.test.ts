/**
 * The native driver end to end, single thread: two real RnicDevice models on one fabric, the
 * driver on each, real bytes moved between two guest memories: RDMA WRITE (and with immediate),
 * READ, SEND/RECV (scattered, inline, with immediate) and a bad rkey.
 */

import assert from 'node:assert/strict';
import { QpState, SendFlags, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { BYTES, completions, fill, pair, same } from './helpers/Endpoints.js';

describe('rnic driver e2e: RDMA WRITE', () => {
  it('64 KiB from A into B’s MR in two SGEs arrives byte for byte; one signaled CQE on A, none on B', () => {
    const { a, b } = pair();
    fill(a, 7);
    a.drv.postSend(a.qpn, {
      wrId: 11,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [
        { addr: a.buf, length: 4096, lkey: a.lkey },
        { addr: a.buf + 4096, length: BYTES - 4096, lkey: a.lkey },
      ],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    a.drv.flush();
    const [wc] = completions(a, 1);
    assert.equal(wc.status, WcStatus.SUCCESS);
    assert.equal(wc.opcode, WcOpcode.RDMA_WRITE);
    assert.equal(wc.wrId, 11);
    assert.equal(wc.qpNum, a.qpn);
    assert.ok(same(a, 0, b, 0, BYTES));
    completions(b, 0);
  });

  it('WRITE_WITH_IMM consumes a receive on B and reports the immediate (RECV_RDMA_WITH_IMM)', () => {
    const { a, b } = pair();
    fill(a, 3, 100);
    b.drv.postRecv(b.qpn, { wrId: 21, sgList: [] });
    b.drv.flush();
    a.drv.postSend(a.qpn, {
      wrId: 12,
      opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
      sendFlags: SendFlags.SIGNALED,
      immData: 0xabcd_0123,
      sgList: [{ addr: a.buf, length: 100, lkey: a.lkey }],
      remoteAddr: b.buf + 1000,
      rkey: b.rkey,
    });
    a.drv.flush();
    assert.equal(completions(a, 1)[0].status, WcStatus.SUCCESS);
    const [rwc] = completions(b, 1);
    assert.equal(rwc.opcode, WcOpcode.RECV_RDMA_WITH_IMM);
    assert.equal(rwc.immData, 0xabcd_0123);
    assert.equal(rwc.wcFlags & WcFlags.WITH_IMM, WcFlags.WITH_IMM);
    assert.equal(rwc.wrId, 21);
    assert.ok(same(a, 0, b, 1000, 100));
  });
});

describe('rnic driver e2e: RDMA READ', () => {
  it('A reads 64 KiB of B’s MR into its own buffer', () => {
    const { a, b } = pair();
    fill(b, 99);
    a.drv.postSend(a.qpn, {
      wrId: 13,
      opcode: WrOpcode.RDMA_READ,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: BYTES, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    a.drv.flush();
    const [wc] = completions(a, 1);
    assert.equal(wc.status, WcStatus.SUCCESS);
    assert.equal(wc.opcode, WcOpcode.RDMA_READ);
    assert.ok(same(a, 0, b, 0, BYTES));
  });
});

describe('rnic driver e2e: SEND / RECV', () => {
  it('a SEND lands in the posted receive buffer (scattered over 2 SGEs); byte_len and opcode on B', () => {
    const { a, b } = pair();
    fill(a, 5, 3000);
    b.drv.postRecv(b.qpn, {
      wrId: 31,
      sgList: [
        { addr: b.buf, length: 1000, lkey: b.lkey },
        { addr: b.buf + 8192, length: 4096, lkey: b.lkey },
      ],
    });
    b.drv.flush();
    a.drv.postSend(a.qpn, {
      wrId: 14,
      opcode: WrOpcode.SEND_WITH_IMM,
      immData: 77,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 3000, lkey: a.lkey }],
    });
    a.drv.flush();
    assert.equal(completions(a, 1)[0].opcode, WcOpcode.SEND);
    const [rwc] = completions(b, 1);
    assert.equal(rwc.status, WcStatus.SUCCESS);
    assert.equal(rwc.opcode, WcOpcode.RECV);
    assert.equal(rwc.byteLen, 3000);
    assert.equal(rwc.immData, 77);
    assert.ok(same(a, 0, b, 0, 1000));
    assert.ok(same(a, 1000, b, 8192, 2000));
  });

  it('an INLINE send carries the payload in the WQE: the source buffer may change right after posting', () => {
    const { a, b } = pair();
    fill(a, 1, 64);
    const before = Buffer.from(a.s.mem.view(a.buf, 64));
    b.drv.postRecv(b.qpn, { wrId: 32, sgList: [{ addr: b.buf, length: 64, lkey: b.lkey }] });
    b.drv.flush();
    a.drv.postSend(a.qpn, {
      wrId: 15,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED | SendFlags.INLINE,
      sgList: [
        { addr: a.buf, length: 40, lkey: 0 },
        { addr: a.buf + 40, length: 24, lkey: 0 },
      ],
    });
    a.s.mem.view(a.buf, 64).fill(0); // overwritten before the doorbell
    a.drv.flush();
    assert.equal(completions(a, 1)[0].status, WcStatus.SUCCESS);
    assert.equal(completions(b, 1)[0].byteLen, 64);
    assert.deepEqual(Buffer.from(b.s.mem.view(b.buf, 64)), before);
  });
});

describe('rnic driver e2e: remote access errors', () => {
  it('a bad rkey completes with REM_ACCESS_ERR, B’s memory is untouched and A’s QP goes to ERR', () => {
    const { a, b } = pair();
    fill(a, 9, 256);
    a.drv.postSend(a.qpn, {
      wrId: 16,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 256, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: (b.rkey ^ 0x55) >>> 0,
    });
    a.drv.flush();
    const [wc] = completions(a, 1);
    assert.equal(wc.status, WcStatus.REM_ACCESS_ERR);
    assert.equal(wc.wrId, 16);
    assert.ok(b.s.mem.view(b.buf, 256).every((x) => x === 0));
    assert.equal(a.drv.queryQp(a.qpn).state, QpState.ERR);
  });
});
