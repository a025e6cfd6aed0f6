/**
 * Worker side of the cross-thread NIC tests:
 *  - 'engine': a dedicated device thread — attaches every NIC of the host (its state, a FlatDma
 *    over its owner's memory, one fabric) and runs `runRnicEngine` until stopped;
 *  - 'sleeper': a guest sleeping in Atomics.wait on one word of its memory (MONITOR/MWAIT);
 *  - 'rnr-poster': waits until a sender sits in an RNR wait on a QP, then posts a receive on it
 *    through that NIC's BAR, from this thread;
 *  - 'driver': a second driver thread posting WRs (one at a time, waiting for each CQE) through
 *    an inline BAR mapping while the main thread does the same on other QPs of the same NICs.
 * Every wait is bounded, so a lost wake-up is reported instead of hanging the test.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DevLayout, QpCtx } from '../../../../../hypervisor-sim/devices/rnic/DevLayout.js';
import { RnicDevice, type RnicState } from '../../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { RnicFabric, runRnicEngine, type WireProfile } from '../../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { rqDoorbell } from '../../../../../protocol/rdma/NicRegs.js';
import { type RecvWr, WcStatus, type WrOpcode } from '../../../../../protocol/rdma/Verbs.js';
import { encodeRecvWqe, RECV_WQE_WORDS } from '../../../../../protocol/rdma/Wqe.js';
import { FlatDma } from './FlatDma.js';
import { type HCq, type HQp, NicHarness } from './NicHarness.js';

/** One NIC as the worker attaches it. */
export interface WorkerNic {
  readonly state: RnicState;
  readonly memory: SharedArrayBuffer;
}

/** What the test passes in `workerData`. */
export type RnicWorkerData =
  | {
      readonly mode: 'engine';
      /** Every NIC of the host (the responder half of a WR runs on the peer NIC in this thread). */
      readonly nics: readonly WorkerNic[];
      /** Indices in `nics` this engine runs. */
      readonly serve: readonly number[];
      readonly lock: SharedArrayBuffer;
      readonly wire: WireProfile;
      readonly stop: SharedArrayBuffer;
      readonly spinBudget: number;
    }
  | {
      readonly mode: 'sleeper';
      readonly memory: SharedArrayBuffer;
      readonly index: number;
      readonly expected: number;
      readonly timeoutMs: number;
    }
  | {
      readonly mode: 'rnr-poster';
      readonly nic: WorkerNic;
      readonly lock: SharedArrayBuffer;
      readonly qpn: number;
      readonly rqAddr: number;
      readonly rqEntries: number;
      readonly slot: number;
      readonly wr: RecvWr;
      readonly timeoutMs: number;
    }
  | {
      readonly mode: 'driver';
      readonly nics: readonly WorkerNic[];
      readonly lock: SharedArrayBuffer;
      /** Index of the NIC whose QP this thread drives. */
      readonly nic: number;
      readonly qp: HQp;
      readonly scq: HCq;
      readonly opcode: WrOpcode;
      readonly src: { readonly addr: number; readonly lkey: number };
      readonly dst: { readonly addr: number; readonly rkey: number };
      readonly size: number;
      readonly count: number;
    };

/** Messages the worker posts. */
export type RnicWorkerReport =
  | { readonly type: 'ready' }
  | { readonly type: 'done'; readonly metrics: Record<string, number>[] }
  | { readonly type: 'woken'; readonly result: string }
  | { readonly type: 'posted'; readonly sawWaiter: boolean }
  | { readonly type: 'driven'; readonly ok: number; readonly statuses: number[] };

function engine(d: Extract<RnicWorkerData, { mode: 'engine' }>, post: (m: RnicWorkerReport) => void): void {
  const fabric = new RnicFabric(d.lock, d.wire);
  const devices = d.nics.map((n, i) => new RnicDevice(n.state, new FlatDma(n.memory, i + 1), fabric));
  const served = d.serve.map((i) => devices[i]);
  post({ type: 'ready' });
  runRnicEngine(served, { words: new Int32Array(d.stop), index: 0 }, d.spinBudget);
  post({ type: 'done', metrics: served.map((x) => x.metrics.snapshot()) });
}

function rnrPoster(d: Extract<RnicWorkerData, { mode: 'rnr-poster' }>, post: (m: RnicWorkerReport) => void): void {
  const fabric = new RnicFabric(d.lock);
  const dev = new RnicDevice(d.nic.state, new FlatDma(d.nic.memory), fabric);
  const devWords = new Int32Array(d.nic.state.dev);
  const waiters = new DevLayout(d.nic.state.config).qpBase(d.qpn) + QpCtx.RNR_WAITERS;
  post({ type: 'ready' });
  const deadline = Date.now() + d.timeoutMs;
  let sawWaiter = false;
  while (Date.now() < deadline) {
    // ORDERING: seq-cst load of the count a sender raises before it sleeps.
    if (Atomics.load(devWords, waiters) > 0) {
      sawWaiter = true;
      break;
    }
  }
  const words = new Int32Array(d.nic.memory);
  encodeRecvWqe(words, d.rqAddr / 4 + (d.slot & (d.rqEntries - 1)) * RECV_WQE_WORDS, d.wr);
  dev.mmio('inline').write32(rqDoorbell(d.qpn), d.slot + 1);
  post({ type: 'posted', sawWaiter });
}

function driver(d: Extract<RnicWorkerData, { mode: 'driver' }>, post: (m: RnicWorkerReport) => void): void {
  const fabric = new RnicFabric(d.lock);
  const devices = d.nics.map((n, i) => new RnicDevice(n.state, new FlatDma(n.memory, i + 1), fabric));
  const drv = new NicHarness(devices[d.nic].mmio('inline'), d.nics[d.nic].memory);
  const qp = { ...d.qp };
  const scq = { ...d.scq };
  post({ type: 'ready' });
  let ok = 0;
  const statuses: number[] = [];
  for (let i = 0; i < d.count; i++) {
    const off = (i % 64) * d.size;
    drv.postSend(qp, {
      wrId: i,
      opcode: d.opcode,
      sgList: [{ addr: d.src.addr + off, length: d.size, lkey: d.src.lkey }],
      remoteAddr: d.dst.addr + off,
      rkey: d.dst.rkey,
    });
    const [wc] = drv.waitCqes(scq, 1);
    if (wc.status === WcStatus.SUCCESS && wc.wrId === i) ok++;
    else statuses.push(wc.status);
  }
  post({ type: 'driven', ok, statuses });
}

function main(d: RnicWorkerData, post: (m: RnicWorkerReport) => void): void {
  if (d.mode === 'engine') {
    engine(d, post);
  } else if (d.mode === 'sleeper') {
    const words = new Int32Array(d.memory);
    post({ type: 'ready' });
    // ORDERING: the device's Atomics.notify after its write wakes this wait.
    const result = Atomics.wait(words, d.index, d.expected, d.timeoutMs);
    post({ type: 'woken', result });
  } else if (d.mode === 'rnr-poster') {
    rnrPoster(d, post);
  } else {
    driver(d, post);
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  main(workerData as RnicWorkerData, (m) => port.postMessage(m));
}
