/**
 * The guest driver's side of the virtio-mmio transport (VIRTIO 1.2 §4.2.3; layout in
 * protocol/virtio/MmioTransport.ts): probe, the §3.1.1 init sequence with queue setup between
 * FEATURES_OK and DRIVER_OK, kicks and interrupts. The driver writes only its own words: every
 * register write is posted (mailbox + doorbell) and waited for, as an MMIO store that traps; what
 * the device did comes back as a catalogue code. Blocking calls use `Atomics.wait`, so they run
 * on a guest thread (a Worker), never on a thread that must keep its event loop.
 *
 * Per-queue notification: `notify(q)` bumps queue q's own kick counter, then the doorbell the
 * device sleeps on; kicks of two queues are two counters, never one merged write. Interrupts:
 * `waitInterrupt` returns InterruptStatus once non-zero; the caller acks with `ackInterrupt`
 * BEFORE it drains its used rings, so a used buffer published after the drain re-raises the bit
 * instead of being cleared by a late ack.
 */

import { codeFromStatus, type ErrorCode, pvError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import {
  featureBit,
  registerWords,
  StatusWord,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_FEATURES_OK,
} from '../../protocol/virtio/DeviceStatus.js';
import {
  MMIO_CONFIG_WORD,
  MMIO_CONFIG_WORDS,
  MMIO_MAX_QUEUES,
  MmioReg,
  MmioWord,
  mmioWords,
  PVIO_VIRTIO_DEVICE_ID,
  regWord,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_VERSION,
} from '../../protocol/virtio/MmioTransport.js';
import { type StatusWriteResult, VirtioStatusDriver } from '../../protocol/virtio/StatusDriver.js';
import { PackedDriver } from './PackedDriver.js';
import { SplitDriver, type UsedBuffer, type VirtqBuffer } from './SplitDriver.js';

/** What SplitDriver and PackedDriver share: the queue API a transport user drives. */
export interface VirtqDriver<T> {
  readonly size: number;
  readonly base: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly numFree: number;
  readonly inFlight: number;
  addChain(readable: readonly VirtqBuffer[], writable: readonly VirtqBuffer[], token: T, table?: GuestPhysAddr): number;
  publish(): boolean;
  getUsed(): UsedBuffer<T> | undefined;
  enableInterrupts(): boolean;
  disableInterrupts(): void;
}

const TWO_32 = 2 ** 32;

/** Where the register block sits and how the device model hears of an access. */
export interface MmioDriverOptions {
  /** Byte offset of the block in `regs` (default 0). */
  readonly offset?: number;
  /**
   * Called after every posted write and kick: the trap of an MMIO store. A device model that
   * sleeps on something else than the block's doorbell (an event channel: Xen's ioreq server)
   * is woken through it.
   */
  readonly trap?: () => void;
}

/** The guest's driver for one virtio-mmio device; see the file comment. */
export class MmioDriver {
  private readonly _w: Int32Array;
  private readonly _sw: Int32Array;
  private readonly _status: VirtioStatusDriver;
  private readonly _mem: SharedArrayBuffer;
  private readonly _timeoutMs: number;
  private _negotiated = 0n;
  private readonly _trap: (() => void) | undefined;

  /**
   * `regs`: the device's register block (at byte `opts.offset`, default 0); `mem`: guest memory
   * (byte offset = guest-physical address).
   */
  constructor(regs: SharedArrayBuffer, mem: SharedArrayBuffer, timeoutMs = 1000, opts: MmioDriverOptions = {}) {
    const offset = opts.offset ?? 0;
    this._w = mmioWords(regs, offset);
    this._sw = registerWords(regs, offset);
    this._status = new VirtioStatusDriver(regs, offset);
    this._mem = mem;
    this._timeoutMs = timeoutMs;
    this._trap = opts.trap;
  }

  /** Word `i` of the device-specific configuration (u32; written by the device before probe). */
  readConfig(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= MMIO_CONFIG_WORDS) {
      throw pvError('PV_ERR_INVALID_ARG', `config word ${i} not in [0, ${MMIO_CONFIG_WORDS})`);
    }
    // ORDERING: seq-cst load of a device-written word.
    return Atomics.load(this._w, MMIO_CONFIG_WORD + i) >>> 0;
  }

  /** Features accepted at FEATURES_OK (0n before `negotiate`). */
  get negotiated(): bigint {
    return this._negotiated;
  }

  /** A read of spec register `reg` (u32). */
  read(reg: MmioReg): number {
    // ORDERING: seq-cst load of a device-written word.
    return Atomics.load(this._w, regWord(reg)) >>> 0;
  }

  /** A read of Status. */
  status(): number {
    return this._status.status();
  }

  /**
   * Checks this is a pvio virtio-mmio device: MagicValue (else PV_ERR_VIRTIO_STATUS: not a
   * virtio-mmio window at all), Version 2 (1 is legacy) and DeviceID `deviceId` (0 is an empty
   * slot) — else PV_ERR_NOT_SUPPORTED.
   */
  probe(deviceId = PVIO_VIRTIO_DEVICE_ID): void {
    const magic = this.read(MmioReg.MAGIC_VALUE);
    if (magic !== VIRTIO_MMIO_MAGIC) throw pvError('PV_ERR_VIRTIO_STATUS', `MagicValue 0x${magic.toString(16)}`);
    const version = this.read(MmioReg.VERSION);
    if (version !== VIRTIO_MMIO_VERSION) throw pvError('PV_ERR_NOT_SUPPORTED', `virtio-mmio version ${version}`);
    const id = this.read(MmioReg.DEVICE_ID);
    if (id !== deviceId) {
      throw pvError('PV_ERR_NOT_SUPPORTED', `DeviceID 0x${id.toString(16)}, want 0x${deviceId.toString(16)}`);
    }
  }

  /**
   * Posts a write of `value` to register `reg` and returns its sequence number (one write at a
   * time: posting while one is unacknowledged is PV_ERR_VIRTIO_STATUS).
   */
  postWrite(reg: MmioReg, value: number): number {
    if (!Number.isInteger(value) || value < 0 || value >= TWO_32) {
      throw pvError('PV_ERR_INVALID_ARG', `a register takes a u32, got ${value}`);
    }
    // ORDERING: seq-cst loads of both sequence words; this thread alone writes write_seq.
    const seq = Atomics.load(this._w, MmioWord.WRITE_SEQ);
    if (Atomics.load(this._w, MmioWord.ACK_SEQ) !== seq) {
      throw pvError('PV_ERR_VIRTIO_STATUS', `register write ${seq} is not yet acknowledged`);
    }
    // ORDERING: register and value before the sequence bump that tells the device they are there.
    Atomics.store(this._w, MmioWord.WRITE_REG, reg);
    Atomics.store(this._w, MmioWord.WRITE_VALUE, value | 0);
    const next = (seq + 1) | 0;
    Atomics.store(this._w, MmioWord.WRITE_SEQ, next);
    this._ring();
    return next;
  }

  /** The device's verdict on write `seq`: `{ error }` once acknowledged, else undefined. */
  writeResult(seq: number): { error: ErrorCode | undefined } | undefined {
    // ORDERING: ack_seq first; write_error and the mirrored registers were stored before it.
    if (Atomics.load(this._w, MmioWord.ACK_SEQ) !== seq) return undefined;
    return { error: codeFromStatus(Atomics.load(this._w, MmioWord.WRITE_ERROR)) };
  }

  /** Writes a register and waits for the device: undefined if applied, else the refusal's code. */
  writeReg(reg: MmioReg, value: number): ErrorCode | undefined {
    const seq = this.postWrite(reg, value);
    this._await(this._w, MmioWord.ACK_SEQ, seq, () => this.writeResult(seq) !== undefined);
    return this.writeResult(seq)?.error;
  }

  /** Writes Status and waits for the device's acknowledgement. */
  writeStatus(value: number): StatusWriteResult {
    const seq = this._status.postStatus(value);
    this._ring();
    this._await(this._sw, StatusWord.ACK_SEQ, seq, () => this._status.result(seq) !== undefined);
    return this._status.result(seq) as StatusWriteResult;
  }

  /**
   * §3.1.1 steps 1–6: reset, ACKNOWLEDGE, DRIVER, DriverFeatures = (wanted + VERSION_1) ∩ offered,
   * FEATURES_OK, and checks it stuck. Queues are set up next, then `driverOk()`. On a refusal sets
   * FAILED and throws the device's code.
   */
  negotiate(wanted: bigint): bigint {
    this._negotiated = 0n;
    this._step(0);
    let s = this._step(VIRTIO_STATUS_ACKNOWLEDGE);
    s = this._step(s | VIRTIO_STATUS_DRIVER);
    const accepted = (wanted | featureBit(VIRTIO_F_VERSION_1)) & this._status.deviceFeatures();
    this._status.writeDriverFeatures(accepted);
    s = this._step(s | VIRTIO_STATUS_FEATURES_OK);
    if ((s & VIRTIO_STATUS_FEATURES_OK) === 0) throw pvError('PV_ERR_VIRTIO_STATUS', 'FEATURES_OK did not stick');
    this._negotiated = accepted;
    return accepted;
  }

  /**
   * §4.2.3.2: places a queue of `qs` entries at guest-physical `memBase` (16-aligned, the
   * driver's contiguous layout) and makes queue `index` ready: a PackedDriver when
   * VIRTIO_F_RING_PACKED was negotiated (QueueDriver/QueueDevice = the two event suppression
   * structures), else a SplitDriver. Throws the device's code on a refusal (the queue is then not
   * ready; the driver may retry).
   */
  setupQueue<T>(index: number, qs: number, memBase: number): VirtqDriver<T> {
    if ((this.status() & VIRTIO_STATUS_FEATURES_OK) === 0 || this._negotiated === 0n) {
      throw pvError('PV_ERR_VIRTIO_STATUS', 'queues are set up after FEATURES_OK');
    }
    if (!Number.isInteger(index) || index < 0 || index >= MMIO_MAX_QUEUES) {
      throw pvError('PV_ERR_INVALID_ARG', `queue index ${index} not in [0, ${MMIO_MAX_QUEUES})`);
    }
    // The driver checks qs and placement, and zeroes its areas before the device may look.
    const opts = {
      eventIdx: (this._negotiated & featureBit(VIRTIO_F_EVENT_IDX)) !== 0n,
      indirect: (this._negotiated & featureBit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
    };
    const packed = (this._negotiated & featureBit(VIRTIO_F_RING_PACKED)) !== 0n;
    const drv = packed
      ? new PackedDriver<T>(this._mem, memBase, qs, opts)
      : new SplitDriver<T>(this._mem, memBase, qs, opts);
    this._must(MmioReg.QUEUE_SEL, index);
    if (this.read(MmioReg.QUEUE_READY) !== 0) throw pvError('PV_ERR_VIRTIO_STATUS', `queue ${index} is in use`);
    const max = this.read(MmioReg.QUEUE_NUM_MAX);
    if (qs > max) throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue ${index}: size ${qs} > QueueNumMax ${max}`);
    this._must(MmioReg.QUEUE_NUM, qs);
    const [desc, driver, device] =
      drv instanceof PackedDriver
        ? [drv.layout.desc, drv.layout.driverEvent, drv.layout.deviceEvent]
        : [drv.layout.desc, drv.layout.avail, drv.layout.used];
    this._addr(MmioReg.QUEUE_DESC_LOW, MmioReg.QUEUE_DESC_HIGH, memBase + desc);
    this._addr(MmioReg.QUEUE_DRIVER_LOW, MmioReg.QUEUE_DRIVER_HIGH, memBase + driver);
    this._addr(MmioReg.QUEUE_DEVICE_LOW, MmioReg.QUEUE_DEVICE_HIGH, memBase + device);
    this._must(MmioReg.QUEUE_READY, 1);
    return drv;
  }

  /** §3.1.1 step 8: DRIVER_OK; the device serves its ready queues from now on. */
  driverOk(): void {
    this._step(this.status() | VIRTIO_STATUS_DRIVER_OK);
  }

  /** Gives up on the device (FAILED). */
  fail(): void {
    this.writeStatus(this.status() | VIRTIO_STATUS_FAILED);
  }

  /** QueueNotify for queue `q`: call only when the queue's publish() returned true. */
  notify(q: number): void {
    if (!Number.isInteger(q) || q < 0 || q >= MMIO_MAX_QUEUES) throw pvError('PV_ERR_INVALID_ARG', `queue ${q}`);
    // ORDERING: seq-cst RMW after publish()'s avail.idx store; the device loads the counter, then avail.idx.
    Atomics.add(this._w, MmioWord.KICK + q, 1);
    this._ring();
  }

  /**
   * InterruptStatus once it is non-zero, waiting up to `timeoutMs` (0 on timeout). A bit set
   * between our look and our sleep moved irq_seq first, so the wait returns at once.
   */
  waitInterrupt(timeoutMs: number): number {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // ORDERING: irq_seq before InterruptStatus; the device sets the bit, then bumps irq_seq.
      const seq = Atomics.load(this._w, MmioWord.IRQ_SEQ);
      const bits = this.read(MmioReg.INTERRUPT_STATUS);
      if (bits !== 0) return bits;
      const left = deadline - Date.now();
      if (left <= 0) return 0;
      // ORDERING: sleeps only while irq_seq is still `seq`.
      Atomics.wait(this._w, MmioWord.IRQ_SEQ, seq, left);
    }
  }

  /** InterruptACK of `bits` (before draining the used rings; see the file comment). */
  ackInterrupt(bits: number): void {
    const err = this.writeReg(MmioReg.INTERRUPT_ACK, bits);
    if (err !== undefined) throw pvError(err, `InterruptACK 0x${bits.toString(16)} refused`);
  }

  private _step(value: number): number {
    const r = this.writeStatus(value);
    if (r.error !== undefined) {
      this.writeStatus(this.status() | VIRTIO_STATUS_FAILED);
      throw pvError(r.error, `device refused status 0x${value.toString(16)}`);
    }
    return r.status;
  }

  private _must(reg: MmioReg, value: number): void {
    const err = this.writeReg(reg, value);
    if (err !== undefined) throw pvError(err, `device refused register 0x${reg.toString(16)} = ${value}`);
  }

  private _addr(lo: MmioReg, hi: MmioReg, gpa: number): void {
    this._must(lo, gpa % TWO_32);
    this._must(hi, Math.floor(gpa / TWO_32));
  }

  private _ring(): void {
    // ORDERING: seq-cst RMW after the posted words, then wake the device sleeping on it.
    Atomics.add(this._w, MmioWord.DOORBELL, 1);
    Atomics.notify(this._w, MmioWord.DOORBELL);
    // A device model that serves other work too sleeps elsewhere: the trap tells it (ioreq).
    this._trap?.();
  }

  /** Blocks until `done()`, sleeping on `words[at]` while it holds the value before `seq`. */
  private _await(words: Int32Array, at: number, seq: number, done: () => boolean): void {
    const deadline = Date.now() + this._timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw pvError('PV_ERR_TIMEOUT', `device did not acknowledge write ${seq}`);
      // ORDERING: sleeps only while the ack word still holds the previous sequence (no lost wake-up).
      Atomics.wait(words, at, (seq - 1) | 0, left);
    }
  }
}
