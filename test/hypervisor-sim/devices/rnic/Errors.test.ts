import assert from 'node:assert/strict';
import { WIRE_IB_EDR, WIRE_IDEAL } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { CqWord } from '../../../../protocol/rdma/Cq.js';
import { ModifyQpIn } from '../../../../protocol/rdma/NicRegs.js';
import { QpAttrMask, QpState, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { type End, makeEnd, makeNics, makePair } from './helpers/Fixture.js';

const write = (a: End, b: End, wrId: number, len = 32) =>
  a.drv.postSend(a.qp, {
    wrId,
    opcode: WrOpcode.RDMA_WRITE,
    sgList: [{ addr: a.buf, length: len, lkey: a.lkey }],
    remoteAddr: b.buf,
    rkey: b.rkey,
  });
const send = (a: End, wrId: number, len = 32) =>
  a.drv.postSend(a.qp, { wrId, opcode: WrOpcode.SEND, sgList: [{ addr: a.buf, length: len, lkey: a.lkey }] });
const toErr = (e: End) => e.drv.modify(e.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.ERR });

describe('rnic errors: flush, RNR, CQ overrun, DMA faults, hostile indices', () => {
  it('entering ERR flushes every outstanding WR of both queues with WR_FLUSH_ERR, and any later posted', () => {
    const { a, b } = makePair();
    for (let i = 0; i < 3; i++)
      b.drv.postRecv(b.qp, { wrId: 10 + i, sgList: [{ addr: b.buf, length: 64, lkey: b.lkey }] });
    // Sends posted while b's QP is in SQD are held (not executed).
    assert.equal(b.drv.modify(b.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.SQD }), 0);
    write(b, a, 20);
    write(b, a, 21);
    assert.equal(toErr(b), 0);
    const sq = b.drv.waitCqes(b.scq, 2);
    const rq = b.drv.waitCqes(b.rcq, 3);
    assert.deepEqual(
      sq.map((w) => [w.wrId, w.status, w.qpNum]),
      [
        [20, WcStatus.WR_FLUSH_ERR, b.qp.qpn],
        [21, WcStatus.WR_FLUSH_ERR, b.qp.qpn],
      ],
    );
    assert.deepEqual(
      rq.map((w) => [w.wrId, w.status, w.opcode]),
      [
        [10, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV],
        [11, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV],
        [12, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV],
      ],
    );
    b.drv.postRecv(b.qp, { wrId: 30, sgList: [] });
    write(b, a, 31);
    assert.deepEqual(
      b.drv.waitCqes(b.rcq, 1).map((w) => [w.wrId, w.status]),
      [[30, WcStatus.WR_FLUSH_ERR]],
    );
    assert.deepEqual(
      b.drv.waitCqes(b.scq, 1).map((w) => [w.wrId, w.status]),
      [[31, WcStatus.WR_FLUSH_ERR]],
    );
    assert.equal(b.nic.dev.metrics.flushed, 7);
  });

  it('RNR retry exceeded: a SEND with no receive posted fails after rnr_retry retries', () => {
    const { a, b } = makePair({ rnrRetry: 3, minRnrTimer: 1 });
    send(a, 1);
    send(a, 2);
    assert.deepEqual(
      a.drv.waitCqes(a.scq, 2).map((w) => [w.wrId, w.status]),
      [
        [1, WcStatus.RNR_RETRY_EXC_ERR],
        [2, WcStatus.WR_FLUSH_ERR],
      ],
    );
    assert.equal(a.nic.dev.metrics.rnrRetries, 3);
    assert.equal(a.drv.query(a.qp.qpn).state, QpState.ERR);
    assert.equal(b.drv.query(b.qp.qpn).state, QpState.RTS, 'an RNR NAK does not hurt the responder');
  });

  it('RNR also applies to WRITE_WITH_IMM (it consumes a receive); rnr_retry 0 fails at once', () => {
    const { a, b } = makePair({ rnrRetry: 0 });
    a.drv.postSend(a.qp, {
      wrId: 3,
      opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
      immData: 1,
      sgList: [],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    assert.equal(a.drv.waitCqes(a.scq, 1)[0].status, WcStatus.RNR_RETRY_EXC_ERR);
    assert.equal(a.nic.dev.metrics.rnrRetries, 0);
  });

  it('a full CQ overruns: the overflow flag is set, the CQE dropped and the QPs feeding the CQ go to ERR', () => {
    const { a, b } = makePair({ cqEntries: 2 });
    // A second QP completing into the same CQ (idle, connected to nobody in particular).
    const bystander = a.drv.createQp(a.pd, a.scq, a.rcq);
    a.drv.connect(bystander, 2, 77);
    write(a, b, 1);
    write(a, b, 2);
    write(a, b, 3);
    // ORDERING: seq-cst load of the flag produceCqe stored with Atomics.store.
    assert.equal(Atomics.load(a.scq.ring, CqWord.OVERFLOW), 1);
    assert.deepEqual(
      a.drv.poll(a.scq).map((w) => w.wrId),
      [1, 2],
    );
    assert.equal(a.drv.query(a.qp.qpn).state, QpState.ERR);
    assert.equal(a.drv.query(bystander.qpn).state, QpState.ERR, 'every QP feeding the overrun CQ');
    write(a, b, 4);
    assert.equal(a.drv.poll(a.scq).length, 0, 'an overrun CQ takes no more CQEs');
  });

  it('DMA faults complete the WR with an error, never a throw: LOC_PROT_ERR locally, REM_ACCESS_ERR remotely', () => {
    const p1 = makePair();
    p1.a.nic.dma.unmap(p1.a.buf, 4096);
    write(p1.a, p1.b, 1);
    assert.equal(p1.a.drv.waitCqes(p1.a.scq, 1)[0].status, WcStatus.LOC_PROT_ERR);
    assert.equal(p1.a.nic.dev.metrics.faults, 1);
    const p2 = makePair();
    p2.b.nic.dma.unmap(p2.b.buf, 4096);
    write(p2.a, p2.b, 1);
    assert.equal(p2.a.drv.waitCqes(p2.a.scq, 1)[0].status, WcStatus.REM_ACCESS_ERR);
    assert.equal(p2.b.nic.dev.metrics.faults, 1);
    const p3 = makePair();
    p3.b.nic.dma.readOnly(p3.b.buf, 4096);
    p3.b.drv.postRecv(p3.b.qp, { wrId: 8, sgList: [{ addr: p3.b.buf, length: 64, lkey: p3.b.lkey }] });
    send(p3.a, 2);
    assert.equal(p3.a.drv.waitCqes(p3.a.scq, 1)[0].status, WcStatus.REM_ACCESS_ERR);
    assert.equal(p3.b.drv.waitCqes(p3.b.rcq, 1)[0].status, WcStatus.LOC_PROT_ERR);
  });

  it('an unreachable send queue or CQ ring puts the QP in ERR without throwing', () => {
    const p1 = makePair();
    p1.a.nic.dma.unmap(p1.a.qp.sqAddr, 4096);
    assert.doesNotThrow(() => write(p1.a, p1.b, 1));
    assert.equal(p1.a.drv.query(p1.a.qp.qpn).state, QpState.ERR);
    const p2 = makePair();
    p2.a.nic.dma.unmap(p2.a.scq.addr, 64);
    assert.doesNotThrow(() => write(p2.a, p2.b, 1));
    assert.equal(p2.a.drv.query(p2.a.qp.qpn).state, QpState.ERR);
    assert.ok(p2.a.nic.dev.metrics.faults >= 1);
  });

  it('a hostile producer index (more WRs than the queue holds) puts the QP in ERR (XSA-39)', () => {
    const { a, b } = makePair({ sqEntries: 16, rqEntries: 16 });
    write(a, b, 1);
    assert.equal(a.drv.waitCqes(a.scq, 1)[0].status, WcStatus.SUCCESS);
    a.drv.ringSq(a.qp, 1 + 17);
    assert.equal(a.drv.query(a.qp.qpn).state, QpState.ERR);
    assert.equal(a.drv.poll(a.scq).length, 0, 'no completion is invented for slots that were never posted');
    // A hostile receive producer on the responder: the requester's SEND fails, the responder QP goes to ERR.
    const p = makePair({ rqEntries: 16 });
    p.b.drv.ringRq(p.b.qp, -1);
    send(p.a, 5);
    assert.equal(p.a.drv.waitCqes(p.a.scq, 1)[0].status, WcStatus.REM_OP_ERR);
    assert.equal(p.b.drv.query(p.b.qp.qpn).state, QpState.ERR);
  });

  it('a peer that is missing, not connected back, or not ready gets RETRY_EXC_ERR', () => {
    const host = makeNics({ count: 3 });
    const [x, y, z] = host.nics.map((n) => makeEnd(n));
    x.drv.connect(x.qp, 9, 1); // no NIC on port 9
    write(x, y, 1);
    assert.equal(x.drv.waitCqes(x.scq, 1)[0].status, WcStatus.RETRY_EXC_ERR);
    y.drv.connect(y.qp, 3, z.qp.qpn); // z is still RESET
    write(y, z, 2);
    assert.equal(y.drv.waitCqes(y.scq, 1)[0].status, WcStatus.RETRY_EXC_ERR);
    // d (port 1) → c (port 2), but c is connected to QP 99, not to d.
    const p = makePair();
    const c = makeEnd(p.nics[1]);
    const d = makeEnd(p.nics[0]);
    c.drv.connect(c.qp, 1, 99);
    d.drv.connect(d.qp, 2, c.qp.qpn);
    write(d, c, 3);
    assert.equal(d.drv.waitCqes(d.scq, 1)[0].status, WcStatus.RETRY_EXC_ERR);
  });

  it('the wire model: latency + bytes / bandwidth, nothing on the ideal wire; WRs still complete on EDR', () => {
    const { fabric } = makeNics({ count: 1, wire: WIRE_IB_EDR });
    assert.equal(fabric.wireNs(0), 600);
    assert.equal(fabric.wireNs(12_500), 1600);
    assert.equal(makeNics({ count: 1, wire: WIRE_IDEAL }).fabric.wireNs(1 << 30), 0);
    const { a, b } = makePair({ wire: { name: 'slow', latencyNs: 20_000, bytesPerNs: 1 } });
    a.nic.drv.bytes.fill(3, a.buf, a.buf + 32);
    write(a, b, 1);
    assert.equal(a.drv.waitCqes(a.scq, 1)[0].status, WcStatus.SUCCESS);
    assert.equal(b.nic.drv.bytes[b.buf + 31], 3);
  });
});
