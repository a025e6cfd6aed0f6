/**
 * The native driver of pvio's accelerator. It sees only a `PciFunction` (BAR 0 registers and
 * BAR 1 device memory per protocol/accel/AccelRegs.ts, `dmaAddr` for its own memory) and the
 * owning domain's `GuestMemory`, so the same driver runs native (IOMMU bypass), in a passthrough
 * guest (IOMMU translate) and in a driver domain.
 *
 * Every operation follows one protocol: write the parameters, note DONE, ring the doorbell,
 * poll DONE until it moved (spinning, then 1 ms sleeps, up to `timeoutMs`), read STATUS. A
 * non-OK status throws: BAD_RANGE → PV_ERR_OUT_OF_BOUNDS, BAD_LENGTH → PV_ERR_BAD_LENGTH,
 * BAD_ALIGNMENT → PV_ERR_BAD_ALIGNMENT, DMA_FAULT → PV_ERR_OUT_OF_BOUNDS, UNKNOWN_KERNEL →
 * PV_ERR_BAD_OP, BAD_ARG → PV_ERR_INVALID_ARG, each message naming the device status.
 * `launchRaw` returns the status instead (tests send hostile values with it).
 *
 * Single-threaded: one driver instance per domain thread.
 */

import {
  ACCEL_ID,
  ACCEL_KERNEL_ARGS,
  ACCEL_VERSION,
  AccelDmaDir,
  AccelKernel,
  AccelReg,
  AccelStatus,
  accelStatusName,
  kernelArgReg,
} from '../../protocol/accel/AccelRegs.js';
import { type ErrorCode, pvError } from '../../protocol/errors.js';
import type { MmioRegion, PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';

/** Driver options. */
export interface AccelDriverOptions {
  /** DONE polls before the driver sleeps 1 ms between polls (default 1000). */
  readonly spinBudget?: number;
  /** How long one operation may take (default 10 s). */
  readonly timeoutMs?: number;
}

/** What a kernel launch reports. */
export interface AccelResult {
  readonly status: number;
  readonly result0: number;
  readonly result1: number;
}

const STATUS_CODES: Record<number, ErrorCode> = {
  [AccelStatus.BAD_RANGE]: 'PV_ERR_OUT_OF_BOUNDS',
  [AccelStatus.BAD_LENGTH]: 'PV_ERR_BAD_LENGTH',
  [AccelStatus.BAD_ALIGNMENT]: 'PV_ERR_BAD_ALIGNMENT',
  [AccelStatus.DMA_FAULT]: 'PV_ERR_OUT_OF_BOUNDS',
  [AccelStatus.UNKNOWN_KERNEL]: 'PV_ERR_BAD_OP',
  [AccelStatus.BAD_ARG]: 'PV_ERR_INVALID_ARG',
};

/** A word nobody notifies: waiting on it is a plain 1 ms sleep between polls. */
const SLEEP_WORD = new Int32Array(new SharedArrayBuffer(4));

/** The accelerator driver; see the file comment. */
export class AccelDriver {
  /** Device memory bytes (BAR 1 size). */
  readonly memBytes: number;
  /** Largest DMA transfer or kernel range. */
  readonly maxXfer: number;
  /** Largest MATMUL_F32 side. */
  readonly maxMatrix: number;
  private readonly _pci: PciFunction;
  private readonly _bar: MmioRegion;
  private readonly _spin: number;
  private readonly _timeoutMs: number;

  /** Attaches to `pci` (an `accel` function), checks its identity and resets its engines. */
  constructor(pci: PciFunction, opts: AccelDriverOptions = {}) {
    if (pci.kind !== 'accel') throw pvError('PV_ERR_CONFIG', `${pci.name} is a ${pci.kind}, not an accel`);
    const bar = pci.bars[0];
    if (!bar || bar.size < AccelReg.RESULT1 + 4)
      throw pvError('PV_ERR_CONFIG', `${pci.name}: BAR 0 missing or too small`);
    if (bar.read32(AccelReg.ID) >>> 0 !== ACCEL_ID)
      throw pvError('PV_ERR_CONFIG', `${pci.name}: not a pvio accelerator`);
    const ver = bar.read32(AccelReg.VERSION);
    if (ver >> 8 !== ACCEL_VERSION >> 8) {
      throw pvError('PV_ERR_NOT_SUPPORTED', `${pci.name}: accelerator version ${ver.toString(16)}, driver speaks 1.x`);
    }
    this._pci = pci;
    this._bar = bar;
    this.memBytes = bar.read32(AccelReg.MEM_BYTES) >>> 0;
    this.maxXfer = bar.read32(AccelReg.MAX_XFER) >>> 0;
    this.maxMatrix = bar.read32(AccelReg.MAX_MATRIX) >>> 0;
    this._spin = opts.spinBudget ?? 1000;
    this._timeoutMs = opts.timeoutMs ?? 10_000;
    bar.write32(AccelReg.RESET, 1);
  }

  /** Name of the PCI function (`accel0`). */
  get name(): string {
    return this._pci.name;
  }

  /** BAR 1: the device memory, for direct 32-bit reads and writes. */
  get memory(): MmioRegion {
    const m = this._pci.bars[1];
    if (m === undefined) throw pvError('PV_ERR_CONFIG', `${this.name}: no BAR 1`);
    return m;
  }

  /** Copies `len` bytes of the owner's memory at `gpa` to device memory at `devOffset`. */
  copyToDevice(gpa: GuestPhysAddr, devOffset: number, len: number): void {
    this.dma(this._pci.dmaAddr(gpa), devOffset, len, AccelDmaDir.TO_DEVICE);
  }

  /** Copies `len` bytes of device memory at `devOffset` to the owner's memory at `gpa`. */
  copyFromDevice(devOffset: number, gpa: GuestPhysAddr, len: number): void {
    this.dma(this._pci.dmaAddr(gpa), devOffset, len, AccelDmaDir.FROM_DEVICE);
  }

  /** One DMA between device address `host` and device memory; throws on a non-OK status. */
  dma(host: Iova, devOffset: number, len: number, dir: AccelDmaDir): void {
    const st = this.dmaRaw(host, devOffset, len, dir);
    this._check(st, `DMA ${dir === AccelDmaDir.TO_DEVICE ? 'to' : 'from'} device [${devOffset}, +${len})`);
  }

  /** One DMA with the registers written as given (no checks); returns the device status. */
  dmaRaw(host: number, devOffset: number, len: number, dir: number): number {
    const b = this._bar;
    b.write32(AccelReg.DMA_HOST_LO, (host % 0x1_0000_0000) | 0);
    b.write32(AccelReg.DMA_HOST_HI, Math.floor(host / 0x1_0000_0000) | 0);
    b.write32(AccelReg.DMA_DEV, devOffset | 0);
    b.write32(AccelReg.DMA_LEN, len | 0);
    b.write32(AccelReg.DMA_DIR, dir | 0);
    this._ringAndWait(AccelReg.DMA_DOORBELL, AccelReg.DMA_DONE);
    return b.read32(AccelReg.DMA_STATUS);
  }

  /** Launches `kernel` with up to 8 argument words; throws on a non-OK status. */
  launch(kernel: AccelKernel, args: readonly number[]): AccelResult {
    const r = this.launchRaw(kernel, args);
    this._check(r.status, `kernel ${kernel}`);
    return r;
  }

  /** Launches with the registers written as given (no checks); returns status and results. */
  launchRaw(kernel: number, args: readonly number[]): AccelResult {
    if (args.length > ACCEL_KERNEL_ARGS) throw pvError('PV_ERR_INVALID_ARG', `at most ${ACCEL_KERNEL_ARGS} arguments`);
    const b = this._bar;
    b.write32(AccelReg.KERNEL_ID, kernel | 0);
    for (let i = 0; i < ACCEL_KERNEL_ARGS; i++) b.write32(kernelArgReg(i), (args[i] ?? 0) | 0);
    this._ringAndWait(AccelReg.KERNEL_DOORBELL, AccelReg.KERNEL_DONE);
    return {
      status: b.read32(AccelReg.KERNEL_STATUS),
      result0: b.read32(AccelReg.RESULT0) >>> 0,
      result1: b.read32(AccelReg.RESULT1) >>> 0,
    };
  }

  /** FNV-1a 32 and CRC-32 of device memory [offset, +len). */
  checksum(offset: number, len: number): { fnv1a: number; crc32: number } {
    const r = this.launch(AccelKernel.CHECKSUM, [offset, len]);
    return { fnv1a: r.result0, crc32: r.result1 };
  }

  /** out[i] = a[i] + b[i] for `n` f32 elements (device-memory offsets). */
  vectorAdd(a: number, b: number, out: number, n: number): void {
    this.launch(AccelKernel.VECTOR_ADD, [a, b, out, n]);
  }

  /** out = a × b for row-major n × n f32 matrices (device-memory offsets). */
  matmul(a: number, b: number, out: number, n: number): void {
    this.launch(AccelKernel.MATMUL_F32, [a, b, out, n]);
  }

  private _ringAndWait(doorbell: number, doneReg: number): void {
    const b = this._bar;
    const before = b.read32(doneReg);
    b.write32(doorbell, 1);
    const deadline = Date.now() + this._timeoutMs;
    for (let i = 0; b.read32(doneReg) === before; i++) {
      if (i < this._spin) continue;
      if (Date.now() > deadline)
        throw pvError('PV_ERR_TIMEOUT', `${this.name}: no completion after ${this._timeoutMs} ms`);
      // ORDERING: nobody stores to or notifies SLEEP_WORD; this is a plain 1 ms sleep.
      Atomics.wait(SLEEP_WORD, 0, 0, 1);
    }
  }

  private _check(status: number, what: string): void {
    if (status === AccelStatus.OK) return;
    const code = STATUS_CODES[status] ?? 'PV_ERR_BAD_REQUEST';
    throw pvError(code, `${this.name}: ${what} failed: status ${accelStatusName(status)}`);
  }
}
