/**
 * The native driver's queues end to end over real RnicDevice models: doorbell batching,
 * queue-full detection through QUERY_QP, the paravirtual backend's entry points
 * (postSendWords, postRecvWords, createCqAt), state checks, RESET and teardown.
 */

import assert from 'node:assert/strict';
import sinon from 'sinon';
import { cqBytes, pollCqes } from '../../../protocol/rdma/Cq.js';
import { NicReg, rqDoorbell, sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { emptyWc, QpAttrMask, QpState, SendFlags, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { encodeRecvWqe, encodeSendWqe, RECV_WQE_WORDS, SEND_WQE_WORDS } from '../../../protocol/rdma/Wqe.js';
import type { Iova } from '../../../protocol/Types.js';
import { ALL, BYTES, CAP, completions, type End, end, fill, pair, rts, same } from './helpers/Endpoints.js';
import { twoNics } from './helpers/TwoNics.js';

describe('rnic driver e2e: doorbells and queue space', () => {
  it('8 WRITEs posted then one flush cost ONE doorbell and all complete', () => {
    const { a, b } = pair();
    fill(a, 2, 8 * 512);
    const before = a.drv.doorbells;
    for (let i = 0; i < 8; i++) {
      a.drv.postSend(a.qpn, {
        wrId: 100 + i,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: a.buf + i * 512, length: 512, lkey: a.lkey }],
        remoteAddr: b.buf + i * 512,
        rkey: b.rkey,
      });
    }
    a.drv.flush();
    assert.equal(a.drv.doorbells - before, 1);
    assert.deepEqual(
      completions(a, 8).map((w) => w.wrId),
      [100, 101, 102, 103, 104, 105, 106, 107],
    );
    assert.ok(same(a, 0, b, 0, 8 * 512));
  });

  it('a flush rings every receive queue, then send queues with ≤ 2 new WRs, then longer batches (a quiet QP waits behind one WR, not a batch)', () => {
    const { a, b, nics } = pair();
    const q = end(nics.a);
    const qb = end(nics.b);
    rts(q, qb);
    rts(qb, q);
    fill(a, 3, 8 * 512);
    const write = (e: typeof a, peer: typeof b, i: number) => ({
      wrId: i,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: e.buf + i * 512, length: 512, lkey: e.lkey }],
      remoteAddr: peer.buf + i * 512,
      rkey: peer.rkey,
    });
    // The busy QP posts its batch first, then the quiet QP posts one WR and a receive.
    for (let i = 0; i < 8; i++) a.drv.postSend(a.qpn, write(a, b, i));
    a.drv.postSend(q.qpn, write(q, qb, 0));
    a.drv.postRecv(q.qpn, { wrId: 77, sgList: [{ addr: q.buf, length: 64, lkey: q.lkey }] });
    const bar = nics.a.pci.bars[0];
    const spy = sinon.spy(bar, 'write32');
    try {
      a.drv.flush();
      const order = spy
        .getCalls()
        .map((c) => c.args[0] as number)
        .filter((off) => off >= NicReg.DOORBELLS);
      assert.deepEqual(order, [rqDoorbell(q.qpn), sqDoorbell(q.qpn), sqDoorbell(a.qpn)]);
    } finally {
      spy.restore();
    }
    assert.deepEqual(
      completions(a, 8).map((w) => w.wrId),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(
      completions(q, 1).map((w) => w.status),
      [WcStatus.SUCCESS],
    );
    // Two WRs still count as short: posted after a batch of three, they are rung first.
    for (let i = 0; i < 3; i++) a.drv.postSend(a.qpn, write(a, b, i));
    for (let i = 0; i < 2; i++) a.drv.postSend(q.qpn, write(q, qb, i));
    const spy2 = sinon.spy(bar, 'write32');
    try {
      a.drv.flush();
      assert.deepEqual(
        spy2.getCalls().map((c) => c.args[0] as number),
        [sqDoorbell(q.qpn), sqDoorbell(a.qpn)],
      );
    } finally {
      spy2.restore();
    }
  });

  it('a full send queue → PV_ERR_RDMA_QUEUE_FULL until the device consumed (learned via QUERY_QP)', () => {
    const { a, b, nics } = pair('dedicated');
    const wr = (i: number) => ({
      wrId: i,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: a.buf, length: 8, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    for (let i = 0; i < 16; i++) a.drv.postSend(a.qpn, wr(i));
    const commands = a.drv.commands;
    assert.throws(() => a.drv.postSend(a.qpn, wr(16)), { code: 'PV_ERR_RDMA_QUEUE_FULL' });
    assert.equal(a.drv.commands - commands, 1, 'one QUERY_QP to check');
    assert.equal(nics.a.dev.queueDepth(), 0, 'nothing rung yet: the device has no work');
    a.drv.flush();
    // Dedicated engine: nothing ran yet, the queue is still full — and the device shows 16 deep.
    assert.throws(() => a.drv.postSend(a.qpn, wr(16)), { code: 'PV_ERR_RDMA_QUEUE_FULL' });
    assert.equal(nics.a.dev.queueDepth(), 16);
    assert.equal(nics.a.dev.poll(), 16);
    assert.equal(nics.a.dev.queueDepth(), 0);
    a.drv.postSend(a.qpn, wr(16));
    assert.equal(a.drv.queryQp(a.qpn).sqCons, 16);
  });
});

describe('rnic driver e2e: entry points of the paravirtual backend', () => {
  it('postSendWords / postRecvWords copy encoded WQEs; createCqAt makes the NIC write a ring the driver never reads', () => {
    const nics = twoNics();
    const a = end(nics.a);
    // B's receive CQ lives in "someone else's" pages: a ring at a device address we hand over.
    const ringBytes = cqBytes(16);
    const foreign = nics.b.drv.allocBuffer(ringBytes);
    const cqAt = nics.b.drv.createCqAt(16, nics.b.drv.dmaAddr(foreign.addr) as Iova);
    const bpd = nics.b.drv.allocPd();
    const bbuf = nics.b.drv.allocBuffer(4096).addr;
    const bmr = nics.b.drv.regMr(bpd, bbuf, 4096, ALL);
    const bq = nics.b.drv.createQp({ pd: bpd, sendCq: cqAt, recvCq: cqAt, cap: CAP, sqSigAll: false });
    const b: End = {
      s: nics.b,
      drv: nics.b.drv,
      pd: bpd,
      cq: cqAt,
      qpn: bq.qpn,
      buf: bbuf,
      lkey: bmr.lkey,
      rkey: bmr.rkey,
    };
    rts(a, b);
    rts(b, a);
    assert.throws(() => b.drv.pollCq(cqAt, 1, [emptyWc()]), { code: 'PV_ERR_RDMA_BAD_HANDLE' });

    const slot = new Int32Array(SEND_WQE_WORDS * 2);
    encodeRecvWqe(slot, 3, { wrId: 41, sgList: [{ addr: bbuf, length: 128, lkey: bmr.lkey }] });
    b.drv.postRecvWords(b.qpn, slot, 3);
    b.drv.ringRq(b.qpn);
    fill(a, 4, 128);
    encodeSendWqe(slot, SEND_WQE_WORDS, {
      wrId: 42,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 128, lkey: a.lkey }],
    });
    a.drv.postSendWords(a.qpn, slot, SEND_WQE_WORDS);
    a.drv.ringSq(a.qpn);
    assert.equal(completions(a, 1)[0].wrId, 42);
    const out = [emptyWc()];
    assert.equal(pollCqes(foreign.words, 16, 0, out, 1), 1, 'the CQE is in the foreign ring');
    assert.equal(out[0].wrId, 41);
    assert.equal(out[0].byteLen, 128);
    assert.ok(same(a, 0, b, 0, 128));
  });

  it('a copied WQE with more SGEs than the QP allows → PV_ERR_RDMA_BAD_WR, nothing queued', () => {
    const { a } = pair();
    const slot = new Int32Array(SEND_WQE_WORDS);
    encodeSendWqe(slot, 0, {
      wrId: 1,
      opcode: WrOpcode.SEND,
      sgList: [1, 2, 3].map((i) => ({ addr: a.buf + i, length: 1, lkey: a.lkey })),
    });
    const before = a.drv.doorbells;
    assert.throws(() => a.drv.postSendWords(a.qpn, slot, 0), { code: 'PV_ERR_RDMA_BAD_WR' });
    const rslot = new Int32Array(RECV_WQE_WORDS);
    encodeRecvWqe(rslot, 0, { wrId: 2, sgList: [1, 2, 3].map((i) => ({ addr: i, length: 1, lkey: 1 })) });
    assert.throws(() => a.drv.postRecvWords(a.qpn, rslot, 0), { code: 'PV_ERR_RDMA_BAD_WR' });
    a.drv.flush();
    assert.equal(a.drv.doorbells, before, 'nothing owed a doorbell');
  });
});

describe('rnic driver e2e: state and teardown', () => {
  it('posting a send before RTS → PV_ERR_RDMA_BAD_STATE; a receive in RESET too', () => {
    const nics = twoNics();
    const a = end(nics.a);
    const wr = { wrId: 1, opcode: WrOpcode.SEND, sgList: [] };
    assert.throws(() => a.drv.postSend(a.qpn, wr), { code: 'PV_ERR_RDMA_BAD_STATE' });
    assert.throws(() => a.drv.postRecv(a.qpn, { wrId: 1, sgList: [] }), { code: 'PV_ERR_RDMA_BAD_STATE' });
  });

  it('after RESET the driver restarts from the device’s indices and the QP works again', () => {
    const { a, b } = pair();
    a.drv.postSend(a.qpn, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: a.buf, length: 8, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    }); // never rung: RESET discards it
    a.drv.modifyQp(a.qpn, { qpState: QpState.RESET }, QpAttrMask.STATE);
    rts(a, b);
    fill(a, 8, 512);
    a.drv.postSend(a.qpn, {
      wrId: 2,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 512, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    a.drv.flush();
    assert.deepEqual(
      completions(a, 1).map((w) => [w.wrId, w.status]),
      [[2, WcStatus.SUCCESS]],
    );
    assert.ok(same(a, 0, b, 0, 512));
  });

  it('close() destroys every object and returns all queue memory; later calls → PV_ERR_DISCONNECTED', () => {
    const nics = twoNics();
    const free = nics.a.mem.freePageCount();
    const a = end(nics.a);
    assert.ok(nics.a.mem.freePageCount() < free);
    a.drv.freeBuffer({ addr: a.buf, pages: BYTES / 4096, words: new Int32Array(0) });
    a.drv.close();
    assert.equal(nics.a.mem.freePageCount(), free);
    assert.throws(() => a.drv.allocPd(), { code: 'PV_ERR_DISCONNECTED' });
  });
});
