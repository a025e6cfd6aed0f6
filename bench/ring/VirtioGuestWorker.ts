/**
 * The guest side of the virtio ring bench (VirtioRing.ts), run in its own Worker as a vCPU:
 * probes the virtio-mmio device, negotiates EVENT_IDX (and RING_PACKED for a packed queue), places
 * one queue of VIRTIO_BENCH_QS descriptors in its own memory and drives it. Each request is a
 * two-descriptor chain: 64 B the device reads (16 words distinct per request, ringWord of the
 * Floor ring) and 64 B it writes; the guest checks every echo word for word, so a lost, stale,
 * duplicated or misplaced answer shows in `badData`/`distinct` rather than in a faster figure.
 *
 * Modes: `pingpong` keeps one chain in flight and samples each round trip with performance.now;
 * `throughput` keeps every slot in flight and publishes what it added in one avail.idx store per
 * round. Waiting: poll the used ring up to `spinBudget` empty rounds, then ask for an interrupt
 * (enableInterrupts re-checks), sleep in waitInterrupt and ack before draining (MmioDriver's rule),
 * then suppress interrupts again while polling.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { MmioDriver } from '../../frontend/virtio/MmioDriver.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED } from '../../protocol/virtio/DeviceStatus.js';
import { RING_SLOT_WORDS, ringWord } from '../floor/Floor.js';
import {
  type GuestResult,
  type GuestWorkerData,
  VIRTIO_BENCH_BUF_GPA,
  VIRTIO_BENCH_MSG,
  VIRTIO_BENCH_QS,
  VIRTIO_BENCH_QUEUE_GPA,
} from './VirtioRing.js';

/** Longest interrupt wait; one that times out with chains in flight is counted, not fatal. */
const WAIT_MS = 5000;

const d = workerData as GuestWorkerData;
const words = new Int32Array(d.mem);
const mmio = new MmioDriver(d.regs, d.mem, 10_000);
mmio.probe();
let wanted = featureBit(VIRTIO_F_EVENT_IDX);
if (d.kind === 'packed') wanted |= featureBit(VIRTIO_F_RING_PACKED);
const negotiated = mmio.negotiate(wanted);
const drv = mmio.setupQueue<number>(0, VIRTIO_BENCH_QS, VIRTIO_BENCH_QUEUE_GPA);
mmio.driverOk();
// We poll first: no interrupts until we are about to sleep.
drv.disableInterrupts();

const slots = VIRTIO_BENCH_QS >> 1;
// Slot s owns the request buffer at rd(s) and the response buffer right after it.
const rd = (s: number): number => VIRTIO_BENCH_BUF_GPA + 2 * VIRTIO_BENCH_MSG * s;
const wr = (s: number): number => rd(s) + VIRTIO_BENCH_MSG;
const free = Array.from({ length: slots }, (_, s) => s);
const reqOf = new Float64Array(slots);
const sentAt = new Float64Array(slots);
const seen = new Uint8Array(d.count);
const limit = d.mode === 'pingpong' ? 1 : slots;
const samples = d.mode === 'pingpong' ? new Float64Array(d.count) : undefined;
let posted = 0;
let completed = 0;
let distinct = 0;
let badData = 0;
let kicks = 0;
let publishes = 0;
let sleeps = 0;
let timeouts = 0;
let idle = 0;

const t0 = performance.now();
while (completed < d.count) {
  let added = 0;
  while (posted < d.count && drv.inFlight < limit && free.length > 0) {
    const s = free.pop() as number;
    const at = rd(s) >> 2;
    for (let j = 0; j < RING_SLOT_WORDS; j++) words[at + j] = ringWord(posted, j);
    drv.addChain(
      [{ addr: rd(s) as GuestPhysAddr, len: VIRTIO_BENCH_MSG }],
      [{ addr: wr(s) as GuestPhysAddr, len: VIRTIO_BENCH_MSG }],
      s,
    );
    reqOf[s] = posted;
    if (samples) sentAt[s] = performance.now();
    posted++;
    added++;
  }
  if (added > 0) {
    publishes++;
    if (drv.publish()) {
      kicks++;
      mmio.notify(0);
    }
  }
  let got = 0;
  for (let u = drv.getUsed(); u !== undefined; u = drv.getUsed()) {
    const s = u.token;
    const n = reqOf[s];
    if (samples) samples[n] = (performance.now() - sentAt[s]) * 1000;
    const at = wr(s) >> 2;
    let ok = u.len === VIRTIO_BENCH_MSG;
    for (let j = 0; ok && j < RING_SLOT_WORDS; j++) ok = words[at + j] === ringWord(n, j);
    if (!ok) badData++;
    if (seen[n] === 0) distinct++;
    seen[n] = 1;
    completed++;
    free.push(s);
    got++;
  }
  if (got > 0) {
    idle = 0;
    continue;
  }
  if (++idle <= d.spinBudget) continue;
  idle = 0;
  // Nothing used after the spin budget: ask for an interrupt, re-check, sleep only if still empty.
  if (drv.enableInterrupts()) {
    sleeps++;
    const bits = mmio.waitInterrupt(WAIT_MS);
    if (bits !== 0) mmio.ackInterrupt(bits);
    else timeouts++;
  }
  drv.disableInterrupts();
}
const seconds = (performance.now() - t0) / 1000;
const result: GuestResult = {
  negotiated: `0x${negotiated.toString(16)}`,
  completed,
  distinct,
  badData,
  kicks,
  publishes,
  sleeps,
  timeouts,
  seconds,
  rate: completed / seconds,
  samples: samples ? Array.from(samples) : undefined,
};
parentPort?.postMessage(result);
