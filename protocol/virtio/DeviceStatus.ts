/**
 * Virtio device status and feature negotiation (VIRTIO 1.2 §2.1, §2.2, §3.1.1) over transport
 * registers in a SharedArrayBuffer, as virtio-mmio lays them out but with each register a whole
 * Int32 word. The driver (guest thread) and the device (driver-domain thread) never share a
 * writer: an MMIO write to Status is a trap into the device, so here the driver posts the value
 * it writes and the device, which alone writes `status`, validates it and acknowledges.
 *
 * ```
 * word  field           writer  reader  note
 * 0     status          device  driver  what a read of Status returns (accepted bits, NEEDS_RESET)
 * 1     status_write    driver  device  the value of the driver's last write to Status
 * 2     write_seq       driver  device  bumped after status_write: "a write is pending" (notify)
 * 3     ack_seq         device  driver  = write_seq once that write was handled (notify)
 * 4     write_error     device  driver  0, or the catalogue status of the last write's rejection
 * 5     device_feat_lo  device  driver  DeviceFeatures bits 0..31 (set once, before the driver runs)
 * 6     device_feat_hi  device  driver  DeviceFeatures bits 32..63
 * 7     driver_feat_lo  driver  device  DriverFeatures bits 0..31 (read once, at the FEATURES_OK write)
 * 8     driver_feat_hi  driver  device  DriverFeatures bits 32..63
 * ```
 * The driver's sequence (§3.1.1): write 0 (reset) → ACKNOWLEDGE → | DRIVER → write DriverFeatures
 * (a subset of DeviceFeatures, VERSION_1 included) → | FEATURES_OK → re-read Status: FEATURES_OK
 * still set means the device took the features → | DRIVER_OK. The device refuses, with
 * `PV_ERR_VIRTIO_STATUS`, any write that clears a bit (other than a reset), sets more than one
 * new bit, sets a bit out of order, or sets DEVICE_NEEDS_RESET (a device-only bit). FAILED may be
 * set by the driver at any time; after it, and after the device set DEVICE_NEEDS_RESET
 * (`PV_ERR_VIRTIO_NEEDS_RESET`), only a reset is accepted. Rewriting the current value is a no-op.
 * The device keeps a private copy of the features it accepted; later writes to driver_feat_*
 * are ignored, as the spec lets the device do.
 */

import { ERROR_CATALOGUE, type ErrorCode, type PvError, pvError } from '../errors.js';

/** The driver has noticed the device. */
export const VIRTIO_STATUS_ACKNOWLEDGE = 1;
/** The driver knows how to drive the device. */
export const VIRTIO_STATUS_DRIVER = 2;
/** The driver is set up and ready to drive the device. */
export const VIRTIO_STATUS_DRIVER_OK = 4;
/** The driver has acknowledged the features it understands; feature negotiation is complete. */
export const VIRTIO_STATUS_FEATURES_OK = 8;
/** The device hit an error it cannot recover from (set by the device only). */
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64;
/** The driver gave up on the device. */
export const VIRTIO_STATUS_FAILED = 128;

/** Feature bit (VIRTIO 1.2 §6): descriptors may point to indirect tables. */
export const VIRTIO_F_INDIRECT_DESC = 28;
/** Feature bit: `used_event` / `avail_event` replace the NO_INTERRUPT / NO_NOTIFY flags. */
export const VIRTIO_F_EVENT_IDX = 29;
/** Feature bit: a VIRTIO 1.x (non-legacy) device; pvio requires it. */
export const VIRTIO_F_VERSION_1 = 32;
/** Feature bit: the packed virtqueue layout. */
export const VIRTIO_F_RING_PACKED = 34;

/** The mask of one feature bit. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** Int32 word indices of the transport registers (see the file comment). */
export const enum StatusWord {
  STATUS = 0,
  STATUS_WRITE = 1,
  WRITE_SEQ = 2,
  ACK_SEQ = 3,
  WRITE_ERROR = 4,
  DEVICE_FEAT_LO = 5,
  DEVICE_FEAT_HI = 6,
  DRIVER_FEAT_LO = 7,
  DRIVER_FEAT_HI = 8,
}

/** Words in the register block. */
export const STATUS_REG_WORDS = 9;
/** Bytes of the register block. */
export const STATUS_REG_BYTES = STATUS_REG_WORDS * 4;

/** Every bit a Status write may carry. */
export const ALL_STATUS_BITS = 0xff;
const U64 = (1n << 64n) - 1n;
/** The one bit each step of the init sequence adds, keyed by the status it is added to. */
const NEXT_BIT = new Map<number, number>([
  [0, VIRTIO_STATUS_ACKNOWLEDGE],
  [VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_DRIVER],
  [VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, VIRTIO_STATUS_FEATURES_OK],
  [VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_DRIVER_OK],
]);

/**
 * The register block at byte `offset` of `regs` as Int32 words (PV_ERR_VIRTQ_LAYOUT if it does
 * not fit; the offset is 4-aligned, checked by the Int32Array).
 */
export function registerWords(regs: SharedArrayBuffer, offset = 0): Int32Array {
  if (!Number.isSafeInteger(offset) || offset < 0 || regs.byteLength - offset < STATUS_REG_BYTES) {
    throw pvError(
      'PV_ERR_VIRTQ_LAYOUT',
      `status registers need ${STATUS_REG_BYTES} bytes, got ${regs.byteLength - offset}`,
    );
  }
  return new Int32Array(regs, offset, STATUS_REG_WORDS);
}

/** Reads a 64-bit feature register from its two halves. */
export function readFeatures(words: Int32Array, lo: StatusWord, hi: StatusWord): bigint {
  // ORDERING: seq-cst loads; the writer stored both halves before the status write that makes them matter.
  return (BigInt(Atomics.load(words, hi) >>> 0) << 32n) | BigInt(Atomics.load(words, lo) >>> 0);
}

/** Writes a 64-bit feature register as its two halves (PV_ERR_INVALID_ARG unless a u64 bigint). */
export function writeFeatures(words: Int32Array, lo: StatusWord, hi: StatusWord, features: bigint): void {
  if (typeof features !== 'bigint' || features < 0n || features > U64) {
    throw pvError('PV_ERR_INVALID_ARG', `features must be a bigint in [0, 2^64), got ${String(features)}`);
  }
  // ORDERING: seq-cst stores, before the status write (write_seq bump) the peer acts on.
  Atomics.store(words, lo, Number(features & 0xffffffffn) | 0);
  Atomics.store(words, hi, Number(features >> 32n) | 0);
}

/** What the device did with one driver write to Status. */
export interface StatusWriteOutcome {
  /** The value the driver wrote. */
  readonly written: number;
  /** Status after the write. */
  readonly status: number;
  /** Why the write was refused (status unchanged), or undefined if it was applied. */
  readonly error: PvError | undefined;
}

/**
 * The device side: the only writer of `status`, `ack_seq`, `write_error` and DeviceFeatures. It
 * validates each posted driver write in `service()`, on the device's thread.
 */
export class VirtioStatusDevice {
  /** The register block to hand to the driver's thread. */
  readonly regs: SharedArrayBuffer;
  /** The features this device offers. */
  readonly offered: bigint;
  private readonly _words: Int32Array;
  private _handledSeq: number;
  private _negotiated = 0n;

  /** Creates a fresh register block offering `offered` (VERSION_1 must be among them). */
  static create(offered: bigint): VirtioStatusDevice {
    return new VirtioStatusDevice(new SharedArrayBuffer(STATUS_REG_BYTES), offered);
  }

  /** Takes over `regs` at byte `offset` (zeroing it: a device starts reset) and offers `offered`. */
  constructor(regs: SharedArrayBuffer, offered: bigint, offset = 0) {
    if (typeof offered !== 'bigint' || (offered & featureBit(VIRTIO_F_VERSION_1)) === 0n) {
      throw pvError('PV_ERR_INVALID_ARG', 'a virtio 1.x device must offer VIRTIO_F_VERSION_1');
    }
    this.regs = regs;
    this._words = registerWords(regs, offset);
    this.offered = offered;
    for (let w = 0; w < STATUS_REG_WORDS; w++) {
      // ORDERING: before the driver thread is given the block; seq-cst keeps it simple.
      Atomics.store(this._words, w, 0);
    }
    writeFeatures(this._words, StatusWord.DEVICE_FEAT_LO, StatusWord.DEVICE_FEAT_HI, offered);
    this._handledSeq = 0;
  }

  /** Current status. */
  get status(): number {
    // ORDERING: this thread is the only writer; a load is enough.
    return Atomics.load(this._words, StatusWord.STATUS);
  }

  /** The features accepted at FEATURES_OK (0n before that, and after a reset). */
  get negotiated(): bigint {
    return this._negotiated;
  }

  /** True once DRIVER_OK is set and neither FAILED nor DEVICE_NEEDS_RESET is. */
  get live(): boolean {
    const s = this.status;
    return (s & VIRTIO_STATUS_DRIVER_OK) !== 0 && (s & (VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DEVICE_NEEDS_RESET)) === 0;
  }

  /** True if a feature bit was negotiated. */
  has(bit: number): boolean {
    return (this._negotiated & featureBit(bit)) !== 0n;
  }

  /** Sets DEVICE_NEEDS_RESET (after the driver broke the protocol); only a driver reset clears it. */
  markNeedsReset(): void {
    // ORDERING: seq-cst RMW; the driver's next Status read sees it. Only this thread writes status.
    Atomics.or(this._words, StatusWord.STATUS, VIRTIO_STATUS_DEVICE_NEEDS_RESET);
  }

  /** True if the driver posted a write not yet handled. */
  pending(): boolean {
    // ORDERING: seq-cst load of the driver's doorbell word.
    return Atomics.load(this._words, StatusWord.WRITE_SEQ) !== this._handledSeq;
  }

  /** Handles the driver's pending Status write, if any (undefined if none). Never throws on driver input. */
  service(): StatusWriteOutcome | undefined {
    // ORDERING: seq-cst load of write_seq, then of status_write: the driver stored the value first.
    const seq = Atomics.load(this._words, StatusWord.WRITE_SEQ);
    if (seq === this._handledSeq) return undefined;
    const written = Atomics.load(this._words, StatusWord.STATUS_WRITE);
    let error: PvError | undefined;
    try {
      this._apply(written);
    } catch (err) {
      error = err as PvError;
    }
    this._handledSeq = seq;
    const code: ErrorCode | undefined = error?.code;
    // ORDERING: status (in _apply) and write_error before ack_seq: the driver reads them after seeing the ack.
    Atomics.store(this._words, StatusWord.WRITE_ERROR, code === undefined ? 0 : ERROR_CATALOGUE[code].status);
    Atomics.store(this._words, StatusWord.ACK_SEQ, seq);
    Atomics.notify(this._words, StatusWord.ACK_SEQ);
    return { written, status: this.status, error };
  }

  /** Validates one write against the current status and applies it, or throws (status unchanged). */
  private _apply(v: number): void {
    const s = this.status;
    if (v === 0) {
      this._negotiated = 0n;
      // ORDERING: seq-cst store; published to the driver by the ack that follows.
      Atomics.store(this._words, StatusWord.STATUS, 0);
      return;
    }
    if (v === s) return;
    if ((v & ~ALL_STATUS_BITS) !== 0) throw statusError(`0x${v.toString(16)} has bits beyond the 8-bit status`);
    if ((s & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0 && v !== (s | VIRTIO_STATUS_FAILED)) {
      throw pvError('PV_ERR_VIRTIO_NEEDS_RESET', `status 0x${s.toString(16)}: only a reset (or FAILED) is accepted`);
    }
    if ((s & ~v) !== 0) throw statusError(`write 0x${v.toString(16)} clears bits of 0x${s.toString(16)}`);
    const added = v & ~s;
    if ((added & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0) throw statusError('DEVICE_NEEDS_RESET is set by the device');
    if (added === VIRTIO_STATUS_FAILED) {
      this._setStatus(v);
      return;
    }
    if ((s & VIRTIO_STATUS_FAILED) !== 0) throw statusError('the driver set FAILED: only a reset is accepted');
    const expected = NEXT_BIT.get(s);
    if (added !== expected) {
      throw statusError(
        `write 0x${v.toString(16)} after 0x${s.toString(16)}: expected bit 0x${expected?.toString(16)}`,
      );
    }
    if (added === VIRTIO_STATUS_FEATURES_OK) {
      // A private copy: what the device checks is what it uses, whatever the driver writes later.
      const wanted = readFeatures(this._words, StatusWord.DRIVER_FEAT_LO, StatusWord.DRIVER_FEAT_HI);
      if ((wanted & ~this.offered) !== 0n) {
        throw statusError(
          `driver features 0x${wanted.toString(16)} are not a subset of 0x${this.offered.toString(16)}`,
        );
      }
      if ((wanted & featureBit(VIRTIO_F_VERSION_1)) === 0n) throw statusError('VIRTIO_F_VERSION_1 was not accepted');
      this._negotiated = wanted;
    }
    this._setStatus(v);
  }

  private _setStatus(v: number): void {
    // ORDERING: seq-cst store; the driver reads it after the ack. Only this thread writes status.
    Atomics.store(this._words, StatusWord.STATUS, v);
  }
}

/** A PV_ERR_VIRTIO_STATUS error with `message`. */
export function statusError(message: string): PvError {
  return pvError('PV_ERR_VIRTIO_STATUS', message);
}
