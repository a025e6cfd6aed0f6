/**
 * The guest half of VirtioEcho.test.ts, run in a Worker: negotiates features over the transport
 * registers, then drives a split virtqueue on its own memory with the real SplitDriver. Each
 * chain is one device-readable buffer (a pattern) and one device-writable buffer; the device
 * echoes the pattern back. The guest kicks only when `publish()` says so and sleeps on the
 * interrupt word only after `enableInterrupts()` found nothing (the re-check of VIRTIO 1.2
 * §2.7.10), so a lost wake-up would hang the test, not pass it.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { SplitDriver } from '../../../frontend/virtio/SplitDriver.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../../../protocol/virtio/DeviceStatus.js';
import { VirtioStatusDriver } from '../../../protocol/virtio/StatusDriver.js';

/** What the test posts to the guest. */
export interface EchoGuestData {
  readonly mem: SharedArrayBuffer;
  readonly regs: SharedArrayBuffer;
  /** Int32 words: 0 = kicks (guest → device), 1 = interrupts (device → guest), 2 = guest done. */
  readonly bell: SharedArrayBuffer;
  readonly queueBase: number;
  readonly qs: number;
  /** First byte of the buffer area; buffers are `bufBytes` apart. */
  readonly bufBase: number;
  readonly bufBytes: number;
  readonly chains: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
}

/** What the guest reports. */
export interface EchoGuestResult {
  readonly negotiated: string;
  readonly completed: number;
  readonly kicks: number;
  readonly sleeps: number;
  readonly badData: number;
}

const d = workerData as EchoGuestData;
const bell = new Int32Array(d.bell);
const bytes = new Uint8Array(d.mem);
const status = new VirtioStatusDriver(d.regs);
let wanted = 0n;
if (d.eventIdx) wanted |= featureBit(VIRTIO_F_EVENT_IDX);
if (d.indirect) wanted |= featureBit(VIRTIO_F_INDIRECT_DESC);
const negotiated = status.negotiate(wanted, 10_000);
const drv = new SplitDriver<number>(d.mem, d.queueBase, d.qs, {
  eventIdx: (negotiated & featureBit(VIRTIO_F_EVENT_IDX)) !== 0n,
  indirect: (negotiated & featureBit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
});

// Slot s owns: a readable buffer, a writable buffer, and (indirect) a 2-entry table.
const slots = d.qs >> 1;
const rd = (s: number) => d.bufBase + 3 * d.bufBytes * s;
const wr = (s: number) => rd(s) + d.bufBytes;
const table = (s: number) => rd(s) + 2 * d.bufBytes;
const free: number[] = Array.from({ length: slots }, (_, s) => s);
const pattern = (n: number, i: number) => (Math.imul(n, 2654435761) + i * 7) & 0xff;

let posted = 0;
let completed = 0;
let kicks = 0;
let sleeps = 0;
let badData = 0;
while (completed < d.chains) {
  while (posted < d.chains && free.length > 0) {
    const s = free.pop() as number;
    const len = 1 + (posted % d.bufBytes);
    for (let i = 0; i < len; i++) bytes[rd(s) + i] = pattern(posted, i);
    bytes.fill(0, wr(s), wr(s) + d.bufBytes);
    drv.addChain(
      [{ addr: rd(s) as GuestPhysAddr, len }],
      [{ addr: wr(s) as GuestPhysAddr, len: d.bufBytes }],
      s * 0x10000 + (posted & 0xffff),
      drv.indirect && posted % 2 === 1 ? (table(s) as GuestPhysAddr) : undefined,
    );
    posted++;
  }
  if (drv.publish()) {
    kicks++;
    // ORDERING: seq-cst add then notify: the device sleeps on this word.
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  }
  // ORDERING: snapshot the interrupt word before looking at the used ring, so an interrupt sent
  // after our look changes it and the wait below returns at once.
  const irq = Atomics.load(bell, 1);
  let u = drv.getUsed();
  if (u === undefined) {
    if (drv.enableInterrupts()) continue;
    sleeps++;
    // ORDERING: see the snapshot above.
    Atomics.wait(bell, 1, irq, 10_000);
    drv.disableInterrupts();
    continue;
  }
  for (; u !== undefined; u = drv.getUsed()) {
    const s = u.token >>> 16;
    const n = u.token & 0xffff;
    const len = 1 + (n % d.bufBytes);
    if (u.len !== len) badData++;
    for (let i = 0; i < len; i++) if (bytes[wr(s) + i] !== pattern(n, i)) badData++;
    completed++;
    free.push(s);
  }
}
// ORDERING: tells the device loop to stop.
Atomics.store(bell, 2, 1);
Atomics.notify(bell, 0);
const result: EchoGuestResult = { negotiated: negotiated.toString(16), completed, kicks, sleeps, badData };
parentPort?.postMessage(result);
