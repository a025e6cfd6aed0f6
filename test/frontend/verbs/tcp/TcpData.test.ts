/**
 * The tcp transport moves real bytes between two guests, each in its own Worker with its own
 * memory and software NIC thread, over loopback TCP: RDMA WRITE, READ, SEND and WRITE_WITH_IMM
 * for sizes 1 B … 8 MiB (powers of two and odd sizes), with the bytes just past each transfer
 * checked untouched, plus gather/scatter and INLINE.
 */

import assert from 'node:assert/strict';
import { Access, SendFlags, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { connectPair, TcpPeer } from './helpers/TcpPeer.js';
import type { Endpoint } from './helpers/TcpPeerWorker.js';

const MIB = 1024 * 1024;
const GUARD = 16;
const BUF = 8 * MIB + 64 * 1024;
const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const POW2: number[] = [];
for (let s = 1; s <= 8 * MIB; s *= 2) POW2.push(s);
const SIZES = [...POW2, 3, 1000, 4097, 65535, 65537, 1_000_003, 8 * MIB - 1];

describe('tcp transport: data moves between two guests over loopback TCP', function () {
  this.timeout(240_000);
  let a: TcpPeer;
  let b: TcpPeer;
  let ea: Endpoint;
  let eb: Endpoint;
  let seed = 10;

  before(async () => {
    [a, b] = await Promise.all([TcpPeer.start('A'), TcpPeer.start('B')]);
    ea = await a.setup({ bufBytes: BUF, access: ALL });
    eb = await b.setup({ bufBytes: BUF, access: ALL });
    await connectPair(a, ea, b, eb, ALL);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  /** Fills the destination (plus guard) with a different pattern than the source. */
  async function prepare(src: TcpPeer, srcAddr: number, dst: TcpPeer, dstAddr: number, size: number): Promise<number> {
    seed += 2;
    await src.fill(srcAddr, size, seed);
    await dst.fill(dstAddr, size + GUARD, seed + 1);
    return seed;
  }

  /** The destination holds the source pattern, and the guard bytes after it are untouched. */
  async function check(dst: TcpPeer, dstAddr: number, size: number, s: number): Promise<void> {
    assert.equal(await dst.verify(dstAddr, size, s), -1, `${size} B: payload differs`);
    assert.equal(await dst.verify(dstAddr + size, GUARD, s + 1, size), -1, `${size} B: bytes past the end changed`);
  }

  it('RDMA WRITE: every byte lands at the target, sizes 1 B … 8 MiB', async () => {
    for (const size of SIZES) {
      const s = await prepare(a, ea.buf, b, eb.buf, size);
      await a.post(ea.qp, [
        {
          wrId: size,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: ea.buf, length: size, lkey: ea.lkey }],
          remoteAddr: eb.buf,
          rkey: eb.rkey,
        },
      ]);
      const [wc] = await a.poll(ea.sendCq, 1);
      assert.ok(wc, `${size} B: no completion`);
      assert.equal(wc.status, WcStatus.SUCCESS, `${size} B: status ${wc.status}`);
      assert.equal(wc.opcode, WcOpcode.RDMA_WRITE);
      assert.equal(wc.wrId, size);
      await check(b, eb.buf, size, s);
    }
  });

  it('RDMA READ: the requester gets the target bytes, sizes 1 B … 8 MiB', async () => {
    for (const size of SIZES) {
      const s = await prepare(b, eb.buf, a, ea.buf, size);
      await a.post(ea.qp, [
        {
          wrId: size + 1,
          opcode: WrOpcode.RDMA_READ,
          sgList: [{ addr: ea.buf, length: size, lkey: ea.lkey }],
          remoteAddr: eb.buf,
          rkey: eb.rkey,
        },
      ]);
      const [wc] = await a.poll(ea.sendCq, 1);
      assert.ok(wc, `${size} B: no completion`);
      assert.equal(wc.status, WcStatus.SUCCESS, `${size} B: status ${wc.status}`);
      assert.equal(wc.opcode, WcOpcode.RDMA_READ);
      assert.equal(wc.byteLen, size);
      await check(a, ea.buf, size, s);
    }
  });

  it('SEND: lands in the posted receive, RECV completion carries length and source QP', async () => {
    for (const size of SIZES) {
      const s = await prepare(a, ea.buf, b, eb.buf, size);
      await b.postRecv(eb.qp, [{ wrId: 7000 + size, sgList: [{ addr: eb.buf, length: size + GUARD, lkey: eb.lkey }] }]);
      await a.post(ea.qp, [
        { wrId: size, opcode: WrOpcode.SEND, sgList: [{ addr: ea.buf, length: size, lkey: ea.lkey }] },
      ]);
      const [sent] = await a.poll(ea.sendCq, 1);
      assert.equal(sent?.status, WcStatus.SUCCESS, `${size} B: send status ${sent?.status}`);
      assert.equal(sent.opcode, WcOpcode.SEND);
      const [recv] = await b.poll(eb.recvCq, 1);
      assert.ok(recv, `${size} B: no receive completion`);
      assert.deepEqual(
        [recv.status, recv.opcode, recv.wrId, recv.byteLen, recv.srcQp, recv.qpNum, recv.wcFlags],
        [WcStatus.SUCCESS, WcOpcode.RECV, 7000 + size, size, ea.qpNum, eb.qpNum, 0],
      );
      await check(b, eb.buf, size, s);
    }
  });

  it('RDMA WRITE_WITH_IMM: data lands and a receive completes RECV_RDMA_WITH_IMM with the immediate', async () => {
    for (const size of SIZES) {
      const s = await prepare(a, ea.buf, b, eb.buf, size);
      await b.postRecv(eb.qp, [{ wrId: 9000 + size, sgList: [] }]);
      const imm = (size * 2654435761) >>> 0;
      await a.post(ea.qp, [
        {
          wrId: size,
          opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
          immData: imm,
          sgList: [{ addr: ea.buf, length: size, lkey: ea.lkey }],
          remoteAddr: eb.buf,
          rkey: eb.rkey,
        },
      ]);
      const [sent] = await a.poll(ea.sendCq, 1);
      assert.equal(sent?.status, WcStatus.SUCCESS, `${size} B: status ${sent?.status}`);
      assert.equal(sent.opcode, WcOpcode.RDMA_WRITE);
      const [recv] = await b.poll(eb.recvCq, 1);
      assert.ok(recv, `${size} B: no receive completion`);
      assert.deepEqual(
        [recv.status, recv.opcode, recv.wrId, recv.byteLen, recv.immData, recv.wcFlags & WcFlags.WITH_IMM],
        [WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, 9000 + size, size, imm, WcFlags.WITH_IMM],
      );
      await check(b, eb.buf, size, s);
    }
  });

  it('SEND gathers 3 SGEs and scatters into 3 receive SGEs of other sizes; SEND_WITH_IMM carries imm', async () => {
    const parts = [1000, 70_000, 5];
    const total = parts.reduce((x, y) => x + y, 0);
    const srcAt = [0, 2000, 100_000].map((o) => ea.buf + o);
    const dstLens = [20_000, 51_000, 5];
    const dstAt = [0, 30_000, 90_000].map((o) => eb.buf + o);
    seed += 2;
    let from = 0;
    for (let i = 0; i < 3; i++) {
      await a.fill(srcAt[i], parts[i], seed, from);
      from += parts[i];
    }
    for (let i = 0; i < 3; i++) await b.fill(dstAt[i], dstLens[i], seed + 1);
    await b.postRecv(eb.qp, [
      { wrId: 1, sgList: dstAt.map((addr, i) => ({ addr, length: dstLens[i], lkey: eb.lkey })) },
    ]);
    await a.post(ea.qp, [
      {
        wrId: 2,
        opcode: WrOpcode.SEND_WITH_IMM,
        immData: 0xdeadbeef,
        sgList: srcAt.map((addr, i) => ({ addr, length: parts[i], lkey: ea.lkey })),
      },
    ]);
    assert.equal((await a.poll(ea.sendCq, 1))[0]?.status, WcStatus.SUCCESS);
    const [recv] = await b.poll(eb.recvCq, 1);
    assert.deepEqual(
      [recv?.status, recv?.byteLen, recv?.immData, recv?.wcFlags],
      [WcStatus.SUCCESS, total, 0xdeadbeef, WcFlags.WITH_IMM],
    );
    from = 0;
    for (let i = 0; i < 3; i++) {
      assert.equal(await b.verify(dstAt[i], dstLens[i], seed, from), -1, `receive SGE ${i}`);
      from += dstLens[i];
    }
  });

  it('INLINE: the payload is taken at post time, so the buffer may change right after', async () => {
    seed += 2;
    await a.fill(ea.buf, 50, seed);
    await b.fill(eb.buf, 50 + GUARD, seed + 1);
    await b.postRecv(eb.qp, [{ wrId: 3, sgList: [{ addr: eb.buf, length: 50 + GUARD, lkey: eb.lkey }] }]);
    await a.post(ea.qp, [
      {
        wrId: 4,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.INLINE,
        sgList: [
          { addr: ea.buf, length: 20, lkey: 0 },
          { addr: ea.buf + 20, length: 30, lkey: 0 },
        ],
      },
    ]);
    await a.fill(ea.buf, 50, seed + 5); // overwrite the source at once
    assert.equal((await a.poll(ea.sendCq, 1))[0]?.status, WcStatus.SUCCESS);
    const [recv] = await b.poll(eb.recvCq, 1);
    assert.equal(recv?.byteLen, 50);
    await check(b, eb.buf, 50, seed);
  });
});
