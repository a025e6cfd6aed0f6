/**
 * What the `mmio` adversary of the virtq target posts to a virtio-mmio register block: raw
 * writes in the transport's mailbox format (MmioTransport.ts, DeviceStatus.ts), never through
 * pvio's MmioDriver, so nothing a driver library would refuse is kept from the device.
 *
 * A Post is one guest action: a Status write, a register write, a DriverFeatures store (plain
 * words the device reads at FEATURES_OK) or a kick (the per-queue counter). The generators mix
 * well-formed values (a queue placed in one of the QUEUE_SLOTS, a power-of-two QueueNum, the next
 * status bit) with the hostile ones the transport must refuse: status bits out of order, clears,
 * NEEDS_RESET from the driver; QueueSel out of range; QueueNum 0 / not a power of two / above
 * QueueNumMax / 2^32 − 1; addresses misaligned, with a High half ≥ 2^21, outside guest memory,
 * in read-only memory, across two regions, or over another queue's areas; unoffered features;
 * writes to registers the driver may not write.
 */

import { featureBit, VIRTIO_F_VERSION_1, VIRTIO_STATUS_FAILED } from '../../protocol/virtio/DeviceStatus.js';
import { MmioReg } from '../../protocol/virtio/MmioTransport.js';
import { splitLayout } from '../../protocol/virtio/SplitRing.js';
import type { Rng } from '../core/FuzzTarget.js';
import { ADDR_REGS, type MmioModel } from './MmioModel.js';

/** One adversary action; see the file comment. */
export type Post =
  | { readonly kind: 'status'; readonly v: number }
  | { readonly kind: 'reg'; readonly reg: number; readonly v: number }
  | { readonly kind: 'features'; readonly wanted: bigint }
  | { readonly kind: 'kick'; readonly q: number };

/** Queue blocks for well-formed placements: 8 × 512 bytes at gpa 0, each for QueueNum ≤ 16 (splitLayout(16) needs 430). */
export const QUEUE_SLOTS: readonly number[] = Array.from({ length: 8 }, (_, i) => 0x200 * i);

/** The status sequence of §3.1.1, each value adding one bit. */
const STEPS = [1, 3, 11, 15];
/** Registers the driver may not write (MagicValue, Status, DeviceFeatures, QueueNumMax, ConfigGeneration …). */
const READ_ONLY_REGS = [
  MmioReg.MAGIC_VALUE,
  MmioReg.DEVICE_ID,
  MmioReg.DEVICE_FEATURES,
  MmioReg.DRIVER_FEATURES,
  MmioReg.QUEUE_NUM_MAX,
  MmioReg.INTERRUPT_STATUS,
  MmioReg.STATUS,
  MmioReg.CONFIG_GENERATION,
];

/** The well-formed writes that place queue `q` (size `qs`) in slot `slot`, ending with QueueReady 1. */
export function queueSetup(q: number, qs: number, slot: number): Post[] {
  const l = splitLayout(qs);
  const base = QUEUE_SLOTS[slot];
  const reg = (r: number, v: number): Post => ({ kind: 'reg', reg: r, v });
  return [
    reg(MmioReg.QUEUE_SEL, q),
    reg(MmioReg.QUEUE_NUM, qs),
    reg(MmioReg.QUEUE_DESC_LOW, base + l.desc),
    reg(MmioReg.QUEUE_DESC_HIGH, 0),
    reg(MmioReg.QUEUE_DRIVER_LOW, base + l.avail),
    reg(MmioReg.QUEUE_DRIVER_HIGH, 0),
    reg(MmioReg.QUEUE_DEVICE_LOW, base + l.used),
    reg(MmioReg.QUEUE_DEVICE_HIGH, 0),
    reg(MmioReg.QUEUE_READY, 1),
  ];
}

/** Reset, ACKNOWLEDGE, DRIVER, DriverFeatures `wanted`, FEATURES_OK (§3.1.1 steps 1–6). */
export function negotiate(wanted: bigint): Post[] {
  return [
    { kind: 'status', v: 0 },
    { kind: 'status', v: 1 },
    { kind: 'status', v: 3 },
    { kind: 'features', wanted },
    { kind: 'status', v: 11 },
  ];
}

/** DriverFeatures a hostile driver asks for: a subset, an unoffered bit, no VERSION_1, random. */
export function hostileFeatures(rng: Rng, offered: bigint): bigint {
  const v1 = featureBit(VIRTIO_F_VERSION_1);
  switch (rng.below(6)) {
    case 0:
      return offered | featureBit(rng.pick([0, 5, 27, 30, 33, 34, 40, 63]));
    case 1:
      return offered & ~v1;
    case 2:
      return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
    default:
      return (offered & BigInt(rng.u32())) | v1;
  }
}

/** A Status value: mostly the next step, else a reset, FAILED, NEEDS_RESET, a clear, junk. */
function statusValue(rng: Rng, s: number): number {
  // The next step from the sequence part of `s`, keeping FAILED / NEEDS_RESET (so also "a step after FAILED").
  const base = s & 0x3f;
  const next = s | (STEPS.find((x) => (x & base) === base && x !== base) ?? 15);
  switch (rng.below(10)) {
    case 0:
      return 0;
    case 1:
      return s | VIRTIO_STATUS_FAILED;
    case 2:
      return s | 64;
    case 3:
      return s & ~(1 << rng.below(8));
    case 4:
      return rng.below(256);
    case 5:
      return rng.chance(0.5) ? s : rng.edgeU32() | 0;
    case 6:
      return rng.pick(STEPS) | (rng.chance(0.5) ? 0 : 1 << rng.below(8));
    default:
      return next;
  }
}

/** A Low address half: a slot area, its neighbours, outside memory, read-only, another queue's. */
function addrLow(rng: Rng, m: MmioModel, area: number): number {
  const qs = rng.pick([1, 2, 4, 8, 16]);
  const l = splitLayout(qs);
  const off = [l.desc, l.avail, l.used][area];
  const other = m.queues[rng.below(m.queues.length)].addr;
  switch (rng.below(12)) {
    case 0:
      return other[2 * rng.below(3)];
    case 1:
      return rng.pick(QUEUE_SLOTS) + off + rng.pick([1, 2, 4, 8]);
    case 2:
      return 0x14000 + 16 * rng.below(0x2c000 / 16);
    case 3:
      return rng.pick([0x48000, 0xfffffff0, 0x100000]);
    case 4:
      return 0x10000 + 16 * rng.below(0x400);
    case 5:
      return 0xfff0 - 16 * rng.below(8);
    case 6:
      return rng.edgeU32();
    case 7:
      return 0x40000 + 16 * rng.below(0x800);
    default:
      return rng.pick(QUEUE_SLOTS) + off;
  }
}

/** A value for register `reg` of a device with model `m`. */
function regValue(rng: Rng, m: MmioModel, reg: number): number {
  const n = m.numQueues;
  switch (reg) {
    case MmioReg.QUEUE_SEL:
    case MmioReg.QUEUE_NOTIFY:
      return rng.chance(0.75) ? rng.below(n) : rng.pick([n, 7, 8, 0xffff, 0xffffffff, rng.edgeU32()]);
    case MmioReg.QUEUE_NUM:
      return rng.chance(0.5)
        ? rng.pick([1, 2, 4, 8, 16])
        : rng.pick([0, 3, 6, 12, 24, m.queueNumMax, 2 * m.queueNumMax, m.queueNumMax + 1, 0xffffffff, rng.edgeU32()]);
    case MmioReg.QUEUE_READY:
      return rng.chance(0.9) ? rng.below(2) : rng.edgeU32();
    case MmioReg.INTERRUPT_ACK:
      return rng.chance(0.8) ? rng.below(4) : rng.edgeU32();
    default:
      break;
  }
  for (let a = 0; a < ADDR_REGS.length; a++) {
    if (reg === ADDR_REGS[a][0]) return addrLow(rng, m, a);
    if (reg === ADDR_REGS[a][1]) {
      return rng.chance(0.8) ? 0 : rng.pick([1, 0x1fffff, 0x200000, 0x80000000, 0xffffffff, rng.edgeU32()]);
    }
  }
  return rng.edgeU32();
}

/** One random hostile action against a device whose expected state is `m`. */
export function hostilePost(rng: Rng, m: MmioModel): Post {
  const x = rng.below(100);
  if (x < 18) return { kind: 'status', v: statusValue(rng, m.status) };
  if (x < 22) return { kind: 'features', wanted: rng.chance(0.6) ? m.offered : hostileFeatures(rng, m.offered) };
  if (x < 28) return { kind: 'kick', q: rng.below(8) };
  if (x < 31) return { kind: 'reg', reg: rng.chance(0.7) ? rng.pick(READ_ONLY_REGS) : 4 * rng.below(64), v: rng.u32() };
  const reg = rng.pick([
    MmioReg.QUEUE_SEL,
    MmioReg.QUEUE_NUM,
    MmioReg.QUEUE_READY,
    MmioReg.QUEUE_NOTIFY,
    MmioReg.INTERRUPT_ACK,
    ...ADDR_REGS.flatMap(([lo, hi]) => [lo, lo, hi]),
  ]);
  return { kind: 'reg', reg, v: regValue(rng, m, reg) >>> 0 };
}

/** A queue setup of queue `q` where each value is well-formed with probability `good`. */
export function mixedSetup(rng: Rng, m: MmioModel, good: number): Post[] {
  const free = m.queues.map((x, i) => (x.ready ? -1 : i)).filter((i) => i >= 0);
  const q = free.length > 0 && rng.chance(0.8) ? rng.pick(free) : rng.below(m.numQueues + 1);
  const qs = rng.pick([1, 2, 4, 8, 16].filter((s) => s <= m.queueNumMax));
  return queueSetup(q, qs, rng.below(QUEUE_SLOTS.length)).map((p) =>
    p.kind === 'reg' && !rng.chance(good) ? { kind: 'reg', reg: p.reg, v: regValue(rng, m, p.reg) >>> 0 } : p,
  );
}
