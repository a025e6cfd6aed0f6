/**
 * The device side of the virtio ring bench (VirtioRing.ts), run in its own Worker as a vhost
 * thread in the driver domain: MmioDevice over a GuestMemoryMap of the guest's memory, serving
 * the guest's Status and register writes, and an echo server on queue 0 that copies each chain's
 * device-readable request into its device-writable buffer (every descriptor validated and
 * translated by Split/PackedDevice on the way). Polls up to `spinBudget` empty rounds, then
 * sleeps on the doorbell — the snapshot is taken before the look, so a kick after it wakes us.
 * Posts its register block first, its counters when the main thread sets the stop word.
 */

import { parentPort, workerData } from 'node:worker_threads';
import type { IovecList } from '../../backend/virtio/DescChain.js';
import { GuestMemoryMap } from '../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../backend/virtio/MmioDevice.js';
import { guestPhysAddr } from '../../protocol/Types.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from '../../protocol/virtio/DeviceStatus.js';
import { CtlWord, type DeviceResult, type DeviceWorkerData, VIRTIO_BENCH_MSG, VIRTIO_BENCH_QS } from './VirtioRing.js';

/** Longest doorbell sleep: bounds how late the stop word is seen. */
const SLEEP_MS = 20;

const d = workerData as DeviceWorkerData;
const ctl = new Int32Array(d.ctl);
const map = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: d.mem.byteLength, backing: d.mem, offset: 0 }]);
let offered = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_EVENT_IDX);
if (d.kind === 'packed') offered |= featureBit(VIRTIO_F_RING_PACKED);
const dev = new MmioDevice({ offered, memory: map, queues: 1, queueNumMax: VIRTIO_BENCH_QS });
parentPort?.postMessage({ regs: dev.regs });

const scratch = new Uint8Array(VIRTIO_BENCH_MSG);
let list: IovecList | undefined;
let served = 0;
let interrupts = 0;
let sleeps = 0;
let kicksSeen = 0;
let idle = 0;

// ORDERING: seq-cst load of the main thread's stop word, once per round.
while (Atomics.load(ctl, CtlWord.STOP) === 0) {
  // The snapshot comes first: a register write or kick after it moves the doorbell.
  const bell = dev.doorbell();
  while (dev.service() !== undefined) {}
  kicksSeen += dev.kicked().length;
  const q = dev.live ? dev.virtq(0) : undefined;
  let popped = 0;
  if (q !== undefined) {
    if (list === undefined) list = q.newIovecList();
    // Drain until empty: with EVENT_IDX the empty pop re-arms avail_event, so the next publish kicks.
    for (let head = q.pop(list); head >= 0; head = q.pop(list)) {
      const n = list.read(0, scratch, 0, Math.min(list.readableBytes, scratch.length));
      q.addUsed(head, list.write(0, scratch, 0, n));
      popped++;
    }
    if (popped > 0) {
      served += popped;
      if (q.publishUsed()) {
        interrupts++;
        dev.interrupt(0);
      }
    }
  }
  if (popped > 0) {
    idle = 0;
    continue;
  }
  if (++idle <= d.spinBudget) continue;
  idle = 0;
  sleeps++;
  dev.waitDoorbell(bell, SLEEP_MS);
}

const q = dev.virtq(0);
const result: DeviceResult = { served, interrupts, sleeps, kicksSeen, broken: q?.broken ?? false };
parentPort?.postMessage(result);
