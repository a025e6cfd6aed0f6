/**
 * The oracle of the virtq target's `mmio` cases: what a virtio-mmio device must do with each
 * posted write, written from VIRTIO 1.2 §2.1 / §3.1.1 / §4.2.2 and the refusal contract the file
 * comments of backend/virtio/MmioDevice.ts and DeviceStatus.ts document. It tracks the state a correct
 * device would be in (Status, the accepted features, QueueSel, each queue's accepted config and
 * readiness, InterruptStatus) and predicts each write's verdict (applied, or refused with which
 * code), which the target compares with what the device acknowledged.
 *
 * Status (§3.1.1): 0 resets; rewriting the current value is a no-op; otherwise one new bit in the
 * order ACKNOWLEDGE, DRIVER, FEATURES_OK (DriverFeatures ⊆ offered, VERSION_1 in), DRIVER_OK;
 * FAILED any time; nothing else after FAILED; after DEVICE_NEEDS_RESET only FAILED or a reset; no
 * bit beyond the 8-bit register; never a clear; never DEVICE_NEEDS_RESET from the driver.
 * Queue registers: see `reg()`. The memory check of QueueReady uses GuestRam (the driver's own
 * region list), so a device map that lets a ring into a hole or a read-only region disagrees.
 */

import type { ErrorCode } from '../../protocol/errors.js';
import {
  featureBit,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_FEATURES_OK,
} from '../../protocol/virtio/DeviceStatus.js';
import {
  joinAddr,
  MmioReg,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
} from '../../protocol/virtio/MmioTransport.js';
import { availRingBytes, descTableBytes, usedRingBytes, VIRTQ_ALIGN } from '../../protocol/virtio/SplitRing.js';
import type { GuestRam } from './GuestRam.js';

const A = VIRTIO_STATUS_ACKNOWLEDGE;
const D = VIRTIO_STATUS_DRIVER;
const F = VIRTIO_STATUS_FEATURES_OK;
const OK = VIRTIO_STATUS_DRIVER_OK;
const NR = VIRTIO_STATUS_DEVICE_NEEDS_RESET;
const FAILED = VIRTIO_STATUS_FAILED;
/** The §3.1.1 prefixes, in order: each adds exactly the next bit. */
const SEQUENCE: readonly number[] = [0, A, A | D, A | D | F, A | D | F | OK];

/** True when `s` is a Status a device may hold: a §3.1.1 prefix, FAILED on any, NEEDS_RESET once live. */
export function legalStatus(s: number): boolean {
  const base = s & ~(FAILED | NR);
  if (!SEQUENCE.includes(base)) return false;
  // A device only breaks while serving, and it serves nothing before DRIVER_OK.
  return (s & NR) === 0 || base === (A | D | F | OK);
}

/** One queue's config as the model accepted it: [descLo, descHi, drvLo, drvHi, devLo, devHi]. */
export interface ModelQueue {
  num: number;
  readonly addr: number[];
  ready: boolean;
}

/** The queue-address registers in config order, with each Low half's alignment. */
export const ADDR_REGS: ReadonlyArray<readonly [MmioReg, MmioReg, number]> = [
  [MmioReg.QUEUE_DESC_LOW, MmioReg.QUEUE_DESC_HIGH, VIRTQ_ALIGN.desc],
  [MmioReg.QUEUE_DRIVER_LOW, MmioReg.QUEUE_DRIVER_HIGH, VIRTQ_ALIGN.avail],
  [MmioReg.QUEUE_DEVICE_LOW, MmioReg.QUEUE_DEVICE_HIGH, VIRTQ_ALIGN.used],
];

/** The three areas of `q` as [gpa, bytes] (desc, avail, used). */
export function queueSpans(q: ModelQueue): Array<[number, number]> {
  return [
    [joinAddr(q.addr[0], q.addr[1]), descTableBytes(q.num)],
    [joinAddr(q.addr[2], q.addr[3]), availRingBytes(q.num)],
    [joinAddr(q.addr[4], q.addr[5]), usedRingBytes(q.num)],
  ];
}

/** See the file comment. */
export class MmioModel {
  status = 0;
  negotiated = 0n;
  sel = 0;
  irq = 0;
  /** Why the last refused write was refused (a coverage tag: 'queue-num', 'overlap-ready-queue' …). */
  why = '';
  readonly queues: ModelQueue[];
  /** Used rings of every queue attached so far (the device initialises them: allowed writes). */
  readonly attachedUsed: Array<[number, number]> = [];

  constructor(
    private readonly _ram: GuestRam,
    readonly offered: bigint,
    readonly numQueues: number,
    readonly queueNumMax: number,
  ) {
    this.queues = Array.from({ length: numQueues }, () => ({ num: 0, addr: [0, 0, 0, 0, 0, 0], ready: false }));
  }

  /** DRIVER_OK, neither FAILED nor NEEDS_RESET: the only state in which a queue is served. */
  get live(): boolean {
    return (this.status & OK) !== 0 && (this.status & (FAILED | NR)) === 0;
  }

  /** A served queue broke: the device must set NEEDS_RESET and raise the config interrupt. */
  broke(): void {
    if ((this.status & NR) !== 0) return;
    this.status |= NR;
    this.irq |= VIRTIO_MMIO_INT_CONFIG;
  }

  /** The verdict on a Status write of `v` (an Int32, as posted) with DriverFeatures `wanted`; applies it. */
  statusWrite(v: number, wanted: bigint): ErrorCode | undefined {
    const s = this.status;
    if (v === 0) {
      this._reset();
      return undefined;
    }
    if (v === s) return undefined;
    if ((v & ~0xff) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'status-wide');
    if ((s & NR) !== 0 && v !== (s | FAILED)) return this._no('PV_ERR_VIRTIO_NEEDS_RESET', 'status-after-needs-reset');
    if ((s & ~v) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'status-clear');
    const added = v & ~s;
    if ((added & NR) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'status-driver-needs-reset');
    if (added !== FAILED) {
      if ((s & FAILED) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'status-after-failed');
      const at = SEQUENCE.indexOf(s);
      if (at < 0 || at + 1 >= SEQUENCE.length || SEQUENCE[at + 1] !== v)
        return this._no('PV_ERR_VIRTIO_STATUS', 'status-order');
      if (added === F) {
        if ((wanted & ~this.offered) !== 0n || (wanted & featureBit(VIRTIO_F_VERSION_1)) === 0n) {
          return this._no('PV_ERR_VIRTIO_STATUS', 'features');
        }
        this.negotiated = wanted;
      }
    }
    this.status = v;
    return undefined;
  }

  /** The verdict on a register write (`v` a u32); applies it. Returns 'kick' bits via `kicks`. */
  reg(reg: number, v: number, kicks: Set<number>): ErrorCode | undefined {
    if (reg === MmioReg.INTERRUPT_ACK) {
      if ((v & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)) !== 0)
        return this._no('PV_ERR_INVALID_ARG', 'interrupt-ack');
      this.irq &= ~v;
      return undefined;
    }
    const writable = [MmioReg.QUEUE_SEL, MmioReg.QUEUE_NUM, MmioReg.QUEUE_READY, MmioReg.QUEUE_NOTIFY];
    if (!writable.includes(reg) && !ADDR_REGS.some(([lo, hi]) => reg === lo || reg === hi)) {
      return this._no('PV_ERR_INVALID_ARG', 'read-only-reg');
    }
    if ((this.status & NR) !== 0) return this._no('PV_ERR_VIRTIO_NEEDS_RESET', 'reg-after-needs-reset');
    if ((this.status & FAILED) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'reg-after-failed');
    if (reg === MmioReg.QUEUE_SEL || reg === MmioReg.QUEUE_NOTIFY) {
      if (v >= this.numQueues) return this._no('PV_ERR_VIRTQ_LAYOUT', 'queue-index');
      if (reg === MmioReg.QUEUE_SEL) this.sel = v;
      else kicks.add(v);
      return undefined;
    }
    const q = this.queues[this.sel];
    if (reg === MmioReg.QUEUE_READY && v === 0) {
      q.ready = false;
      return undefined;
    }
    // §4.2.3.2: queues are set up after FEATURES_OK and before DRIVER_OK, and only while not ready.
    if ((this.status & F) === 0 || (this.status & OK) !== 0) return this._no('PV_ERR_VIRTIO_STATUS', 'setup-phase');
    if (q.ready) return this._no('PV_ERR_VIRTIO_STATUS', 'queue-ready');
    if (reg === MmioReg.QUEUE_NUM) {
      if (v === 0 || v > this.queueNumMax || (v & (v - 1)) !== 0) return this._no('PV_ERR_VIRTQ_LAYOUT', 'queue-num');
      q.num = v;
      return undefined;
    }
    if (reg === MmioReg.QUEUE_READY) {
      const bad = v !== 1 ? 'ready-value' : this._unplaceable(q);
      if (bad !== undefined) return this._no('PV_ERR_VIRTQ_LAYOUT', bad);
      q.ready = true;
      const [, , [used, bytes]] = queueSpans(q);
      this.attachedUsed.push([used, bytes]);
      return undefined;
    }
    for (let a = 0; a < ADDR_REGS.length; a++) {
      const [lo, hi, align] = ADDR_REGS[a];
      if (reg === lo && v % align !== 0) return this._no('PV_ERR_VIRTQ_LAYOUT', 'misaligned');
      // A High half ≥ 2^21 puts the address past 2^53, where a Number cannot hold it.
      if (reg === hi && v >= 0x200000) return this._no('PV_ERR_VIRTQ_LAYOUT', 'high-half');
      if (reg === lo) q.addr[2 * a] = v;
      if (reg === hi) q.addr[2 * a + 1] = v;
    }
    return undefined;
  }

  /** Why `q` cannot be attached: no QueueNum, an area outside one region (the used ring writable), overlaps. */
  private _unplaceable(q: ModelQueue): string | undefined {
    if (q.num === 0) return 'no-queue-num';
    const mine = queueSpans(q);
    for (let i = 0; i < 3; i++) {
      const [gpa, bytes] = mine[i];
      const r = this._ram.regionAt(gpa, bytes);
      if (!r) return 'outside-memory';
      if (i === 2 && r.readOnly) return 'used-read-only';
      for (let j = i + 1; j < 3; j++) if (overlap(mine[i], mine[j])) return 'overlap-self';
    }
    for (const other of this.queues) {
      if (other === q || !other.ready) continue;
      if (mine.some((a) => queueSpans(other).some((b) => overlap(a, b)))) return 'overlap-ready-queue';
    }
    return undefined;
  }

  private _no(code: ErrorCode, why: string): ErrorCode {
    this.why = why;
    return code;
  }

  private _reset(): void {
    this.status = 0;
    this.negotiated = 0n;
    this.sel = 0;
    this.irq = 0;
    for (const q of this.queues) {
      q.num = 0;
      q.addr.fill(0);
      q.ready = false;
    }
  }
}

function overlap([a, al]: readonly [number, number], [b, bl]: readonly [number, number]): boolean {
  return a < b + bl && b < a + al;
}
