/**
 * The device side of the virtio-mmio transport (VIRTIO 1.2 §4.2.2; layout in
 * protocol/virtio/MmioTransport.ts), run in the driver domain: Firecracker's `MmioTransport`
 * role. It owns every register a driver read returns; the driver only posts writes, which
 * `service()` validates on this thread and either applies or refuses with a catalogue code the
 * driver reads back (nothing the guest writes can throw here).
 *
 * Per-queue config lives in private memory (the window only mirrors the selected queue), so what
 * the device checked is what it attaches. A queue config write is refused:
 *  - after DEVICE_NEEDS_RESET → PV_ERR_VIRTIO_NEEDS_RESET; after FAILED → PV_ERR_VIRTIO_STATUS;
 *  - outside the setup phase (FEATURES_OK set, DRIVER_OK not yet: §3.1.1 steps 7–8) or to a
 *    queue that is ready (write QueueReady 0 first) → PV_ERR_VIRTIO_STATUS;
 *  - QueueSel ≥ the device's queue count, QueueNum not a power of two or above QueueNumMax, a
 *    Low half misaligned (desc 16, driver 2, device 4), a High half ≥ 2^21 (the address would
 *    pass 2^53), QueueReady 1 without a QueueNum, or a queue SplitDevice.attach refuses (area
 *    outside guest memory, areas overlapping) or whose areas overlap another ready queue's
 *    → PV_ERR_VIRTQ_LAYOUT, and the queue stays not ready.
 * QueueReady 0 detaches a queue in any phase. InterruptACK clears the bits it names.
 *
 * Packed queues (VIRTIO_F_RING_PACKED, bit 34, §2.8): offered when the caller's `offered` mask
 * holds the bit, which the device allows unless built with `ringPacked: false` (a split-only
 * device then refuses the bit with PV_ERR_NOT_SUPPORTED). Once it is negotiated every queue is
 * packed: QueueNum is any value in 1..QueueNumMax (no power-of-two rule), QueueDesc/Driver/Device
 * are the descriptor ring / driver event suppression / device event suppression (aligned 16/4/4,
 * PackedRing.ts), and QueueReady 1 attaches a PackedDevice. `queue(q)` returns split queues only
 * (its callers use SplitDevice's type), `packedQueue(q)` packed ones, `virtq(q)` either.
 *
 * A Status write of 0 (reset, handled by VirtioStatusDevice) detaches every queue, forgets every
 * queue config and clears InterruptStatus. A queue whose SplitDevice broke (a fatal guest
 * violation) makes `service()` set DEVICE_NEEDS_RESET and raise the configuration interrupt, as
 * §2.1.2 asks; only a reset clears it.
 */

import { ERROR_CATALOGUE, type PvError, pvError } from '../../protocol/errors.js';
import {
  featureBit,
  type StatusWriteOutcome,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_FEATURES_OK,
  VirtioStatusDevice,
} from '../../protocol/virtio/DeviceStatus.js';
import {
  DRIVER_WRITABLE,
  MMIO_CONFIG_WORD,
  MMIO_CONFIG_WORDS,
  MMIO_MAX_QUEUES,
  MMIO_REG_BYTES,
  MmioReg,
  MmioWord,
  mmioWords,
  PVIO_VIRTIO_DEVICE_ID,
  PVIO_VIRTIO_VENDOR_ID,
  regWord,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_VERSION,
} from '../../protocol/virtio/MmioTransport.js';
import { checkQueueSize } from '../../protocol/virtio/SplitRing.js';
import type { GuestMemoryMap } from './GuestMemoryMap.js';
import { ADDR_REGS, applyQueueReg, attachQueue, newQueueConfig, type QueueConfig } from './MmioQueues.js';
import { PackedDevice } from './PackedDevice.js';
import { SplitDevice } from './SplitDevice.js';

/** How the device is built. */
export interface MmioDeviceOptions {
  /** Features offered (VERSION_1 required; RING_PACKED allowed unless `ringPacked` is false). */
  readonly offered: bigint;
  /** May `offered` hold VIRTIO_F_RING_PACKED (default true)? False makes a split-only device. */
  readonly ringPacked?: boolean;
  /** The guest's memory, through which every queue address is translated. */
  readonly memory: GuestMemoryMap;
  /** Queues the device has, 1..8 (default 8). */
  readonly queues?: number;
  /** QueueNumMax of every queue, a power of two ≤ 32768 (default 256). */
  readonly queueNumMax?: number;
  /** DeviceID (default PVIO_VIRTIO_DEVICE_ID). */
  readonly deviceId?: number;
  /**
   * Where the register block lives (default: a fresh SharedArrayBuffer of its own). virtio-rdma
   * places it in a page of the guest's memory, reached through the foreign map.
   */
  readonly window?: { readonly buffer: SharedArrayBuffer; readonly offset: number };
  /** The device-specific configuration words (u32, at most MMIO_CONFIG_WORDS), set before probe. */
  readonly config?: readonly number[];
}

/** What the device did with one posted register write. */
export interface RegWriteOutcome {
  readonly reg: number;
  readonly value: number;
  /** Why it was refused (nothing changed), or undefined if applied. */
  readonly error: PvError | undefined;
}

/** What one `service()` call handled. */
export interface MmioServiceResult {
  readonly status: StatusWriteOutcome | undefined;
  readonly reg: RegWriteOutcome | undefined;
}

/** The device side of one virtio-mmio device; see the file comment. */
export class MmioDevice {
  /** The buffer holding the register block (hand it to the guest) and the block's offset in it. */
  readonly regs: SharedArrayBuffer;
  readonly regsOffset: number;
  readonly numQueues: number;
  readonly queueNumMax: number;
  private readonly _status: VirtioStatusDevice;
  private readonly _mem: GuestMemoryMap;
  private readonly _w: Int32Array;
  private readonly _queues: QueueConfig[];
  private readonly _kickSeen: Int32Array;
  private _handledSeq = 0;
  private _sel = 0;
  private _postedKicks = 0;

  constructor(opts: MmioDeviceOptions) {
    const queues = opts.queues ?? MMIO_MAX_QUEUES;
    const max = opts.queueNumMax ?? 256;
    if (!Number.isInteger(queues) || queues < 1 || queues > MMIO_MAX_QUEUES) {
      throw pvError('PV_ERR_INVALID_ARG', `a device has 1..${MMIO_MAX_QUEUES} queues, got ${queues}`);
    }
    checkQueueSize(max);
    if (opts.ringPacked === false && (opts.offered & featureBit(VIRTIO_F_RING_PACKED)) !== 0n) {
      throw pvError('PV_ERR_NOT_SUPPORTED', 'this mmio device was built to serve split virtqueues only');
    }
    const config = opts.config ?? [];
    if (config.length > MMIO_CONFIG_WORDS || !config.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32)) {
      throw pvError('PV_ERR_INVALID_ARG', `device config is at most ${MMIO_CONFIG_WORDS} u32 words`);
    }
    this.regs = opts.window?.buffer ?? new SharedArrayBuffer(MMIO_REG_BYTES);
    this.regsOffset = opts.window?.offset ?? 0;
    // The block is validated (size, alignment) before the status device zeroes its part of it.
    this._w = mmioWords(this.regs, this.regsOffset);
    this._w.fill(0);
    this._status = new VirtioStatusDevice(this.regs, opts.offered, this.regsOffset);
    this._mem = opts.memory;
    this.numQueues = queues;
    this.queueNumMax = max;
    this._queues = Array.from({ length: queues }, newQueueConfig);
    this._kickSeen = new Int32Array(MMIO_MAX_QUEUES);
    // ORDERING: MagicValue last: a driver that polls for the magic (a window
    // in its own memory, set up while it waits) then reads a complete configuration.
    for (let i = 0; i < config.length; i++) Atomics.store(this._w, MMIO_CONFIG_WORD + i, config[i] | 0);
    Atomics.store(this._w, regWord(MmioReg.VERSION), VIRTIO_MMIO_VERSION);
    Atomics.store(this._w, regWord(MmioReg.DEVICE_ID), opts.deviceId ?? PVIO_VIRTIO_DEVICE_ID);
    Atomics.store(this._w, regWord(MmioReg.VENDOR_ID), PVIO_VIRTIO_VENDOR_ID);
    this._mirror();
    Atomics.store(this._w, regWord(MmioReg.MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
  }

  /** Current Status. */
  get status(): number {
    return this._status.status;
  }
  /** The features accepted at FEATURES_OK. */
  get negotiated(): bigint {
    return this._status.negotiated;
  }
  /** DRIVER_OK set, neither FAILED nor DEVICE_NEEDS_RESET. */
  get live(): boolean {
    return this._status.live;
  }
  /** True if feature `bit` was negotiated. */
  has(bit: number): boolean {
    return this._status.has(bit);
  }

  /** The SplitDevice of queue `q` if it is ready and split, else undefined. */
  queue(q: number): SplitDevice | undefined {
    const dev = this._queues[q]?.dev;
    return dev instanceof SplitDevice ? dev : undefined;
  }

  /** The PackedDevice of queue `q` if it is ready and packed, else undefined. */
  packedQueue(q: number): PackedDevice | undefined {
    const dev = this._queues[q]?.dev;
    return dev instanceof PackedDevice ? dev : undefined;
  }

  /** The device side of queue `q` (split or packed) if it is ready, else undefined. */
  virtq(q: number): SplitDevice | PackedDevice | undefined {
    return this._queues[q]?.dev;
  }

  /** A snapshot of the doorbell, to take BEFORE looking for work (then `waitDoorbell`). */
  doorbell(): number {
    // ORDERING: seq-cst load of the driver's futex word.
    return Atomics.load(this._w, MmioWord.DOORBELL);
  }

  /** Sleeps (Atomics.wait) until the doorbell moves past `seen` or `timeoutMs` passes. */
  waitDoorbell(seen: number, timeoutMs: number): void {
    // ORDERING: sleeps only while the doorbell still holds `seen`: a post or kick after the snapshot wakes us.
    Atomics.wait(this._w, MmioWord.DOORBELL, seen, timeoutMs);
  }

  /** Checks for broken queues, then handles the pending Status and register writes, if any. */
  service(): MmioServiceResult | undefined {
    // A queue that broke since the last call makes the device need a reset BEFORE it looks at
    // the driver's writes: otherwise a QueueReady 0 posted meanwhile would detach the broken
    // queue first and the device would never report DEVICE_NEEDS_RESET (§2.1.2).
    this._checkBroken();
    const status = this._status.service();
    if (status !== undefined && status.error === undefined && status.written === 0) this._reset();
    const reg = this._serviceReg();
    this._checkBroken();
    if (status === undefined && reg === undefined) return undefined;
    return { status, reg };
  }

  /**
   * The ready queues notified since the last call (by their kick counters or a posted
   * QueueNotify), in index order. A kick is never lost: the counter only grows, so a kick after
   * this look shows next time. Kicks of queues that are not ready are dropped (spurious). Until
   * the device is live (DRIVER_OK, neither FAILED nor NEEDS_RESET) nothing is reported and no
   * kick is consumed: a device serves no buffer before DRIVER_OK (§3.1.1).
   */
  kicked(): number[] {
    if (!this._status.live) return [];
    const out: number[] = [];
    for (let q = 0; q < MMIO_MAX_QUEUES; q++) {
      // ORDERING: seq-cst load of the driver's counter; the driver bumped it after publishing avail.idx.
      const k = Atomics.load(this._w, MmioWord.KICK + q);
      const hit = k !== this._kickSeen[q] || (this._postedKicks & (1 << q)) !== 0;
      this._kickSeen[q] = k;
      if (hit && this._queues[q]?.dev !== undefined) out.push(q);
    }
    this._postedKicks = 0;
    return out;
  }

  /** Raises the used-buffer interrupt for ready queue `q` (call when publishUsed() said so). */
  interrupt(q: number): void {
    if (this._queues[q]?.dev === undefined) throw pvError('PV_ERR_INVALID_ARG', `queue ${q} is not ready`);
    this._raise(VIRTIO_MMIO_INT_VRING);
  }

  /** Bumps ConfigGeneration and raises the configuration-change interrupt. */
  configChanged(): void {
    // ORDERING: seq-cst RMW before the interrupt that tells the driver to re-read.
    Atomics.add(this._w, regWord(MmioReg.CONFIG_GENERATION), 1);
    this._raise(VIRTIO_MMIO_INT_CONFIG);
  }

  private _raise(bit: number): void {
    // ORDERING: the bit before irq_seq: a driver that sees the new irq_seq then reads the bit.
    Atomics.or(this._w, regWord(MmioReg.INTERRUPT_STATUS), bit);
    Atomics.add(this._w, MmioWord.IRQ_SEQ, 1);
    Atomics.notify(this._w, MmioWord.IRQ_SEQ);
  }

  private _serviceReg(): RegWriteOutcome | undefined {
    // ORDERING: write_seq first, then the register and value the driver stored before bumping it.
    const seq = Atomics.load(this._w, MmioWord.WRITE_SEQ);
    if (seq === this._handledSeq) return undefined;
    const reg = Atomics.load(this._w, MmioWord.WRITE_REG);
    const value = Atomics.load(this._w, MmioWord.WRITE_VALUE) >>> 0;
    let error: PvError | undefined;
    try {
      this._apply(reg, value);
    } catch (err) {
      error = err as PvError;
    }
    this._handledSeq = seq;
    this._mirror();
    // ORDERING: the mirrored registers and write_error before ack_seq; the driver reads them after the ack.
    Atomics.store(this._w, MmioWord.WRITE_ERROR, error === undefined ? 0 : ERROR_CATALOGUE[error.code].status);
    Atomics.store(this._w, MmioWord.ACK_SEQ, seq);
    Atomics.notify(this._w, MmioWord.ACK_SEQ);
    return { reg, value, error };
  }

  /** Validates one register write against the current state and applies it, or throws (nothing changed). */
  private _apply(reg: number, v: number): void {
    if (reg === MmioReg.INTERRUPT_ACK) {
      if ((v & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)) !== 0) {
        throw pvError('PV_ERR_INVALID_ARG', `InterruptACK 0x${v.toString(16)} names bits the device never sets`);
      }
      // ORDERING: seq-cst RMW; only this thread writes InterruptStatus.
      Atomics.and(this._w, regWord(MmioReg.INTERRUPT_STATUS), ~v);
      return;
    }
    if (!DRIVER_WRITABLE.has(reg)) {
      throw pvError('PV_ERR_INVALID_ARG', `register 0x${reg.toString(16)} is not writable`);
    }
    const s = this._status.status;
    if ((s & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0) {
      throw pvError('PV_ERR_VIRTIO_NEEDS_RESET', 'the device needs a reset: only Status 0 is accepted');
    }
    if ((s & VIRTIO_STATUS_FAILED) !== 0) throw pvError('PV_ERR_VIRTIO_STATUS', 'the driver set FAILED');
    if (reg === MmioReg.QUEUE_SEL || reg === MmioReg.QUEUE_NOTIFY) {
      if (v >= this.numQueues) throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue ${v} ≥ the device's ${this.numQueues}`);
      if (reg === MmioReg.QUEUE_SEL) this._sel = v;
      else this._postedKicks |= 1 << v;
      return;
    }
    const q = this._queues[this._sel];
    if (reg === MmioReg.QUEUE_READY && v === 0) {
      q.dev?.reset();
      q.dev = undefined;
      return;
    }
    if ((s & VIRTIO_STATUS_FEATURES_OK) === 0 || (s & VIRTIO_STATUS_DRIVER_OK) !== 0) {
      throw pvError(
        'PV_ERR_VIRTIO_STATUS',
        `queue setup needs FEATURES_OK and not DRIVER_OK (status 0x${s.toString(16)})`,
      );
    }
    if (q.dev !== undefined) {
      throw pvError('PV_ERR_VIRTIO_STATUS', `queue ${this._sel} is ready: write QueueReady 0 first`);
    }
    if (reg === MmioReg.QUEUE_READY) {
      if (v !== 1) throw pvError('PV_ERR_VIRTQ_LAYOUT', `QueueReady takes 0 or 1, got ${v}`);
      attachQueue(this._queues, this._sel, this._status.has(VIRTIO_F_RING_PACKED), this._mem, {
        indirectDesc: this._status.has(VIRTIO_F_INDIRECT_DESC),
        eventIdx: this._status.has(VIRTIO_F_EVENT_IDX),
      });
      return;
    }
    applyQueueReg(q, reg, v, this._status.has(VIRTIO_F_RING_PACKED), this.queueNumMax);
  }

  /** After a Status reset: every queue detached and forgotten, no interrupt pending, old kicks dropped. */
  private _reset(): void {
    for (const q of this._queues) {
      q.dev?.reset();
      q.dev = undefined;
      q.num = 0;
      q.addr.fill(0);
    }
    this._sel = 0;
    this._postedKicks = 0;
    for (let k = 0; k < MMIO_MAX_QUEUES; k++) {
      // ORDERING: seq-cst loads; kicks before the reset belong to queues that no longer exist.
      this._kickSeen[k] = Atomics.load(this._w, MmioWord.KICK + k);
    }
    // ORDERING: seq-cst store; the driver reads it after its reset write was acknowledged.
    Atomics.store(this._w, regWord(MmioReg.INTERRUPT_STATUS), 0);
    this._mirror();
  }

  /** A queue broke: DEVICE_NEEDS_RESET (once) and the configuration interrupt (§2.1.2). */
  private _checkBroken(): void {
    if ((this._status.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0) return;
    if (!this._queues.some((q) => q.dev?.broken === true)) return;
    this._status.markNeedsReset();
    this.configChanged();
  }

  /** Writes the selected queue's accepted config into the spec window. */
  private _mirror(): void {
    const q = this._queues[this._sel];
    const w = this._w;
    // ORDERING: seq-cst stores, all before the ack_seq store that publishes them (or before the guest starts).
    Atomics.store(w, regWord(MmioReg.QUEUE_SEL), this._sel);
    Atomics.store(w, regWord(MmioReg.QUEUE_NUM_MAX), this.queueNumMax);
    Atomics.store(w, regWord(MmioReg.QUEUE_NUM), q.num);
    Atomics.store(w, regWord(MmioReg.QUEUE_READY), q.dev === undefined ? 0 : 1);
    for (let a = 0; a < ADDR_REGS.length; a++) {
      const [lo, hi] = ADDR_REGS[a];
      Atomics.store(w, regWord(lo), q.addr[2 * a] | 0);
      Atomics.store(w, regWord(hi), q.addr[2 * a + 1] | 0);
    }
  }
}
