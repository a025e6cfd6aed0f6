/**
 * The verbs API over the native provider and real NIC models: a program opens its device with
 * `openDevice(env)` (native on one side, passthrough on the other — the same provider), connects
 * an RC QP pair with `connectRcQp`, and moves bytes with postSend/postRecv, waiting with
 * waitCq and reaping with pollCq from the CQ ring in its own memory.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import {
  allocPd,
  closeDevice,
  connectRcQp,
  createCq,
  createQp,
  openDevice,
  pollCq,
  postRecv,
  postSend,
  regMr,
  waitCq,
} from '../../../../frontend/verbs/index.js';
import { NativeProvider } from '../../../../frontend/verbs/native/NativeProvider.js';
import { stopRnicEngine } from '../../../../hypervisor-sim/devices/rnic/RnicEngine.js';
import { RnicFabric } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import type { Transport } from '../../../../protocol/Pci.js';
import { Access, emptyWc, SendFlags, type Wc, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { domId } from '../../../../protocol/Types.js';
import { type Nic, nic } from '../../../drivers/rdma-nic/helpers/TwoNics.js';
import { fakeEnv } from '../helpers/fakeEnv.js';

const ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const BYTES = 32 * 1024;

async function open(n: Nic, domid: number, transport: Transport) {
  const env = fakeEnv(domId(domid), {
    memory: n.mem,
    devices: [
      { device: 'ssd0', kind: 'nvme', transport: 'native' },
      { device: n.pci.name, kind: 'rdma-nic', transport, pci: n.pci },
    ],
  });
  const ctx = await openDevice(env);
  const pd = allocPd(ctx);
  const buf = ctx.allocBuffer(BYTES);
  const mr = regMr(pd, buf, BYTES, ACCESS);
  const cq = createCq(ctx, 32);
  const qp = createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 32, maxRecvWr: 32, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
  });
  return { ctx, pd, buf, mr, cq, qp };
}

type End = Awaited<ReturnType<typeof open>>;

const wc = [emptyWc()];

function reap(e: End, out: Wc[]): Wc {
  assert.equal(waitCq(e.cq, { timeoutMs: 10_000 }), true, 'a completion must arrive');
  assert.equal(pollCq(e.cq, 1, out), 1);
  return out[0];
}

describe('verbs over the native provider: RC traffic between two real NIC models', () => {
  let a: End;
  let b: End;
  let freeA: number;
  beforeEach(async () => {
    const fabric = new RnicFabric(RnicFabric.createLock());
    const na = nic(fabric, 1, 1);
    const nb = nic(fabric, 2, 2);
    freeA = na.mem.freePageCount();
    a = await open(na, 1, 'native');
    b = await open(nb, 2, 'passthrough');
    connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: b.ctx.portId }, ACCESS);
    connectRcQp(b.qp, { destQpNum: a.qp.qpNum, dlid: a.ctx.portId }, ACCESS);
  });

  afterEach(async () => {
    await closeDevice(a.ctx);
    await closeDevice(b.ctx);
  });

  it('openDevice picks the rdma-nic, loads the native provider for native and passthrough alike', () => {
    assert.ok(a.ctx.provider instanceof NativeProvider);
    assert.ok(b.ctx.provider instanceof NativeProvider);
    assert.equal(a.ctx.transport, 'native');
    assert.equal(b.ctx.provider.transport, 'passthrough');
    assert.deepEqual([a.ctx.portId, b.ctx.portId], [1, 2]);
  });

  it('RDMA WRITE then RDMA READ back: bytes verified on both sides', () => {
    const av = a.ctx.memory.view(a.buf, BYTES);
    for (let i = 0; i < BYTES; i++) av[i] = (i * 13 + 1) & 0xff;
    postSend(a.qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: BYTES, lkey: a.mr.lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey,
    });
    assert.equal(reap(a, wc).status, WcStatus.SUCCESS);
    assert.deepEqual(Buffer.from(b.ctx.memory.view(b.buf, BYTES)), Buffer.from(av));
    // B changes its buffer; A reads it back into the second half of its own.
    b.ctx.memory.view(b.buf, 4096).fill(0x5a);
    postSend(a.qp, {
      wrId: 2,
      opcode: WrOpcode.RDMA_READ,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf + BYTES / 2, length: 4096, lkey: a.mr.lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey,
    });
    const r = reap(a, wc);
    assert.deepEqual([r.wrId, r.status, r.opcode], [2, WcStatus.SUCCESS, WcOpcode.RDMA_READ]);
    assert.ok(a.ctx.memory.view((a.buf + BYTES / 2) as never, 4096).every((x) => x === 0x5a));
  });

  it('SEND / RECV: the receiver’s CQ reports RECV with byte_len; the data is in its buffer', () => {
    postRecv(b.qp, { wrId: 7, sgList: [{ addr: b.buf, length: 4096, lkey: b.mr.lkey }] });
    a.ctx.memory.view(a.buf, 100).fill(0x33);
    postSend(a.qp, {
      wrId: 8,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 100, lkey: a.mr.lkey }],
    });
    assert.equal(reap(a, wc).wrId, 8);
    const r = reap(b, wc);
    assert.deepEqual([r.wrId, r.opcode, r.byteLen, r.qpNum], [7, WcOpcode.RECV, 100, b.qp.qpNum]);
    assert.ok(b.ctx.memory.view(b.buf, 100).every((x) => x === 0x33));
  });

  it('a bad rkey through the verbs API → REM_ACCESS_ERR completion', () => {
    postSend(a.qp, {
      wrId: 9,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 64, lkey: a.mr.lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey + 1,
    });
    assert.equal(reap(a, wc).status, WcStatus.REM_ACCESS_ERR);
  });

  it('a list of 16 WRs is one doorbell; closeDevice gives every page back', async () => {
    const drv = (a.ctx.provider as NativeProvider).driver;
    const before = drv.doorbells;
    postSend(
      a.qp,
      Array.from({ length: 16 }, (_, i) => ({
        wrId: 100 + i,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: a.buf + i * 64, length: 64, lkey: a.mr.lkey }],
        remoteAddr: b.buf + i * 64,
        rkey: b.mr.rkey,
      })),
    );
    assert.equal(drv.doorbells - before, 1);
    const out = Array.from({ length: 16 }, emptyWc);
    let got = 0;
    while (got < 16 && waitCq(a.cq, { timeoutMs: 10_000 })) got += pollCq(a.cq, 16 - got, out.slice(got));
    assert.deepEqual(
      out.map((w) => w.wrId),
      Array.from({ length: 16 }, (_, i) => 100 + i),
    );
    await closeDevice(a.ctx);
    assert.equal(a.ctx.memory.freePageCount(), freeA);
  });
});

describe('verbs over the native provider: a NIC on its own device thread', function () {
  this.timeout(60_000);

  it('waitCq sleeps and is woken by the device thread’s CQE, for 200 WRITEs and 200 SEND/RECVs', async () => {
    const lock = RnicFabric.createLock();
    const fabric = new RnicFabric(lock);
    const na = nic(fabric, 1, 1, 'dedicated');
    const nb = nic(fabric, 2, 2, 'dedicated');
    const stop = new SharedArrayBuffer(4);
    const worker = new Worker(new URL('../helpers/RnicEngineWorker.js', import.meta.url), {
      workerData: {
        lock,
        stop,
        nics: [na, nb].map((n, i) => ({ state: n.dev.state, domid: i + 1, memory: n.mem.buffer })),
      },
    });
    const exited = new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.on('message', (m: { done?: boolean }) => m.done && resolve());
    });
    await new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', () => resolve());
    });
    const a = await open(na, 1, 'native');
    const b = await open(nb, 2, 'native');
    try {
      connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: 2 }, ACCESS);
      connectRcQp(b.qp, { destQpNum: a.qp.qpNum, dlid: 1 }, ACCESS);
      const av = a.ctx.memory.view(a.buf, 256);
      // The wait ends only through a notify: no spinning, no progress-interval backstop before the timeout.
      const sleepy = { timeoutMs: 10_000, spinBudget: 0, progressIntervalMs: 10_000 };
      for (let i = 0; i < 200; i++) {
        av.fill(i & 0xff);
        postSend(a.qp, {
          wrId: i,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: a.buf, length: 256, lkey: a.mr.lkey }],
          remoteAddr: b.buf,
          rkey: b.mr.rkey,
        });
        let n = pollCq(a.cq, 1, wc);
        if (n === 0) {
          assert.equal(waitCq(a.cq, sleepy), true, `WRITE ${i}: not woken`);
          n = pollCq(a.cq, 1, wc);
        }
        assert.deepEqual([n, wc[0].wrId, wc[0].status], [1, i, WcStatus.SUCCESS]);
        assert.ok(
          b.ctx.memory.view(b.buf, 256).every((x) => x === (i & 0xff)),
          `WRITE ${i}: data`,
        );
      }
      for (let i = 0; i < 200; i++) {
        postRecv(b.qp, { wrId: 1000 + i, sgList: [{ addr: b.buf, length: 256, lkey: b.mr.lkey }] });
        postSend(a.qp, {
          wrId: 2000 + i,
          opcode: WrOpcode.SEND,
          sgList: [{ addr: a.buf, length: 1 + i, lkey: a.mr.lkey }],
        });
        if (pollCq(b.cq, 1, wc) === 0) {
          assert.equal(waitCq(b.cq, sleepy), true, `SEND ${i}: receiver not woken`);
          assert.equal(pollCq(b.cq, 1, wc), 1);
        }
        assert.deepEqual([wc[0].wrId, wc[0].opcode, wc[0].byteLen], [1000 + i, WcOpcode.RECV, 1 + i]);
      }
      assert.ok(a.cq.waits + b.cq.waits > 0, 'some waits really slept');
    } finally {
      stopRnicEngine([na.dev, nb.dev], { words: new Int32Array(stop), index: 0 });
      await exited;
      await worker.terminate();
      await closeDevice(a.ctx);
      await closeDevice(b.ctx);
    }
  });
});
