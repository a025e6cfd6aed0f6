/**
 * GPU ping-pong across Device Lending (CC'19 §7.2.2: "GPUs in two lenders vs one", published
 * +~700 ns round trip, reference §6): two accelerators, both borrowed by host B, bounce a 32-bit
 * counter — each device's kernel stores the next value into the OTHER device's memory (BAR 1)
 * through its own DMA path, and waits for the reply in its own memory (PeerSignal.ts):
 *
 * ```
 *  lenders 1:  A: accel0 ─ sw ─ accel1                       (P2P turns at A's switch, no NTB)
 *  lenders 2:  A: accel0 ─ sw ─ ntb-C ═══ NTB ═══ ntb-A ─ sw ─ accel0 :C          (route direct)
 *              A: accel0 ─ sw ─ ntb-B ═ NTB ═ B: ntb-A ─ sw ─ ntb-C ═ NTB ═ C …  (route via-borrower)
 * ```
 * The windows are the ones `Cluster.mapP2p` opens; each store pays its route's modelled cost as
 * real delay, so the round trip is measured with a real clock (performance.now around one
 * ping and its pong), and the hops are counted by the resolvers (LentStats P2P_*), never
 * inferred from time. The ping side runs in the calling thread, the pong side in a Worker
 * (PingPongWorker.ts): the simulator has no accelerator threads, so each thread plays one
 * device's kernel (or, `threads: 1`, the calling thread steps both kernels in turn).
 */

import { Worker } from 'node:worker_threads';
import { Cluster, type ClusterHostSpec } from '../../hypervisor-sim/cluster/Cluster.js';
import { attachLentAccel, isLentAccel, type LentAccelData } from '../../hypervisor-sim/cluster/LentAccel.js';
import { storePeer32, waitWord32 } from '../../hypervisor-sim/devices/accel/PeerSignal.js';
import { MemoryDirectory } from '../../hypervisor-sim/memory/MemoryDirectory.js';
import { type FabricProfileName, fabricProfile } from '../../hypervisor-sim/pcie/Profiles.js';
import { pvError } from '../../protocol/errors.js';
import { type Summary, summarize } from '../stats/Summary.js';

/** Options of `runAccelPingPong`. */
export interface AccelPingPongOptions {
  /** 1: both accelerators in lender A; 2: one in A, one in C. */
  readonly lenders: 1 | 2;
  readonly profile: FabricProfileName;
  /** Round trips measured (after `warmup` unmeasured ones). */
  readonly iters: number;
  /** Unmeasured round trips first (JIT, caches); default min(1000, iters). */
  readonly warmup?: number;
  /** lenders 2: NTB link A–C (`direct`, default) or only A–B and B–C (`via-borrower`). */
  readonly route?: 'direct' | 'via-borrower';
  /**
   * 2: each device's kernel in its own thread, each really waiting for the other's
   * store. 1 (default): both kernels stepped in the calling thread, ping then pong — no hand-off in
   * the round trip, for a loaded machine where a spinning waiter loses its core.
   */
  readonly threads?: 1 | 2;
}

/** What one run measured and counted. */
export interface AccelPingPongResult {
  readonly lenders: 1 | 2;
  readonly profile: FabricProfileName;
  readonly route: 'direct' | 'via-borrower';
  readonly threads: 1 | 2;
  readonly iters: number;
  /** Round-trip times, ns (real clock). */
  readonly rttNs: { readonly samples: number[]; readonly summary: Summary };
  /** NTB crossings of one one-way trip, counted by the resolvers over every store. */
  readonly ntbCrossingsPerTrip: number;
  /** Link hops of one one-way trip, counted the same way. */
  readonly linkHopsPerTrip: number;
  /** The profile's modelled cost of one one-way 4-byte trip, ns (what each store paid). */
  readonly modelTripNs: number;
}

/** Counter word in each accelerator's memory. */
const WORD = 0;
const MEM_BYTES = 1 << 20;

function clusterHosts(lenders: 1 | 2): ClusterHostSpec[] {
  if (lenders === 1) {
    return [
      {
        name: 'A',
        accels: [
          { name: 'accel0', memBytes: MEM_BYTES },
          { name: 'accel1', memBytes: MEM_BYTES },
        ],
      },
      { name: 'B' },
    ];
  }
  return [
    { name: 'A', accels: [{ name: 'accel0', memBytes: MEM_BYTES }] },
    { name: 'B' },
    { name: 'C', accels: [{ name: 'accel0', memBytes: MEM_BYTES }] },
  ];
}

/** Runs the ping-pong (see the file comment). */
export async function runAccelPingPong(opts: AccelPingPongOptions): Promise<AccelPingPongResult> {
  const { lenders, profile, iters } = opts;
  if (lenders !== 1 && lenders !== 2) throw pvError('PV_ERR_INVALID_ARG', `lenders must be 1 or 2, got ${lenders}`);
  if (!Number.isSafeInteger(iters) || iters < 1) throw pvError('PV_ERR_INVALID_ARG', `iters must be ≥ 1`);
  const warmup = opts.warmup ?? Math.min(1000, iters);
  const route = opts.route ?? 'direct';
  const threads = opts.threads ?? 1;
  if (threads !== 1 && threads !== 2) throw pvError('PV_ERR_INVALID_ARG', `threads must be 1 or 2, got ${threads}`);
  fabricProfile(profile);
  const links: [string, string][] | undefined =
    lenders === 2 && route === 'via-borrower'
      ? [
          ['A', 'B'],
          ['B', 'C'],
        ]
      : undefined;
  const cluster = new Cluster({ hosts: clusterHosts(lenders), links, profile });
  try {
    const pingId = await cluster.lend('A', 'accel0');
    const pongId = lenders === 1 ? await cluster.lend('A', 'accel1') : await cluster.lend('C', 'accel0');
    const ping = await cluster.borrow(pingId, 'B');
    const pong = await cluster.borrow(pongId, 'B');
    const there = cluster.mapP2p(ping, pong);
    const back = cluster.mapP2p(pong, ping);
    const pingData = cluster.lending('B').data(ping.name);
    const pongData = cluster.lending('B').data(pong.name);
    if (!isLentAccel(pingData) || !isLentAccel(pongData)) throw pvError('PV_ERR_CONFIG', 'not accelerators');
    const total = warmup + iters;
    const worker = threads === 2 ? startPong(pongData, back.addr, total) : undefined;
    const dev = attachLentAccel(pingData, new MemoryDirectory()).dev;
    const pongDev = threads === 1 ? attachLentAccel(pongData, new MemoryDirectory()).dev : undefined;
    const before = [ping.stats.snapshot(), pong.stats.snapshot()];
    const samples: number[] = [];
    try {
      await worker?.ready;
      for (let i = 0; i < total; i++) {
        const t0 = performance.now();
        if (!storePeer32(dev, there.addr, 2 * i + 1)) throw pvError('PV_ERR_OUT_OF_BOUNDS', 'ping store faulted');
        if (pongDev !== undefined) {
          waitWord32(pongDev, WORD, 2 * i + 1);
          if (!storePeer32(pongDev, back.addr, 2 * i + 2)) throw pvError('PV_ERR_OUT_OF_BOUNDS', 'pong store faulted');
        }
        waitWord32(dev, WORD, 2 * i + 2);
        const t1 = performance.now();
        if (i >= warmup) samples.push((t1 - t0) * 1e6);
      }
      await worker?.done;
    } finally {
      await worker?.stop();
    }
    const after = [ping.stats.snapshot(), pong.stats.snapshot()];
    const stores = 2 * total;
    const delta = (k: 'p2pWrites' | 'p2pNtbCrossings' | 'p2pLinkHops'): number =>
      after[0][k] - before[0][k] + after[1][k] - before[1][k];
    if (delta('p2pWrites') !== stores) {
      throw pvError('PV_ERR_BAD_REQUEST', `counted ${delta('p2pWrites')} P2P writes for ${stores} stores`);
    }
    const r = cluster.fabric.route(there.initiator, there.addr as never, 4);
    return {
      lenders,
      profile,
      route: lenders === 1 ? 'direct' : route,
      threads,
      iters,
      rttNs: { samples, summary: summarize(samples) },
      ntbCrossingsPerTrip: delta('p2pNtbCrossings') / stores,
      linkHopsPerTrip: delta('p2pLinkHops') / stores,
      modelTripNs: fabricProfile(profile).costNs(r, 4, 'write'),
    };
  } finally {
    await cluster.shutdown();
  }
}

interface Pong {
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/** Starts the pong side's kernel in a Worker. */
function startPong(data: LentAccelData, back: number, total: number): Pong {
  const w = new Worker(new URL('./PingPongWorker.js', import.meta.url), { workerData: { data, back, total } });
  let failed: unknown;
  const ready = new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  const done = new Promise<void>((resolve, reject) => {
    w.once('error', (err) => {
      failed = err;
      reject(err);
    });
    w.once('exit', (code) => (code === 0 ? resolve() : reject(failed ?? new Error(`pong worker exited ${code}`))));
  });
  done.catch(() => {});
  return {
    ready,
    done,
    stop: async () => {
      await w.terminate();
    },
  };
}
