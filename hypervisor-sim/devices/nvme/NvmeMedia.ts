/**
 * The flash of pvio's NVMe SSD: a REAL file. WRITE is a positional `fs.writeSync` of the DMA'd
 * bytes, READ a positional `fs.readSync` straight into the owner's memory, FLUSH `fs.fsyncSync`.
 *
 * Default: a sparse file of the requested size in a fresh temporary directory
 * (`os.tmpdir()/pvio-nvme-XXXXXX/<name>.img`, made with `ftruncate`, so it costs no disk until
 * written), removed again by `closeMedia`. With `backingFile` the given path is used: created if
 * missing, extended (never shortened) to the requested size, and kept on close.
 *
 * The descriptor is opened once, by whoever creates the device (the host), and shared by every
 * thread that runs the controller: worker threads share the process's descriptor table, so a
 * domain's inline engine writes through the same descriptor as the host. It stays open until
 * `closeMedia` (Host.shutdown), after every thread that could use it has stopped.
 *
 * `fs` is used through its default export (`fs.writeSync`, …) on purpose: tests spy on
 * `fs.fsyncSync` to see FLUSH reach the disk.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pvError } from '../../../protocol/errors.js';

/** The media of one controller (structured-cloneable: it travels inside NvmeState). */
export interface NvmeMediaInfo {
  /** Path of the backing file. */
  readonly path: string;
  /** Open descriptor (read-write), valid in every thread of this process. */
  readonly fd: number;
  /** Bytes of media the controller exposes (≤ the file's size). */
  readonly sizeBytes: number;
  /** The temporary directory made for a default file (removed on close), if any. */
  readonly tempDir?: string;
}

/** Opens (or creates) the media; PV_ERR_CONFIG when the file cannot be opened or sized. */
export function openMedia(name: string, sizeBytes: number, backingFile?: string): NvmeMediaInfo {
  let tempDir: string | undefined;
  let file = backingFile;
  try {
    if (file === undefined) {
      tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvio-nvme-'));
      file = path.join(tempDir, `${name}.img`);
    }
    // 'a+' would force appends; open 'r+' when the file exists so existing data is kept.
    const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w+');
    try {
      if (fs.fstatSync(fd).size < sizeBytes) fs.ftruncateSync(fd, sizeBytes);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return tempDir === undefined ? { path: file, fd, sizeBytes } : { path: file, fd, sizeBytes, tempDir };
  } catch (err) {
    if (tempDir !== undefined) fs.rmSync(tempDir, { recursive: true, force: true });
    throw pvError('PV_ERR_CONFIG', `${name}: cannot open backing file ${String(file)}: ${(err as Error).message}`);
  }
}

/** Closes the descriptor and removes a temporary file. Idempotent per descriptor owner. */
export function closeMedia(media: NvmeMediaInfo): void {
  try {
    fs.closeSync(media.fd);
  } catch {
    // Already closed (a second shutdown): nothing left to release.
  }
  if (media.tempDir !== undefined) fs.rmSync(media.tempDir, { recursive: true, force: true });
}

/**
 * Writes `len` bytes of `src` from `from` at media byte `pos`. Returns false on an I/O error
 * (the command then completes with Write Fault); never throws.
 */
export function mediaWrite(media: NvmeMediaInfo, src: Uint8Array, from: number, len: number, pos: number): boolean {
  try {
    let done = 0;
    while (done < len) done += fs.writeSync(media.fd, src, from + done, len - done, pos + done);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads `len` bytes at media byte `pos` into `dst` at `to`. A read past the end of a file that
 * shrank under us yields zeros (the media was never written there). False on an I/O error.
 */
export function mediaRead(media: NvmeMediaInfo, dst: Uint8Array, to: number, len: number, pos: number): boolean {
  try {
    let done = 0;
    while (done < len) {
      const n = fs.readSync(media.fd, dst, to + done, len - done, pos + done);
      if (n === 0) {
        dst.fill(0, to + done, to + len);
        break;
      }
      done += n;
    }
    return true;
  } catch {
    return false;
  }
}

/** fsync: everything written so far reaches stable storage. False on an I/O error. */
export function mediaFlush(media: NvmeMediaInfo): boolean {
  try {
    fs.fsyncSync(media.fd);
    return true;
  } catch {
    return false;
  }
}
