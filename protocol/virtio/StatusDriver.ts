/**
 * The driver's side of virtio device status and feature negotiation: the guest thread posts its
 * writes to the transport registers laid out in DeviceStatus.ts (offset table there) and waits
 * for the device's acknowledgement. It is the only writer of `status_write`, `write_seq` and
 * DriverFeatures; the device (VirtioStatusDevice) alone writes `status`.
 */

import { codeFromStatus, type ErrorCode, pvError } from '../errors.js';
import {
  ALL_STATUS_BITS,
  featureBit,
  readFeatures,
  registerWords,
  StatusWord,
  statusError,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_FEATURES_OK,
  writeFeatures,
} from './DeviceStatus.js';

/** What the driver learns from one acknowledged Status write. */
export interface StatusWriteResult {
  readonly status: number;
  /** The code of the device's refusal, or undefined if the write was applied. */
  readonly error: ErrorCode | undefined;
}

/** The driver side: the only writer of `status_write`, `write_seq` and DriverFeatures. */
export class VirtioStatusDriver {
  private readonly _words: Int32Array;

  /** The driver side of the status block at byte `offset` of `regs`. */
  constructor(regs: SharedArrayBuffer, offset = 0) {
    this._words = registerWords(regs, offset);
  }

  /** A read of the Status register. */
  status(): number {
    // ORDERING: seq-cst load of the device-written word.
    return Atomics.load(this._words, StatusWord.STATUS);
  }

  /** A read of DeviceFeatures. */
  deviceFeatures(): bigint {
    return readFeatures(this._words, StatusWord.DEVICE_FEAT_LO, StatusWord.DEVICE_FEAT_HI);
  }

  /** A write of DriverFeatures (the device reads it when the driver sets FEATURES_OK). */
  writeDriverFeatures(features: bigint): void {
    writeFeatures(this._words, StatusWord.DRIVER_FEAT_LO, StatusWord.DRIVER_FEAT_HI, features);
  }

  /**
   * Posts a write of `value` to Status and returns its sequence number; the device handles it in
   * `service()`. One write at a time, as an MMIO store: posting while one is unacknowledged is
   * `PV_ERR_VIRTIO_STATUS`.
   */
  postStatus(value: number): number {
    if (!Number.isInteger(value) || value < 0 || value > ALL_STATUS_BITS) {
      throw pvError('PV_ERR_INVALID_ARG', `status must be an integer in [0, 255], got ${value}`);
    }
    // ORDERING: seq-cst loads of both sequence words; the driver is the only writer of write_seq.
    const seq = Atomics.load(this._words, StatusWord.WRITE_SEQ);
    if (Atomics.load(this._words, StatusWord.ACK_SEQ) !== seq) {
      throw statusError(`status write ${seq} is not yet acknowledged by the device`);
    }
    // ORDERING: the value before the sequence bump that tells the device it is there.
    Atomics.store(this._words, StatusWord.STATUS_WRITE, value);
    const next = (seq + 1) | 0;
    Atomics.store(this._words, StatusWord.WRITE_SEQ, next);
    Atomics.notify(this._words, StatusWord.WRITE_SEQ);
    return next;
  }

  /** The outcome of write `seq` if the device has acknowledged it, else undefined. */
  result(seq: number): StatusWriteResult | undefined {
    // ORDERING: ack_seq first; status and write_error were stored before it.
    if (Atomics.load(this._words, StatusWord.ACK_SEQ) !== seq) return undefined;
    const err = Atomics.load(this._words, StatusWord.WRITE_ERROR);
    return { status: this.status(), error: codeFromStatus(err) };
  }

  /**
   * Posts a write and blocks (`Atomics.wait`, so not on a thread that must keep its event loop)
   * until the device acknowledges it; `PV_ERR_TIMEOUT` after `timeoutMs`.
   */
  writeStatus(value: number, timeoutMs = 1000): StatusWriteResult {
    const seq = this.postStatus(value);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.result(seq);
      if (r !== undefined) return r;
      const left = deadline - Date.now();
      if (left <= 0) throw pvError('PV_ERR_TIMEOUT', `device did not acknowledge status write ${seq}`);
      // ORDERING: sleeps only while ack_seq still holds the previous value (no lost wake-up).
      Atomics.wait(this._words, StatusWord.ACK_SEQ, (seq - 1) | 0, left);
    }
  }

  /**
   * The §3.1.1 init sequence, blocking on each step: reset, ACKNOWLEDGE, DRIVER, accept
   * `wanted ∩ offered` (+ VERSION_1), FEATURES_OK, check it stuck, DRIVER_OK. Returns the
   * negotiated features; on a refusal sets FAILED and throws the device's error code.
   */
  negotiate(wanted: bigint, timeoutMs = 1000): bigint {
    const step = (value: number): number => {
      const r = this.writeStatus(value, timeoutMs);
      if (r.error !== undefined) {
        this.writeStatus(this.status() | VIRTIO_STATUS_FAILED, timeoutMs);
        throw pvError(r.error, `device refused status 0x${value.toString(16)}`);
      }
      return r.status;
    };
    step(0);
    let s = step(VIRTIO_STATUS_ACKNOWLEDGE);
    s = step(s | VIRTIO_STATUS_DRIVER);
    const accepted = (wanted | featureBit(VIRTIO_F_VERSION_1)) & this.deviceFeatures();
    this.writeDriverFeatures(accepted);
    s = step(s | VIRTIO_STATUS_FEATURES_OK);
    if ((s & VIRTIO_STATUS_FEATURES_OK) === 0) throw statusError('the device did not keep FEATURES_OK');
    step(s | VIRTIO_STATUS_DRIVER_OK);
    return accepted;
  }
}
