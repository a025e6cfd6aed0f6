/**
 * The queue-configuration half of the virtio-mmio device (MmioDevice.ts): what a driver's writes
 * to QueueNum and the Queue{Desc,Driver,Device}{Low,High} registers may be, and how a
 * QueueReady 1 turns an accepted configuration into a served queue. Every value is a guest's;
 * each is checked as it arrives, so an accepted configuration only ever holds a QueueNum the
 * negotiated ring layout allows and aligned addresses below 2^53, and QueueReady then checks
 * the whole: complete, inside guest memory (the queue device's attach) and clear of every other
 * ready queue (a queue overlapping another would let one queue's used ring overwrite the
 * other's descriptors).
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { joinAddr, MmioReg } from '../../protocol/virtio/MmioTransport.js';
import {
  VIRTQ_PACKED_ALIGN,
  VIRTQ_PACKED_DESC_BYTES,
  VIRTQ_PACKED_EVENT_BYTES,
} from '../../protocol/virtio/PackedRing.js';
import { availRingBytes, descTableBytes, usedRingBytes, VIRTQ_ALIGN } from '../../protocol/virtio/SplitRing.js';
import { areasOverlap, type GuestMemoryMap } from './GuestMemoryMap.js';
import { PackedDevice } from './PackedDevice.js';
import { SplitDevice, type SplitFeatures } from './SplitDevice.js';

/** One queue's configuration as the device accepted it, and the queue device once ready. */
export interface QueueConfig {
  num: number;
  /** Low/High halves as accepted: desc, driver (avail), device (used). */
  readonly addr: Uint32Array;
  dev: SplitDevice | PackedDevice | undefined;
}

/** An empty configuration (QueueNum 0, addresses 0, not ready). */
export function newQueueConfig(): QueueConfig {
  return { num: 0, addr: new Uint32Array(6), dev: undefined };
}

/** Low and High register of each area, with its split and packed alignment. */
export const ADDR_REGS = [
  [MmioReg.QUEUE_DESC_LOW, MmioReg.QUEUE_DESC_HIGH, VIRTQ_ALIGN.desc, VIRTQ_PACKED_ALIGN.desc],
  [MmioReg.QUEUE_DRIVER_LOW, MmioReg.QUEUE_DRIVER_HIGH, VIRTQ_ALIGN.avail, VIRTQ_PACKED_ALIGN.driverEvent],
  [MmioReg.QUEUE_DEVICE_LOW, MmioReg.QUEUE_DEVICE_HIGH, VIRTQ_ALIGN.used, VIRTQ_PACKED_ALIGN.deviceEvent],
] as const;
/** A High half at or above this puts the address past Number.MAX_SAFE_INTEGER. */
const UNSAFE_HI = 0x200000;

/**
 * Applies a driver's write of `v` to QueueNum or an address register of `q` (the caller has
 * checked the phase: FEATURES_OK, not DRIVER_OK, queue not ready). PV_ERR_VIRTQ_LAYOUT for a value
 * the negotiated layout does not allow.
 */
export function applyQueueReg(q: QueueConfig, reg: number, v: number, packed: boolean, queueNumMax: number): void {
  if (reg === MmioReg.QUEUE_NUM) {
    if (packed && (v === 0 || v > queueNumMax)) {
      throw pvError('PV_ERR_VIRTQ_LAYOUT', `QueueNum ${v} is not in 1..QueueNumMax ${queueNumMax}`);
    }
    if (!packed && (v === 0 || v > queueNumMax || (v & (v - 1)) !== 0)) {
      throw pvError('PV_ERR_VIRTQ_LAYOUT', `QueueNum ${v} is not a power of two ≤ QueueNumMax ${queueNumMax}`);
    }
    q.num = v;
    return;
  }
  for (let a = 0; a < ADDR_REGS.length; a++) {
    const [lo, hi, splitAlign, packedAlign] = ADDR_REGS[a];
    const align = packed ? packedAlign : splitAlign;
    if (reg === lo) {
      if (v % align !== 0) {
        throw pvError('PV_ERR_VIRTQ_LAYOUT', `register 0x${reg.toString(16)}: ${v} not ${align}-aligned`);
      }
      q.addr[2 * a] = v;
      return;
    }
    if (reg === hi) {
      if (v >= UNSAFE_HI) {
        throw pvError('PV_ERR_VIRTQ_LAYOUT', `register 0x${reg.toString(16)}: 0x${v.toString(16)} ≥ 2^21`);
      }
      q.addr[2 * a + 1] = v;
      return;
    }
  }
}

/**
 * QueueReady 1 for `queues[sel]`: attaches a Split or Packed device if the configuration is
 * complete and clear of every other ready queue (PV_ERR_VIRTQ_LAYOUT otherwise, or whatever the
 * queue device's attach refuses).
 */
export function attachQueue(
  queues: readonly QueueConfig[],
  sel: number,
  packed: boolean,
  mem: GuestMemoryMap,
  features: SplitFeatures,
): void {
  const q = queues[sel];
  if (q.num === 0) throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue ${sel} has no QueueNum`);
  // INVARIANT: every half passed applyQueueReg, so each address is a safe, aligned integer.
  const mine = spans(q, packed);
  for (const other of queues) {
    if (other === q || other.dev === undefined) continue;
    for (const area of mine) {
      for (const theirs of spans(other, packed)) {
        if (areasOverlap(area, theirs))
          throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue ${sel} overlaps another ready queue`);
      }
    }
  }
  const [[desc], [avail], [used]] = mine;
  if (packed) {
    const pd = new PackedDevice(mem, features);
    pd.attach({
      size: q.num,
      desc: desc as GuestPhysAddr,
      driverEvent: avail as GuestPhysAddr,
      deviceEvent: used as GuestPhysAddr,
    });
    q.dev = pd;
    return;
  }
  const dev = new SplitDevice(mem, features);
  dev.attach({ size: q.num, desc: desc as GuestPhysAddr, avail: avail as GuestPhysAddr, used: used as GuestPhysAddr });
  q.dev = dev;
}

/** The three areas (desc, driver, device) of a queue's accepted config as [gpa, bytes]. */
function spans(q: QueueConfig, packed: boolean): Array<[number, number]> {
  const qs = q.num;
  if (packed) {
    return [
      [joinAddr(q.addr[0], q.addr[1]), VIRTQ_PACKED_DESC_BYTES * qs],
      [joinAddr(q.addr[2], q.addr[3]), VIRTQ_PACKED_EVENT_BYTES],
      [joinAddr(q.addr[4], q.addr[5]), VIRTQ_PACKED_EVENT_BYTES],
    ];
  }
  return [
    [joinAddr(q.addr[0], q.addr[1]), descTableBytes(qs)],
    [joinAddr(q.addr[2], q.addr[3]), availRingBytes(qs)],
    [joinAddr(q.addr[4], q.addr[5]), usedRingBytes(qs)],
  ];
}
