/**
 * A BlockDevice backed by a real file, as Xen's qdisk and loop backends serve a disk image:
 * positional `fs.readSync` / `fs.writeSync` at `sector × sectorSize`, `fsync` on flush. With no
 * path it creates a sparse temporary file of the requested size (ftruncate: no blocks are
 * allocated until written) and deletes it on close.
 *
 * Reads past the file's end (a sparse image whose tail was never written, or a file someone
 * shortened) return zeros, as a hole does. A short write or an fs error is PV_ERR_BLK_IO.
 */

import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BlockDevice, checkDeviceRange } from '../../protocol/blkif/BlockDevice.js';
import { pvError } from '../../protocol/errors.js';

/** Options of a file-backed device. */
export interface FileBlockDeviceOptions {
  /** Image path; created if missing. Default: a sparse file in a fresh temp directory. */
  readonly path?: string;
  /** Size in bytes when the file is created or shorter (a multiple of `sectorSize`). Default: the file's size. */
  readonly sizeBytes?: number;
  /** Logical block size (power of two ≥ 512, default 512). */
  readonly sectorSize?: number;
  readonly readOnly?: boolean;
}

export class FileBlockDevice implements BlockDevice {
  readonly sectors: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  /** The image file. */
  readonly path: string;
  /** Counters: calls and bytes moved, flushes. */
  readonly stats = { reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0 };
  private _fd: number;
  private readonly _tempDir: string | undefined;

  constructor(opts: FileBlockDeviceOptions = {}) {
    const ss = opts.sectorSize ?? 512;
    if (!Number.isInteger(ss) || ss < 512 || (ss & (ss - 1)) !== 0) {
      throw pvError('PV_ERR_CONFIG', `sector size must be a power of two ≥ 512, got ${ss}`);
    }
    this.sectorSize = ss;
    this.readOnly = opts.readOnly === true;
    this._tempDir = opts.path === undefined ? mkdtempSync(join(tmpdir(), 'pvio-vbd-')) : undefined;
    this.path = opts.path ?? join(this._tempDir as string, 'disk.img');
    this._fd = openSync(this.path, this.readOnly ? 'r' : opts.path === undefined ? 'w+' : openFlags(this.path));
    try {
      const have = fstatSync(this._fd).size;
      const want = opts.sizeBytes ?? have;
      if (!Number.isSafeInteger(want) || want <= 0 || want % ss !== 0) {
        throw pvError('PV_ERR_CONFIG', `device size must be a positive multiple of ${ss} bytes, got ${want}`);
      }
      // Sparse: extending with ftruncate allocates nothing until a sector is written.
      if (have < want && !this.readOnly) ftruncateSync(this._fd, want);
      this.sectors = want / ss;
    } catch (err) {
      this.close();
      throw err;
    }
  }

  read(sector: number, count: number, into: Uint8Array): void {
    checkDeviceRange(this, sector, count, into.byteLength);
    const len = into.byteLength;
    let done = 0;
    try {
      while (done < len) {
        const n = readSync(this._fd, into, done, len - done, sector * this.sectorSize + done);
        if (n === 0) break; // end of file: the rest is a hole
        done += n;
      }
    } catch (err) {
      throw pvError('PV_ERR_BLK_IO', `read of ${this.path} failed: ${(err as Error).message}`);
    }
    if (done < len) into.fill(0, done);
    this.stats.reads++;
    this.stats.bytesRead += len;
  }

  write(sector: number, count: number, from: Uint8Array): void {
    if (this.readOnly) throw pvError('PV_ERR_BAD_REQUEST', `${this.path} is read-only`);
    checkDeviceRange(this, sector, count, from.byteLength);
    const len = from.byteLength;
    let done = 0;
    try {
      while (done < len) {
        const n = writeSync(this._fd, from, done, len - done, sector * this.sectorSize + done);
        if (n <= 0) throw new Error('short write');
        done += n;
      }
    } catch (err) {
      throw pvError('PV_ERR_BLK_IO', `write of ${this.path} failed: ${(err as Error).message}`);
    }
    this.stats.writes++;
    this.stats.bytesWritten += len;
  }

  flush(): void {
    try {
      if (!this.readOnly) fsyncSync(this._fd);
    } catch (err) {
      throw pvError('PV_ERR_BLK_IO', `fsync of ${this.path} failed: ${(err as Error).message}`);
    }
    this.stats.flushes++;
  }

  /** Closes the file; a temporary image is deleted. Idempotent. */
  close(): void {
    if (this._fd >= 0) {
      closeSync(this._fd);
      this._fd = -1;
    }
    if (this._tempDir !== undefined) rmSync(this._tempDir, { recursive: true, force: true });
  }
}

/** 'r+' for an existing image (keep its data), 'w+' would truncate it; create it if missing. */
function openFlags(path: string): string {
  try {
    closeSync(openSync(path, 'r'));
    return 'r+';
  } catch {
    return 'w+';
  }
}
