/**
 * The guest half of VirtioEcho.test.ts, run in a Worker: finds the device through the
 * virtio-mmio registers (probe), negotiates features, sets up its queues in its own memory with
 * MmioDriver (optionally after a QueueNum the device must refuse), sets DRIVER_OK and drives every
 * queue with the real SplitDriver (or PackedDriver when RING_PACKED is negotiated). Each chain is one device-readable buffer (a pattern that
 * depends on the queue, so a chain answered on the wrong queue shows as bad data) and one
 * device-writable buffer; the device echoes the pattern back.
 *
 * Notifications: a queue is kicked only when its `publish()` says so, by its own QueueNotify.
 * The guest sleeps in `waitInterrupt` only after `enableInterrupts()` found every queue empty
 * (the re-check of VIRTIO 1.2 §2.7.10), and acks InterruptStatus before draining the used rings,
 * so a lost kick or a lost interrupt hangs the test instead of passing it.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { MmioDriver, type VirtqDriver } from '../../../frontend/virtio/MmioDriver.js';
import type { ErrorCode } from '../../../protocol/errors.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
} from '../../../protocol/virtio/DeviceStatus.js';
import { MmioReg } from '../../../protocol/virtio/MmioTransport.js';

/** What the test posts to the guest. */
export interface EchoGuestData {
  readonly mem: SharedArrayBuffer;
  /** The virtio-mmio register block. */
  readonly regs: SharedArrayBuffer;
  /** One entry per queue: its size and guest-physical base. */
  readonly queues: ReadonlyArray<{ readonly qs: number; readonly base: number }>;
  /** First byte of the buffer area; buffers are `bufBytes` apart. */
  readonly bufBase: number;
  readonly bufBytes: number;
  /** Chains per queue (< 65536). */
  readonly chains: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** Ask for VIRTIO_F_RING_PACKED (the queues are then PackedDrivers). */
  readonly packed?: boolean;
  /** QueueNum values to write to queue 0 before its real setup (each should be refused). */
  readonly badQueueNums: readonly number[];
}

/** What the guest reports. */
export interface EchoGuestResult {
  readonly negotiated: bigint;
  /** The device's verdict on each bad QueueNum (undefined = accepted). */
  readonly badQueueNum: Array<ErrorCode | undefined>;
  /** Per queue: chains that came back, distinct chains, kicks. */
  readonly completed: number[];
  readonly distinct: number[];
  readonly kicks: number[];
  readonly sleeps: number;
  readonly badData: number;
}

const d = workerData as EchoGuestData;
const bytes = new Uint8Array(d.mem);
const mmio = new MmioDriver(d.regs, d.mem, 10_000);
mmio.probe();
let wanted = 0n;
if (d.eventIdx) wanted |= featureBit(VIRTIO_F_EVENT_IDX);
if (d.indirect) wanted |= featureBit(VIRTIO_F_INDIRECT_DESC);
if (d.packed === true) wanted |= featureBit(VIRTIO_F_RING_PACKED);
const negotiated = mmio.negotiate(wanted);
const badQueueNum: Array<ErrorCode | undefined> = [];
if (d.badQueueNums.length > 0) {
  mmio.writeReg(MmioReg.QUEUE_SEL, 0);
  for (const n of d.badQueueNums) badQueueNum.push(mmio.writeReg(MmioReg.QUEUE_NUM, n));
}
const drvs: VirtqDriver<number>[] = d.queues.map((q, i) => mmio.setupQueue<number>(i, q.qs, q.base));
mmio.driverOk();

const nq = drvs.length;
// Queue i, slot s owns: a readable buffer, a writable buffer, and (indirect) a 2-entry table.
const slotsOf = (i: number) => d.queues[i].qs >> 1;
const areaOf = d.queues.map(
  (_, i) => d.bufBase + 3 * d.bufBytes * d.queues.slice(0, i).reduce((a, q) => a + (q.qs >> 1), 0),
);
const rd = (i: number, s: number) => areaOf[i] + 3 * d.bufBytes * s;
const wr = (i: number, s: number) => rd(i, s) + d.bufBytes;
const table = (i: number, s: number) => rd(i, s) + 2 * d.bufBytes;
const pattern = (i: number, n: number, k: number) => (Math.imul(n + 1, 2654435761) + k * 7 + i * 101) & 0xff;
const lenOf = (i: number, n: number) => 1 + ((n + 37 * i) % d.bufBytes);

const free = drvs.map((_, i) => Array.from({ length: slotsOf(i) }, (_, s) => s));
const seen = drvs.map(() => new Uint8Array(d.chains));
const posted = new Array<number>(nq).fill(0);
const completed = new Array<number>(nq).fill(0);
const distinct = new Array<number>(nq).fill(0);
const kicks = new Array<number>(nq).fill(0);
let sleeps = 0;
let badData = 0;

const allDone = () => completed.every((c) => c >= d.chains);
while (!allDone()) {
  for (let i = 0; i < nq; i++) {
    const drv = drvs[i];
    while (posted[i] < d.chains && free[i].length > 0) {
      const s = free[i].pop() as number;
      const n = posted[i];
      const len = lenOf(i, n);
      for (let k = 0; k < len; k++) bytes[rd(i, s) + k] = pattern(i, n, k);
      bytes.fill(0, wr(i, s), wr(i, s) + d.bufBytes);
      drv.addChain(
        [{ addr: rd(i, s) as GuestPhysAddr, len }],
        [{ addr: wr(i, s) as GuestPhysAddr, len: d.bufBytes }],
        s * 0x10000 + n,
        drv.indirect && n % 2 === 1 ? (table(i, s) as GuestPhysAddr) : undefined,
      );
      posted[i]++;
    }
    if (drv.publish()) {
      kicks[i]++;
      mmio.notify(i);
    }
  }
  let got = 0;
  for (let i = 0; i < nq; i++) {
    for (let u = drvs[i].getUsed(); u !== undefined; u = drvs[i].getUsed()) {
      const s = u.token >>> 16;
      const n = u.token & 0xffff;
      const len = lenOf(i, n);
      if (u.len !== len) badData++;
      for (let k = 0; k < len; k++) if (bytes[wr(i, s) + k] !== pattern(i, n, k)) badData++;
      if (seen[i][n] === 0) distinct[i]++;
      seen[i][n] = 1;
      completed[i]++;
      free[i].push(s);
      got++;
    }
  }
  if (got > 0 || allDone()) continue;
  // Nothing used: ask for interrupts, re-check, and sleep only if every queue is still empty.
  let empty = true;
  for (const drv of drvs) if (!drv.enableInterrupts()) empty = false;
  if (empty) {
    sleeps++;
    const bits = mmio.waitInterrupt(10_000);
    if (bits !== 0) mmio.ackInterrupt(bits);
  }
  for (const drv of drvs) drv.disableInterrupts();
}
const result: EchoGuestResult = { negotiated, badQueueNum, completed, distinct, kicks, sleeps, badData };
parentPort?.postMessage(result);
