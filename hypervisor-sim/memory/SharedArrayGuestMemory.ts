/**
 * A domain's guest-physical memory: one SharedArrayBuffer of 4 KiB pages (DESIGN §1 "domain").
 *
 * The buffer is shared: the host creates it, the domain's worker attaches to it, and every
 * other domain worker on the host attaches to it too (through `MemoryDirectory`) so the
 * hypervisor code running on a grantee's behalf can reach a granter's pages for grant map and
 * copy. The bytes are therefore reachable from every thread; what is *not* shared is the page
 * allocator below, which lives in the instance (see `allocPages`).
 *
 * Every address and length handed to `checkRange`/`view`/`read`/`write` is treated as
 * untrusted (it may come straight from a ring slot): non-integers, NaN, negatives and ranges
 * whose end lies beyond the memory are refused without ever computing `addr + len` (which
 * loses precision above 2^53; the test is `len <= size - addr`).
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import { type DomId, type GuestPhysAddr, PAGE_SHIFT, PAGE_SIZE } from '../../protocol/Types.js';

/** Copies at most this long are done with a loop: `subarray()` costs ≈ 60 ns, a byte ≈ 2 ns. */
const SMALL_COPY = 16;
/** Int32 words per page, for zeroing through an Int32Array (≈ 8× faster than Uint8Array.fill on a SAB). */
const WORDS_PER_PAGE = PAGE_SIZE / 4;

/** Page state in the allocator bitmap. */
const enum PageState {
  FREE = 0,
  ALLOCATED = 1,
}

/** Guest memory over a SharedArrayBuffer, with a first-fit page allocator (see the file comment). */
export class SharedArrayGuestMemory implements GuestMemory {
  /** Owning domain. */
  readonly domid: DomId;
  /** The shared backing store (post it to another thread and attach with the constructor). */
  readonly buffer: SharedArrayBuffer;
  /** Size in bytes, a whole number of pages. */
  readonly size: number;
  /** The whole memory as bytes (zero-copy; index = guest-physical address). */
  readonly bytes: Uint8Array;
  /** The whole memory as Int32 words, used to zero pages quickly. */
  private readonly _words: Int32Array;
  /** One byte per page: `PageState`. Thread-local, never shared. */
  private readonly _pageState: Uint8Array;
  private _freePages: number;
  /** No free page lies below this index (first-fit starts its search here). */
  private _firstMaybeFree = 0;

  /**
   * Allocates a new memory of `bytes` rounded up to whole pages, all zero.
   * Refuses 0, negative and non-integer sizes (`PV_ERR_INVALID_ARG`) and sizes the engine
   * cannot allocate (`PV_ERR_NO_MEMORY`).
   */
  static create(domid: DomId, bytes: number): SharedArrayGuestMemory {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `guest memory size must be a positive integer, got ${bytes}`);
    }
    const pages = Math.ceil(bytes / PAGE_SIZE);
    let buffer: SharedArrayBuffer;
    try {
      buffer = new SharedArrayBuffer(pages * PAGE_SIZE);
    } catch (err) {
      throw pvError('PV_ERR_NO_MEMORY', `cannot allocate ${pages} pages of guest memory: ${(err as Error).message}`);
    }
    return new SharedArrayGuestMemory(domid, buffer);
  }

  /**
   * Attaches to an existing memory (the same bytes as in the thread that created it).
   * The allocator of the new instance starts with every page free: allocator state is
   * thread-local, so only the owning domain's instance may allocate (see `allocPages`).
   */
  constructor(domid: DomId, buffer: SharedArrayBuffer) {
    if (buffer.byteLength === 0 || buffer.byteLength % PAGE_SIZE !== 0) {
      throw pvError(
        'PV_ERR_INVALID_ARG',
        `guest memory must be a non-zero whole number of pages, got ${buffer.byteLength} bytes`,
      );
    }
    this.domid = domid;
    this.buffer = buffer;
    this.size = buffer.byteLength;
    this.bytes = new Uint8Array(buffer);
    this._words = new Int32Array(buffer);
    this._pageState = new Uint8Array(this.size >>> PAGE_SHIFT);
    this._freePages = this._pageState.length;
  }

  /** Number of pages in the memory. */
  get pageCount(): number {
    return this._pageState.length;
  }

  /**
   * Throws `PV_ERR_OUT_OF_BOUNDS` unless `[addr, addr + len)` lies inside memory.
   * Overflow-safe: never computes `addr + len` before both are known to be in range.
   */
  checkRange(addr: GuestPhysAddr, len: number): void {
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `bad guest range: address ${addr}, length ${len} (not integers ≥ 0)`);
    }
    // Both are safe integers ≥ 0 here, so `size - addr` is exact and may go negative.
    if (addr > this.size || len > this.size - addr) {
      throw pvError(
        'PV_ERR_OUT_OF_BOUNDS',
        `guest range [${addr}, +${len}) outside the ${this.size}-byte memory of domain ${this.domid}`,
      );
    }
  }

  /** A bounds-checked zero-copy view of `[addr, addr + len)`. Do not keep it across a free. */
  view(addr: GuestPhysAddr, len: number): Uint8Array {
    this.checkRange(addr, len);
    // INVARIANT: checkRange proved addr + len ≤ size, so the sum is exact.
    return this.bytes.subarray(addr, addr + len);
  }

  /** Copies `dst.length` bytes from `addr` into `dst`. */
  read(addr: GuestPhysAddr, dst: Uint8Array): void {
    const len = dst.length;
    this.checkRange(addr, len);
    const bytes = this.bytes;
    if (len <= SMALL_COPY) {
      for (let i = 0; i < len; i++) dst[i] = bytes[addr + i];
      return;
    }
    // INVARIANT: checkRange proved addr + len ≤ size.
    dst.set(bytes.subarray(addr, addr + len));
  }

  /** Copies `src` to `addr`. `set()` copies overlapping ranges of the same buffer correctly. */
  write(addr: GuestPhysAddr, src: Uint8Array): void {
    this.checkRange(addr, src.length);
    this.bytes.set(src, addr);
  }

  /**
   * Allocates `count` contiguous zeroed pages (first fit); throws `PV_ERR_NO_MEMORY` when no
   * run of that length is free, `PV_ERR_INVALID_ARG` for a count that is not a positive integer.
   *
   * Thread-local: the bitmap lives in this instance, not in the shared buffer, so two instances
   * attached to the same buffer would hand out the same pages. Only the owning domain's own
   * instance allocates; the hypervisor side (MemoryDirectory) only reads and writes.
   */
  allocPages(count: number): GuestPhysAddr {
    if (!Number.isSafeInteger(count) || count <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `page count must be a positive integer, got ${count}`);
    }
    if (count > this._freePages) {
      throw pvError('PV_ERR_NO_MEMORY', `domain ${this.domid}: ${count} pages wanted, ${this._freePages} free`);
    }
    const state = this._pageState;
    const pages = state.length;
    let runStart = -1;
    let firstFree = -1;
    for (let p = this._firstMaybeFree; p < pages; p++) {
      if (state[p] !== PageState.FREE) {
        runStart = -1;
        continue;
      }
      if (runStart < 0) runStart = p;
      if (firstFree < 0) firstFree = p;
      if (p - runStart + 1 === count) {
        state.fill(PageState.ALLOCATED, runStart, p + 1);
        this._freePages -= count;
        // The first free page seen stays the lowest free one unless this run began with it.
        this._firstMaybeFree = firstFree === runStart ? p + 1 : firstFree;
        this._words.fill(0, runStart * WORDS_PER_PAGE, (p + 1) * WORDS_PER_PAGE);
        return (runStart * PAGE_SIZE) as GuestPhysAddr;
      }
    }
    if (firstFree >= 0) this._firstMaybeFree = firstFree;
    throw pvError('PV_ERR_NO_MEMORY', `domain ${this.domid}: no run of ${count} contiguous free pages`);
  }

  /**
   * Returns pages to the allocator. All-or-nothing: refuses (`PV_ERR_INVALID_ARG`) if any page
   * of the range is free (double free or never allocated), before freeing any of them.
   * Pages may be freed in parts of the run they were allocated in.
   */
  freePages(addr: GuestPhysAddr, count: number): void {
    if (!Number.isSafeInteger(count) || count <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `page count must be a positive integer, got ${count}`);
    }
    if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) {
      throw pvError('PV_ERR_BAD_ALIGNMENT', `freed address ${addr} is not page aligned`);
    }
    this.checkRange(addr, count * PAGE_SIZE);
    const first = addr / PAGE_SIZE;
    const state = this._pageState;
    for (let p = first; p < first + count; p++) {
      if (state[p] !== PageState.ALLOCATED) {
        throw pvError('PV_ERR_INVALID_ARG', `domain ${this.domid}: page ${p} is not allocated (double free?)`);
      }
    }
    state.fill(PageState.FREE, first, first + count);
    this._freePages += count;
    if (first < this._firstMaybeFree) this._firstMaybeFree = first;
  }

  /** Pages still free in this instance's allocator. */
  freePageCount(): number {
    return this._freePages;
  }
}
