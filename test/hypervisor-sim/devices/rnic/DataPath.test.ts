import assert from 'node:assert/strict';
import { SendFlags, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { type End, fillPattern, makePair, sameBytes } from './helpers/Fixture.js';

const write = (from: End, to: End, wrId: number, len: number, off = 0, flags = 0) =>
  from.drv.postSend(from.qp, {
    wrId,
    opcode: WrOpcode.RDMA_WRITE,
    sendFlags: flags,
    sgList: [{ addr: from.buf + off, length: len, lkey: from.lkey }],
    remoteAddr: to.buf + off,
    rkey: to.rkey,
  });

describe('rnic data path: RDMA WRITE, WRITE_WITH_IMM, READ, SEND/RECV', () => {
  it('RDMA WRITE and READ move every byte, 1 B … 8 MiB including odd sizes', () => {
    const MAX = 8 << 20;
    const { a, b } = makePair({ bufLen: MAX, memBytes: MAX + (2 << 20) });
    const ab = a.nic.drv.bytes;
    const bb = b.nic.drv.bytes;
    for (const len of [1, 3, 63, 64, 4095, 4096, 4097, 65537, (1 << 20) + 13, MAX]) {
      fillPattern(ab, a.buf, len, len);
      write(a, b, len, len);
      const [wc] = a.drv.waitCqes(a.scq, 1);
      assert.deepEqual([wc.wrId, wc.status, wc.opcode, wc.byteLen], [len, WcStatus.SUCCESS, WcOpcode.RDMA_WRITE, len]);
      assert.ok(sameBytes(ab, a.buf, bb, b.buf, len), `WRITE of ${len} bytes`);
      assert.equal(bb[b.buf + len], 0, 'nothing past the end');
      fillPattern(bb, b.buf, len, len * 7 + 1);
      a.drv.postSend(a.qp, {
        wrId: len + 1,
        opcode: WrOpcode.RDMA_READ,
        sgList: [{ addr: a.buf, length: len, lkey: a.lkey }],
        remoteAddr: b.buf,
        rkey: b.rkey,
      });
      const [rc] = a.drv.waitCqes(a.scq, 1);
      assert.deepEqual(
        [rc.wrId, rc.status, rc.opcode, rc.byteLen],
        [len + 1, WcStatus.SUCCESS, WcOpcode.RDMA_READ, len],
      );
      assert.ok(sameBytes(ab, a.buf, bb, b.buf, len), `READ of ${len} bytes`);
      bb.fill(0, b.buf, b.buf + len + 1);
    }
    assert.ok(a.nic.dev.metrics.bytes >= 2 * MAX);
  });

  it('WRITE_WITH_IMM writes, consumes a receive and delivers imm with WITH_IMM and byte_len', () => {
    const { a, b } = makePair();
    b.drv.postRecv(b.qp, { wrId: 41, sgList: [] });
    b.drv.postRecv(b.qp, { wrId: 42, sgList: [] });
    fillPattern(a.nic.drv.bytes, a.buf, 300, 3);
    a.drv.postSend(a.qp, {
      wrId: 7,
      opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
      immData: 0xdead_beef,
      sgList: [{ addr: a.buf, length: 300, lkey: a.lkey }],
      remoteAddr: b.buf + 100,
      rkey: b.rkey,
    });
    const [rwc] = b.drv.waitCqes(b.rcq, 1);
    assert.deepEqual(
      [rwc.wrId, rwc.status, rwc.opcode, rwc.wcFlags, rwc.immData, rwc.byteLen, rwc.qpNum, rwc.srcQp],
      [41, WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, WcFlags.WITH_IMM, 0xdead_beef, 300, b.qp.qpn, a.qp.qpn],
    );
    assert.equal(b.drv.query(b.qp.qpn).rqCons, 1, 'one receive consumed, the other still posted');
    assert.ok(sameBytes(a.nic.drv.bytes, a.buf, b.nic.drv.bytes, b.buf + 100, 300));
    assert.deepEqual(
      a.drv.waitCqes(a.scq, 1).map((w) => [w.wrId, w.status, w.opcode]),
      [[7, WcStatus.SUCCESS, WcOpcode.RDMA_WRITE]],
    );
  });

  it('SEND scatters across the receive SGEs (and gathers across send SGEs) in order', () => {
    const { a, b } = makePair();
    const ab = a.nic.drv.bytes;
    const bb = b.nic.drv.bytes;
    fillPattern(ab, a.buf, 4096, 11);
    const sends = [
      { addr: a.buf, length: 5, lkey: a.lkey },
      { addr: a.buf + 1000, length: 700, lkey: a.lkey },
      { addr: a.buf + 2000, length: 0, lkey: 0 },
      { addr: a.buf + 3000, length: 301, lkey: a.lkey },
    ];
    const recvs = [
      { addr: b.buf + 64, length: 3, lkey: b.lkey },
      { addr: b.buf + 8192, length: 500, lkey: b.lkey },
      { addr: b.buf + 20000, length: 1000, lkey: b.lkey },
    ];
    b.drv.postRecv(b.qp, { wrId: 100, sgList: recvs });
    a.drv.postSend(a.qp, { wrId: 1, opcode: WrOpcode.SEND_WITH_IMM, immData: 5, sgList: sends });
    const [wc] = b.drv.waitCqes(b.rcq, 1);
    assert.deepEqual(
      [wc.wrId, wc.status, wc.opcode, wc.byteLen, wc.wcFlags, wc.immData],
      [100, 0, WcOpcode.RECV, 1006, WcFlags.WITH_IMM, 5],
    );
    const sent = Buffer.concat(sends.map((s) => Buffer.from(ab.buffer, s.addr, s.length)));
    const got = Buffer.concat(recvs.map((r) => Buffer.from(bb.buffer, r.addr, r.length))).subarray(0, 1006);
    assert.ok(sent.equals(got));
    assert.equal(bb[b.buf + 20000 + 503], 0, 'the last receive SGE is filled only as far as the message');
    assert.equal(a.drv.waitCqes(a.scq, 1)[0].opcode, WcOpcode.SEND);
  });

  it('an inline SEND carries its payload in the WQE (the source buffer may change after posting)', () => {
    const { a, b } = makePair({ maxInline: 80 });
    const payload = new Uint8Array(77).map((_, i) => i * 3 + 1);
    b.drv.postRecv(b.qp, { wrId: 9, sgList: [{ addr: b.buf, length: 128, lkey: b.lkey }] });
    a.drv.postSend(a.qp, { wrId: 2, opcode: WrOpcode.SEND, sendFlags: SendFlags.INLINE, sgList: [] }, payload, false);
    a.nic.drv.bytes.fill(0xee, a.buf, a.buf + 4096);
    a.drv.ringSq(a.qp);
    const [wc] = b.drv.waitCqes(b.rcq, 1);
    assert.equal(wc.byteLen, 77);
    assert.deepEqual([...b.nic.drv.bytes.subarray(b.buf, b.buf + 78)], [...payload, 0]);
  });

  it('a zero-length SEND completes with byte_len 0; a zero-length WRITE needs no valid rkey', () => {
    const { a, b } = makePair();
    b.drv.postRecv(b.qp, { wrId: 3, sgList: [{ addr: b.buf, length: 16, lkey: b.lkey }] });
    a.drv.postSend(a.qp, { wrId: 1, opcode: WrOpcode.SEND, sgList: [] });
    a.drv.postSend(a.qp, { wrId: 2, opcode: WrOpcode.RDMA_WRITE, sgList: [], remoteAddr: 0, rkey: 0 });
    assert.deepEqual(
      b.drv.waitCqes(b.rcq, 1).map((w) => [w.wrId, w.status, w.byteLen]),
      [[3, 0, 0]],
    );
    assert.deepEqual(
      a.drv.waitCqes(a.scq, 2).map((w) => [w.wrId, w.status]),
      [
        [1, 0],
        [2, 0],
      ],
    );
  });

  it('unsignaled WRs complete without a CQE; signaled ones and sq_sig_all QPs get one', () => {
    const { a, b } = makePair({ sigAll: false });
    write(a, b, 1, 16);
    write(a, b, 2, 16, 0, SendFlags.SIGNALED);
    write(a, b, 3, 16);
    assert.deepEqual(
      a.drv.poll(a.scq).map((w) => w.wrId),
      [2],
    );
    assert.equal(a.drv.query(a.qp.qpn).sqCons, 3, 'all three were executed');
    assert.equal(a.nic.dev.metrics.wrs, 3);
  });

  it('many outstanding WRs behind one doorbell all run, in order', () => {
    const { a, b } = makePair({ sqEntries: 256, cqEntries: 512 });
    fillPattern(a.nic.drv.bytes, a.buf, 1 << 16, 5);
    for (let i = 0; i < 256; i++) {
      a.drv.postSend(
        a.qp,
        {
          wrId: 1000 + i,
          opcode: WrOpcode.RDMA_WRITE,
          sgList: [{ addr: a.buf + i * 256, length: 256, lkey: a.lkey }],
          remoteAddr: b.buf + i * 256,
          rkey: b.rkey,
        },
        undefined,
        false,
      );
    }
    a.drv.ringSq(a.qp);
    const wcs = a.drv.waitCqes(a.scq, 256);
    assert.deepEqual(
      wcs.map((w) => w.wrId),
      Array.from({ length: 256 }, (_, i) => 1000 + i),
    );
    assert.ok(wcs.every((w) => w.status === WcStatus.SUCCESS));
    assert.ok(sameBytes(a.nic.drv.bytes, a.buf, b.nic.drv.bytes, b.buf, 1 << 16));
    assert.equal(a.nic.dev.metrics.doorbells, 1, 'one doorbell for the batch');
  });

  it('resolves each queue once and reuses the view until the IOMMU generation moves', () => {
    const { a, b } = makePair();
    write(a, b, 1, 8);
    a.drv.waitCqes(a.scq, 1);
    const before = a.nic.dma.resolves;
    write(a, b, 2, 8);
    a.drv.waitCqes(a.scq, 1);
    assert.equal(a.nic.dma.resolves - before, 1, 'only the payload run resolves on the requester');
    a.nic.dma.restore();
    write(a, b, 3, 8);
    a.drv.waitCqes(a.scq, 1);
    assert.equal(a.nic.dma.resolves - before, 4, 'SQ and CQ re-resolved after a generation change');
  });
});
