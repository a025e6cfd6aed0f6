import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { stopRnicEngine, WIRE_IDEAL } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { pvError } from '../../../../protocol/errors.js';
import { CqWord } from '../../../../protocol/rdma/Cq.js';
import { Access, SendFlags, type Wc, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { type End, fillPattern, makeEnd, makeNics, makePair } from './helpers/Fixture.js';
import type { RnicWorkerData, RnicWorkerReport } from './helpers/RnicWorker.js';

/** A worker with a bounded `next()` for its messages. */
function spawn(data: RnicWorkerData): { worker: Worker; next(timeoutMs?: number): Promise<RnicWorkerReport> } {
  const worker = new Worker(new URL('./helpers/RnicWorker.js', import.meta.url), { workerData: data });
  const queue: RnicWorkerReport[] = [];
  let waiter: ((m: RnicWorkerReport) => void) | undefined;
  let failure: unknown;
  worker.on('message', (m: RnicWorkerReport) => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(m);
    } else queue.push(m);
  });
  worker.on('error', (e) => {
    failure = e;
  });
  const next = (timeoutMs = 10_000) =>
    new Promise<RnicWorkerReport>((resolve, reject) => {
      if (failure) return reject(failure);
      const m = queue.shift();
      if (m) return resolve(m);
      const t = setTimeout(() => reject(pvError('PV_ERR_TIMEOUT', 'worker did not answer')), timeoutMs);
      worker.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      waiter = (msg) => {
        clearTimeout(t);
        resolve(msg);
      };
    });
  return { worker, next };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type WcRow = [number, number, number, number, number, number];
const row = (w: Wc): WcRow => [w.wrId, w.status, w.opcode, w.byteLen, w.immData, w.wcFlags];
const digest = (e: End) =>
  createHash('sha256')
    .update(Buffer.from(e.nic.memory, e.buf, e.bufLen))
    .digest('hex');

/** The same mixed workload in either engine mode; returns everything observable. */
function workload(a: End, b: End): { sq: WcRow[]; rq: WcRow[]; a: string; b: string } {
  fillPattern(a.nic.drv.bytes, a.buf, a.bufLen, 1);
  fillPattern(b.nic.drv.bytes, b.buf + 8192, 4096, 2);
  for (let i = 0; i < 3; i++) {
    b.drv.postRecv(b.qp, { wrId: 100 + i, sgList: [{ addr: b.buf + 16384 + i * 1024, length: 1000, lkey: b.lkey }] });
  }
  const sg = (off: number, length: number) => [{ addr: a.buf + off, length, lkey: a.lkey }];
  a.drv.postSend(a.qp, { wrId: 1, opcode: WrOpcode.RDMA_WRITE, sgList: sg(0, 1000), remoteAddr: b.buf, rkey: b.rkey });
  a.drv.postSend(a.qp, {
    wrId: 2,
    opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
    immData: 0x1234,
    sgList: sg(1000, 500),
    remoteAddr: b.buf + 1000,
    rkey: b.rkey,
  });
  a.drv.postSend(a.qp, {
    wrId: 3,
    opcode: WrOpcode.RDMA_READ,
    sgList: sg(8192, 2000),
    remoteAddr: b.buf + 8192,
    rkey: b.rkey,
  });
  a.drv.postSend(a.qp, { wrId: 4, opcode: WrOpcode.SEND, sgList: [...sg(100, 300), ...sg(5000, 477)] });
  a.drv.postSend(
    a.qp,
    { wrId: 5, opcode: WrOpcode.SEND, sendFlags: SendFlags.INLINE, sgList: [] },
    new Uint8Array(40).fill(0x77),
  );
  const sq = a.drv.waitCqes(a.scq, 5).map(row);
  const rq = b.drv.waitCqes(b.rcq, 3).map(row);
  // Then an error: forged rkey, and a WR behind it that gets flushed.
  a.drv.postSend(a.qp, {
    wrId: 6,
    opcode: WrOpcode.RDMA_WRITE,
    sgList: sg(0, 8),
    remoteAddr: b.buf,
    rkey: b.rkey ^ 0x80,
  });
  a.drv.postSend(a.qp, { wrId: 7, opcode: WrOpcode.RDMA_WRITE, sgList: sg(0, 8), remoteAddr: b.buf, rkey: b.rkey });
  sq.push(...a.drv.waitCqes(a.scq, 2).map(row));
  return { sq, rq, a: digest(a), b: digest(b) };
}

describe('rnic across threads: notify on the written word, RNR, dedicated device thread', () => {
  it('a Worker sleeping in Atomics.wait on the word of a buffer\u2019s last byte is woken by an RDMA WRITE', async () => {
    const { a, b } = makePair();
    a.nic.drv.bytes.fill(0xab, a.buf, a.buf + 4096);
    const dst = b.buf + 4096;
    const len = 1002; // the last byte is the 2nd byte of its word
    const index = (dst + len - 1) >> 2;
    const words = new Int32Array(b.nic.memory);
    let woken = false;
    for (let attempt = 0; attempt < 5 && !woken; attempt++) {
      b.nic.drv.bytes.fill(0, dst, dst + 4096);
      const w = spawn({ mode: 'sleeper', memory: b.nic.memory, index, expected: 0, timeoutMs: 3000 });
      try {
        assert.equal((await w.next()).type, 'ready');
        await sleep(20); // let it reach Atomics.wait; a lost race shows up as 'not-equal' and is retried
        a.drv.postSend(a.qp, {
          wrId: attempt,
          opcode: WrOpcode.RDMA_WRITE,
          sgList: [{ addr: a.buf, length: len, lkey: a.lkey }],
          remoteAddr: dst,
          rkey: b.rkey,
        });
        // ORDERING: seq-cst load; the WRITE completed in this thread before it returned.
        assert.notEqual(Atomics.load(words, index), 0);
        const r = await w.next();
        assert.equal(r.type, 'woken');
        if (r.type === 'woken' && r.result !== 'not-equal') {
          assert.equal(r.result, 'ok', 'woken by the device, not by the timeout');
          woken = true;
        }
      } finally {
        await w.worker.terminate();
      }
    }
    assert.ok(woken, 'the sleeper never reached Atomics.wait before the write in 5 attempts');
  });

  it('RNR: a receive posted by another thread before the retries run out lets the SEND succeed', async () => {
    const { a, b, lock } = makePair({ rnrRetry: 7, minRnrTimer: 31 });
    const w = spawn({
      mode: 'rnr-poster',
      nic: { state: b.nic.state, memory: b.nic.memory },
      lock,
      qpn: b.qp.qpn,
      rqAddr: b.qp.rqAddr,
      rqEntries: b.qp.rqEntries,
      slot: b.qp.rqProd,
      wr: { wrId: 55, sgList: [{ addr: b.buf, length: 64, lkey: b.lkey }] },
      timeoutMs: 10_000,
    });
    try {
      assert.equal((await w.next()).type, 'ready');
      a.nic.drv.bytes.fill(0x42, a.buf, a.buf + 64);
      a.drv.postSend(a.qp, { wrId: 1, opcode: WrOpcode.SEND, sgList: [{ addr: a.buf, length: 64, lkey: a.lkey }] });
      assert.deepEqual(
        a.drv.waitCqes(a.scq, 1).map((x) => [x.wrId, x.status]),
        [[1, WcStatus.SUCCESS]],
      );
      const posted = await w.next();
      assert.deepEqual(posted, { type: 'posted', sawWaiter: true });
      assert.deepEqual(
        b.drv.waitCqes(b.rcq, 1).map((x) => [x.wrId, x.status, x.byteLen]),
        [[55, WcStatus.SUCCESS, 64]],
      );
      assert.equal(b.nic.drv.bytes[b.buf + 63], 0x42);
      assert.ok(a.nic.dev.metrics.rnrRetries >= 1);
    } finally {
      await w.worker.terminate();
    }
  });

  it('two threads ringing inline doorbells on the same NICs at once lose nothing (the fabric lock)', async () => {
    // Two requester QPs on NIC 0, one driven by this thread and one by a worker, SEND to two
    // responder QPs on NIC 1 that share ONE receive CQ: both threads produce into it.
    const { nics, lock } = makeNics({ count: 2 });
    const [n0, n1] = nics;
    const a = makeEnd(n0, { sigAll: true });
    const c = makeEnd(n0, { sigAll: true });
    const SIZE = 256;
    const COUNT = 1000;
    const pd = n1.drv.createPd();
    const shared = n1.drv.createCq(4096);
    const scq = n1.drv.createCq(16);
    const buf = n1.drv.alloc(2 * SIZE);
    const mr = n1.drv.regMr(pd, buf, 2 * SIZE, Access.LOCAL_WRITE);
    const resp = [0, 1].map(() => n1.drv.createQp(pd, scq, shared, { rqEntries: 1024 }));
    for (const [req, r] of [
      [a, resp[0]],
      [c, resp[1]],
    ] as const) {
      req.drv.connect(req.qp, 2, r.qpn);
      n1.drv.connect(r, 1, req.qp.qpn);
    }
    for (let i = 0; i < COUNT; i++) {
      for (const k of [0, 1]) {
        n1.drv.postRecv(
          resp[k],
          { wrId: (k + 1) * 100_000 + i, sgList: [{ addr: buf + k * SIZE, length: SIZE, lkey: mr.lkey }] },
          false,
        );
      }
    }
    n1.drv.ringRq(resp[0]);
    n1.drv.ringRq(resp[1]);
    const w = spawn({
      mode: 'driver',
      nics: nics.map((n) => ({ state: n.state, memory: n.memory })),
      lock,
      nic: 0,
      qp: c.qp,
      scq: c.scq,
      opcode: WrOpcode.SEND,
      src: { addr: c.buf, lkey: c.lkey },
      dst: { addr: 0, rkey: 0 },
      size: SIZE,
      count: COUNT,
    });
    try {
      assert.equal((await w.next()).type, 'ready');
      let ok = 0;
      for (let i = 0; i < COUNT; i++) {
        a.drv.postSend(a.qp, { wrId: i, opcode: WrOpcode.SEND, sgList: [{ addr: a.buf, length: SIZE, lkey: a.lkey }] });
        const [wc] = a.drv.waitCqes(a.scq, 1);
        if (wc.status === WcStatus.SUCCESS && wc.wrId === i) ok++;
      }
      assert.equal(ok, COUNT);
      assert.deepEqual(await w.next(60_000), { type: 'driven', ok: COUNT, statuses: [] });
      const got = n1.drv.waitCqes(shared, 2 * COUNT);
      // ORDERING: seq-cst load of the flag produceCqe would store with Atomics.store.
      assert.equal(Atomics.load(shared.ring, CqWord.OVERFLOW), 0);
      for (const k of [1, 2]) {
        const mine = got.filter((x) => Math.floor(x.wrId / 100_000) === k);
        assert.deepEqual(
          mine.map((x) => x.wrId),
          Array.from({ length: COUNT }, (_, i) => k * 100_000 + i),
          `receive completions of responder ${k}, each once and in order`,
        );
        assert.ok(mine.every((x) => x.status === WcStatus.SUCCESS && x.byteLen === SIZE));
      }
      assert.equal(n1.drv.poll(shared).length, 0, 'nothing extra');
      assert.equal(n0.dev.metrics.wrs, 2 * COUNT);
    } finally {
      await w.worker.terminate();
    }
  });

  for (const layout of ['one engine for both NICs', 'one engine per NIC'] as const) {
    it(`dedicated mode with a real device thread gives the same results as inline (${layout})`, async () => {
      const inline = makePair({ sigAll: true });
      const expected = workload(inline.a, inline.b);
      assert.deepEqual(
        expected.sq.map((r) => r[1]),
        [0, 0, 0, 0, 0, WcStatus.REM_ACCESS_ERR, WcStatus.WR_FLUSH_ERR],
      );
      assert.deepEqual(
        expected.rq.map((r) => r[1]),
        [0, 0, 0],
      );

      const p = makePair({ sigAll: true, mode: 'dedicated' });
      // Nothing runs a dedicated NIC's doorbell until its device thread does.
      p.a.drv.postSend(p.a.qp, { wrId: 0, opcode: WrOpcode.RDMA_WRITE, sgList: [], remoteAddr: 0, rkey: 0 });
      assert.equal(p.a.drv.poll(p.a.scq).length, 0);
      const stop = new SharedArrayBuffer(4);
      const groups = layout === 'one engine for both NICs' ? [[0, 1]] : [[0], [1]];
      const engines = groups.map((serve) =>
        spawn({
          mode: 'engine',
          nics: p.nics.map((n) => ({ state: n.state, memory: n.memory })),
          serve,
          lock: p.lock,
          wire: WIRE_IDEAL,
          stop,
          spinBudget: 1000,
        }),
      );
      try {
        for (const e of engines) assert.equal((await e.next()).type, 'ready');
        assert.equal(p.a.drv.waitCqes(p.a.scq, 1)[0].wrId, 0);
        const got = workload(p.a, p.b);
        assert.deepEqual(got, expected);
        stopRnicEngine(
          p.nics.map((n) => n.dev),
          { words: new Int32Array(stop), index: 0 },
        );
        for (const e of engines) assert.equal((await e.next()).type, 'done');
        // Executed WRs (the flushed one is not executed): the zero-length probe + six.
        assert.equal(p.a.nic.dev.metrics.wrs, 7);
      } finally {
        for (const e of engines) await e.worker.terminate();
      }
    });
  }
});
