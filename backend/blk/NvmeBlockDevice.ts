/**
 * A BlockDevice over an NVMe namespace the driver domain owns (pci, IOMMU translate), driven
 * by the native driver (drivers/nvme/NvmeDriver.ts): blkback serves guests' vbds from nvme0.
 *
 * Two data paths, one device:
 *  - ZERO COPY (`DmaBlockDevice`, what BlkHandler uses): blkback maps each segment's grant FOR
 *    THE DEVICE (`mapGrants(…, { device: 'nvme0' })` inserts an IOMMU extent and returns its
 *    device address, as Xen's `GNTMAP_device_map` returns `dev_bus_addr`) and `queueDma` hands
 *    that address to the controller (PRP1, and a PRP list when the range spans pages). The
 *    controller's DMA reads or writes the guest's pages through dom0's IOMMU context; dom0's CPU
 *    never touches the data. One `queueDma` is one NVMe command over a DEVICE-contiguous range:
 *    BlkHandler maps a run of whole-page segments with one grant map when the guest's frames are
 *    contiguous (one IOMMU extent → one command for the whole run, e.g. 128 KiB), and page by
 *    page otherwise (every map gets its own extent with a guard page after it, so separately
 *    mapped pages are never contiguous: one command each). The commands of one request are
 *    queued back to back and the SQ doorbell is rung once per batch (at most queue entries − 1
 *    in flight; a full queue is drained first).
 *  - COPY (`read` / `write`, the plain BlockDevice calls, for callers that hold an ordinary
 *    buffer): the bytes bounce through pages of dom0's own memory, one NVMe command per chunk
 *    of up to `bounceBytes`.
 *
 * Why not a different interface: BlockDevice stays the contract every backend device keeps
 * (FileBlockDevice has no device address space); the DMA calls are an optional extension that
 * BlkHandler detects with `isDmaBlockDevice`.
 */

import type { NvmeDriver } from '../../drivers/nvme/NvmeDriver.js';
import type { NvmeCompletion } from '../../drivers/nvme/Types.js';
import { checkDeviceRange, type DmaBlockDevice } from '../../protocol/blkif/BlockDevice.js';
import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import { type GuestPhysAddr, type Iova, PAGE_SIZE } from '../../protocol/Types.js';

/** Options of an NVMe-backed device. */
export interface NvmeBlockDeviceOptions {
  /** Serve the namespace read-only. */
  readonly readOnly?: boolean;
  /** I/O queue the backend uses (default 1). */
  readonly qid?: number;
  /** Bounce buffer of the copy path, bytes (multiple of 4 KiB; default 128 KiB, capped by the driver's max transfer). */
  readonly bounceBytes?: number;
}

/** Counters of the device. */
export interface NvmeBlockStats {
  /** NVMe commands issued on guest pages mapped for the device (zero copy). */
  dmaCommands: number;
  /** Batches drained (doorbell rung, every completion reaped). */
  dmaBatches: number;
  /** NVMe commands issued through the bounce buffer. */
  bounceCommands: number;
  flushes: number;
  bytesRead: number;
  bytesWritten: number;
}

interface Pending {
  readonly cid: number;
  readonly write: boolean;
  readonly lba: number;
  readonly blocks: number;
}

/** See the file comment. */
export class NvmeBlockDevice implements DmaBlockDevice {
  readonly sectors: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  readonly dmaDevice: string;
  readonly stats: NvmeBlockStats = {
    dmaCommands: 0,
    dmaBatches: 0,
    bounceCommands: 0,
    flushes: 0,
    bytesRead: 0,
    bytesWritten: 0,
  };
  private readonly _drv: NvmeDriver;
  private readonly _mem: GuestMemory;
  private readonly _qid: number;
  private readonly _depth: number;
  private readonly _pending: Pending[] = [];
  /** First failure of the current batch, thrown by `finishDma`. */
  private _error: unknown;
  private readonly _bounce: GuestPhysAddr;
  private readonly _bouncePages: number;
  private _closed = false;

  constructor(driver: NvmeDriver, mem: GuestMemory, opts: NvmeBlockDeviceOptions = {}) {
    const id = driver.identity;
    this._drv = driver;
    this._mem = mem;
    this.dmaDevice = driver.name;
    this.sectorSize = id.lbaBytes;
    this.sectors = id.capacityBlocks;
    this.readOnly = opts.readOnly === true;
    this._qid = opts.qid ?? 1;
    if (!Number.isInteger(this._qid) || this._qid < 1 || this._qid > id.ioQueues) {
      throw pvError('PV_ERR_CONFIG', `${driver.name}: qid must be an I/O queue in 1 … ${id.ioQueues}`);
    }
    // One entry of the SQ stays empty (full = tail + 1 == head).
    this._depth = id.queueEntries - 1;
    const bounce = Math.min(opts.bounceBytes ?? 128 << 10, id.maxTransferBytes);
    if (!Number.isInteger(bounce) || bounce < PAGE_SIZE || bounce % PAGE_SIZE !== 0) {
      throw pvError('PV_ERR_CONFIG', `bounceBytes must be a positive multiple of ${PAGE_SIZE}, got ${bounce}`);
    }
    this._bouncePages = bounce / PAGE_SIZE;
    this._bounce = mem.allocPages(this._bouncePages);
  }

  read(sector: number, count: number, into: Uint8Array): void {
    checkDeviceRange(this, sector, count, into.byteLength);
    this._bounced(false, sector, count, into);
    this.stats.bytesRead += into.byteLength;
  }

  write(sector: number, count: number, from: Uint8Array): void {
    if (this.readOnly) throw pvError('PV_ERR_BAD_REQUEST', `${this.dmaDevice} is served read-only`);
    checkDeviceRange(this, sector, count, from.byteLength);
    this._bounced(true, sector, count, from);
    this.stats.bytesWritten += from.byteLength;
  }

  flush(): void {
    this._open();
    this._drv.flush(this._qid);
    this.stats.flushes++;
  }

  queueDma(write: boolean, sector: number, count: number, dma: Iova): void {
    this._open();
    if (write && this.readOnly) throw pvError('PV_ERR_BAD_REQUEST', `${this.dmaDevice} is served read-only`);
    checkDeviceRange(this, sector, count, count * this.sectorSize);
    // A full queue: drain what is in flight first (its errors are kept for finishDma).
    if (this._pending.length >= this._depth) this._drain();
    const cid = this._drv.submitIo(write ? 'write' : 'read', sector, count, dma, this._qid);
    this._pending.push({ cid, write, lba: sector, blocks: count });
    this.stats.dmaCommands++;
    if (write) this.stats.bytesWritten += count * this.sectorSize;
    else this.stats.bytesRead += count * this.sectorSize;
  }

  finishDma(): void {
    this._drain();
    const err = this._error;
    this._error = undefined;
    if (err !== undefined) throw err;
  }

  /** Frees the bounce buffer (the driver is its owner's to close). Idempotent. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this._mem.freePages(this._bounce, this._bouncePages);
  }

  /** Rings the doorbell once and reaps every queued command; keeps the first failure. */
  private _drain(): void {
    if (this._pending.length === 0) return;
    this._drv.ring(this._qid);
    for (const p of this._pending) {
      try {
        const c: NvmeCompletion = this._drv.wait(this._qid, p.cid);
        this._drv.check(c, p.write ? 'WRITE' : 'READ', p.lba, p.blocks);
      } catch (err) {
        this._error ??= err;
      }
    }
    this._pending.length = 0;
    this.stats.dmaBatches++;
  }

  /** The copy path: chunks through the bounce pages, one synchronous command each. */
  private _bounced(write: boolean, sector: number, count: number, buf: Uint8Array): void {
    this._open();
    const perChunk = (this._bouncePages * PAGE_SIZE) / this.sectorSize;
    const view = this._mem.view(this._bounce, this._bouncePages * PAGE_SIZE);
    for (let done = 0; done < count; ) {
      const n = Math.min(perChunk, count - done);
      const bytes = n * this.sectorSize;
      const at = done * this.sectorSize;
      if (write) {
        view.set(buf.subarray(at, at + bytes));
        this._drv.write(sector + done, n, this._bounce, this._qid);
      } else {
        this._drv.read(sector + done, n, this._bounce, this._qid);
        buf.set(view.subarray(0, bytes), at);
      }
      this.stats.bounceCommands++;
      done += n;
    }
  }

  private _open(): void {
    if (this._closed) throw pvError('PV_ERR_BAD_REQUEST', `${this.dmaDevice}: the block device is closed`);
  }
}
