/**
 * One device's IOMMU context (VT-d / VFIO; DESIGN §1 "IOMMU"): the translation every DMA of
 * that device goes through, in a SharedArrayBuffer (layout and IOVA map in IommuLayout.ts) so
 * the owner's thread, the dedicated device thread and the host all see the same entries.
 *
 * A context has an owner domain and a mode, programmed by the host when it assigns the device:
 *  - `translate`: the owner's memory is mapped 1:1 (IOVA = guest-physical address, bounded by
 *    its size), and grant device maps add foreign extents `{iova, pages, domid, gfn, writable}`
 *    in a window above it (Xen `GNTMAP_device_map` → `dev_bus_addr`);
 *  - `bypass`: the IOMMU is off (native): DMA addresses are the owner's physical addresses,
 *    bounded to its memory, with no window and no foreign extents.
 *
 * Who writes: the host (`assign`, `clear` when the owner dies, `revokeDomain` when a granter
 * dies) and the owner's thread (`mapForeign`/`unmapForeign` from its grant hypercalls). Writers
 * serialise on the seqlock in IommuTable.ts. Readers (`resolve`) never block a writer: they
 * retry while one is mid-update (bounded), then fault.
 */

import { pvError } from '../../protocol/errors.js';
import type { DomId, Gfn, Iova } from '../../protocol/Types.js';
import { PAGE_SIZE } from '../../protocol/Types.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { DmaRef, DmaResolver } from './DmaResolver.js';
import { DmaViewCache } from './DmaViewCache.js';
import {
  createIommuBuffer,
  DEFAULT_MAX_EXTENTS,
  DEFAULT_WINDOW_PAGES,
  ExtentFlag,
  ExtentState,
  ExtentWord,
  extentBase,
  IOMMU_MAGIC,
  IommuModeCode,
  IommuWord,
  OWNER_GUARD_PAGES,
  pageTableBase,
} from './IommuLayout.js';
import {
  beginWrite,
  bumpGeneration,
  clearTable,
  endWrite,
  type ForeignExtent,
  insertExtent,
  removeExtent,
  revokeExtents,
  snapshotExtents,
} from './IommuTable.js';

export type { ForeignExtent } from './IommuTable.js';

/** How the owner's own memory is reached (see the file comment). */
export type IommuMode = 'translate' | 'bypass';

/** Sizes of a new context. */
export interface IommuOptions {
  /** Device the context belongs to (`nic0`); names it in errors. */
  readonly device: string;
  /** Pages of IOVA window for foreign extents. Default 65536 (256 MiB). */
  readonly windowPages?: number;
  /** Extent slots (live grant device maps). Default 8192. */
  readonly maxExtents?: number;
}

/** What a thread needs to attach to a context (structured-cloneable: post it to a worker). */
export interface IommuDescriptor {
  /** Device the context belongs to. */
  readonly device: string;
  /** The context (IommuLayout.ts). */
  readonly buffer: SharedArrayBuffer;
}

/** Polls of SEQ a reader makes while a writer is mid-update before it starts sleeping. */
const READER_SPINS = 1000;
/** 1 ms sleeps a reader then allows (a writer descheduled mid-update) before it faults. */
const READER_SLEEPS = 100;

/** A device's IOMMU context, attached in one thread (see the file comment). */
export class IommuContext implements DmaResolver {
  /** Device the context translates for. */
  readonly device: string;
  /** The shared state; post `descriptor` to attach another thread. */
  readonly descriptor: IommuDescriptor;
  private readonly _w: Int32Array;
  private readonly _views: DmaViewCache;
  private readonly _pt: number;
  private readonly _maxExtents: number;
  private readonly _windowPages: number;

  /** Allocates and initialises a context with no owner (every DMA faults until `assign`). */
  static create(opts: IommuOptions): IommuDescriptor {
    const buffer = createIommuBuffer(
      opts.device,
      opts.maxExtents ?? DEFAULT_MAX_EXTENTS,
      opts.windowPages ?? DEFAULT_WINDOW_PAGES,
    );
    return { device: opts.device, buffer };
  }

  /** Attaches to a context; `memories` is this thread's directory (what `resolve` reaches). */
  static attach(desc: IommuDescriptor, memories: MemoryDirectory): IommuContext {
    return new IommuContext(desc, memories);
  }

  private constructor(desc: IommuDescriptor, memories: MemoryDirectory) {
    const w = new Int32Array(desc.buffer);
    // ORDERING: seq-cst load pairs with create()'s store of the magic.
    if (w.length < IommuWord.HEADER || Atomics.load(w, IommuWord.MAGIC) !== IOMMU_MAGIC) {
      throw pvError('PV_ERR_CONFIG', `buffer of ${desc.device} is not an IOMMU context`);
    }
    this.device = desc.device;
    this.descriptor = desc;
    this._w = w;
    this._views = new DmaViewCache(memories);
    this._maxExtents = w[IommuWord.MAX_EXTENTS];
    this._windowPages = w[IommuWord.WINDOW_PAGES];
    this._pt = pageTableBase(this._maxExtents);
  }

  /**
   * Resolves `[iova, iova + len)` (see DmaResolver). Arguments are hostile (they come from
   * queues and WQEs a guest wrote): anything that is not a safe non-negative integer, a range
   * that leaves the owner's memory or one extent, or a write to a read-only extent returns false
   * and counts a fault. A zero-length range resolves iff its first byte would.
   */
  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(len) || iova < 0 || len < 0) return this._fault();
    const w = this._w;
    const span = len === 0 ? 1 : len;
    // Bounded: every retry (a writer mid-update, or one that ran while we read) is an attempt;
    // past the spins each attempt on an odd SEQ sleeps ≤ 1 ms; then the DMA faults.
    for (let attempt = 0; attempt < READER_SPINS + READER_SLEEPS; attempt++) {
      // ORDERING: first seqlock load; pairs with endWrite's store (file comment of IommuTable).
      const seq = Atomics.load(w, IommuWord.SEQ);
      if ((seq & 1) !== 0) {
        // ORDERING: sleeps only while the writer still holds SEQ at `seq`; endWrite notifies.
        if (attempt >= READER_SPINS) Atomics.wait(w, IommuWord.SEQ, seq, 1);
        continue;
      }
      let domid = -1;
      let offset = 0;
      // ORDERING: seq-cst loads of the fields, ordered between the two loads of SEQ.
      const mode = Atomics.load(w, IommuWord.MODE);
      if (mode !== IommuModeCode.NONE) {
        const ownerBytes = Atomics.load(w, IommuWord.OWNER_PAGES) * PAGE_SIZE;
        if (iova < ownerBytes) {
          if (span <= ownerBytes - iova) {
            domid = Atomics.load(w, IommuWord.OWNER);
            offset = iova;
          }
        } else if (mode === IommuModeCode.TRANSLATE) {
          offset = this._lookupWindow(iova, span, write);
          if (offset >= 0) domid = this._lastDomid;
        }
      }
      // ORDERING: second seqlock load; any change means a writer ran: retry with fresh fields.
      if (Atomics.load(w, IommuWord.SEQ) !== seq) continue;
      if (domid < 0) return this._fault();
      // INVARIANT: [offset, offset + span) was checked against the owner's size or one extent;
      // fill re-checks it against the memory the directory holds now (a reused domid may differ).
      if (!this._views.fill(domid, offset, span, out)) return this._fault();
      return true;
    }
    return this._fault();
  }

  /** Bumped on every unmap, revocation, release and assignment (DmaResolver). */
  generation(): number {
    // ORDERING: seq-cst load; read it BEFORE resolving anything you intend to cache.
    return Atomics.load(this._w, IommuWord.GENERATION);
  }

  /** The owner domain, or undefined while the device is unassigned. */
  owner(): DomId | undefined {
    // ORDERING: seq-cst load of a host-written field; a snapshot.
    const o = Atomics.load(this._w, IommuWord.OWNER);
    return o < 0 ? undefined : (o as DomId);
  }

  /** The mode, or undefined while unassigned. */
  mode(): IommuMode | undefined {
    // ORDERING: seq-cst load; a snapshot.
    const m = Atomics.load(this._w, IommuWord.MODE);
    return m === IommuModeCode.TRANSLATE ? 'translate' : m === IommuModeCode.BYPASS ? 'bypass' : undefined;
  }

  /** DMAs refused so far (all threads). */
  faults(): number {
    // ORDERING: seq-cst load of a counter; a snapshot.
    return Atomics.load(this._w, IommuWord.FAULTS);
  }

  /** Foreign extents in the table (valid or revoked). */
  liveExtents(): number {
    // ORDERING: seq-cst load; a snapshot.
    return Atomics.load(this._w, IommuWord.LIVE_EXTENTS);
  }

  /**
   * Host: gives the device to `owner`, whose memory is `ownerBytes` long, and programs the
   * owner's map. `PV_ERR_CONFIG` if the device already has an owner.
   */
  assign(owner: DomId, ownerBytes: number, mode: IommuMode): void {
    const pages = Math.ceil(ownerBytes / PAGE_SIZE);
    if (!Number.isSafeInteger(pages) || pages <= 0 || pages + OWNER_GUARD_PAGES + this._windowPages > 0x7fffffff) {
      throw pvError('PV_ERR_CONFIG', `IOMMU of ${this.device}: owner memory of ${ownerBytes} bytes does not fit`);
    }
    const w = this._w;
    const odd = beginWrite(w);
    try {
      if (w[IommuWord.MODE] !== IommuModeCode.NONE) {
        throw pvError('PV_ERR_CONFIG', `${this.device} is already assigned to domain ${w[IommuWord.OWNER]}`);
      }
      // ORDERING: seq-cst stores inside the critical section.
      Atomics.store(w, IommuWord.OWNER, owner);
      Atomics.store(w, IommuWord.OWNER_PAGES, pages);
      Atomics.store(w, IommuWord.WINDOW_BASE, pages + OWNER_GUARD_PAGES);
      Atomics.store(w, IommuWord.MODE, mode === 'bypass' ? IommuModeCode.BYPASS : IommuModeCode.TRANSLATE);
      bumpGeneration(w);
    } finally {
      endWrite(w, odd);
    }
  }

  /**
   * Host, once the owner's thread is gone: drops every extent and the owner, bumps the
   * generation. Takes the table over from a writer that died inside its critical section.
   */
  clear(): void {
    const odd = beginWrite(this._w, true);
    try {
      clearTable(this._w);
    } finally {
      endWrite(this._w, odd);
    }
  }

  /** Host, when `domid` dies: its extents stop resolving (see revokeExtents). Returns how many. */
  revokeDomain(domid: DomId): number {
    const odd = beginWrite(this._w);
    try {
      return revokeExtents(this._w, domid);
    } finally {
      endWrite(this._w, odd);
    }
  }

  /**
   * Owner: maps `pages` frames of `domid` starting at `gfn` for DMA and returns their IOVA.
   * The caller (the grant hypercall) has checked and pinned the frames. Throws
   * `PV_ERR_NOT_SUPPORTED` in bypass mode or without an owner, `PV_ERR_LIMIT` when the slots
   * or the window are exhausted.
   */
  mapForeign(domid: DomId, gfn: Gfn, pages: number, writable: boolean): Iova {
    if (!Number.isInteger(pages) || pages <= 0 || pages >= this._windowPages) {
      throw pvError('PV_ERR_INVALID_ARG', `IOMMU of ${this.device}: cannot map ${pages} pages`);
    }
    const w = this._w;
    const odd = beginWrite(w);
    let page: number;
    try {
      if (w[IommuWord.MODE] !== IommuModeCode.TRANSLATE) {
        throw pvError('PV_ERR_NOT_SUPPORTED', `${this.device} has no IOMMU translation (unassigned or bypass)`);
      }
      page = insertExtent(w, domid, gfn, pages, writable ? ExtentFlag.WRITABLE : 0);
    } finally {
      endWrite(w, odd);
    }
    if (page === -1) throw pvError('PV_ERR_LIMIT', `IOMMU of ${this.device}: all ${this._maxExtents} extents in use`);
    if (page === -2) throw pvError('PV_ERR_LIMIT', `IOMMU of ${this.device}: no ${pages}-page hole in the window`);
    return (page * PAGE_SIZE) as Iova;
  }

  /** Owner: removes the extent mapped at `iova` (valid or revoked). False if none starts there. */
  unmapForeign(iova: Iova): boolean {
    if (!Number.isSafeInteger(iova) || iova < 0 || iova % PAGE_SIZE !== 0) return false;
    const odd = beginWrite(this._w);
    try {
      return removeExtent(this._w, iova / PAGE_SIZE);
    } finally {
      endWrite(this._w, odd);
    }
  }

  /** Snapshot of the foreign extents (not for the data path). */
  extents(): ForeignExtent[] {
    return snapshotExtents(this._w, this._maxExtents);
  }

  /** Domain of the extent found by the last successful `_lookupWindow` (avoids an object). */
  private _lastDomid = -1;

  /**
   * Looks `[iova, iova + span)` up in the foreign window (inside a seqlock read): returns the
   * byte offset in the target memory and sets `_lastDomid`, or -1.
   */
  private _lookupWindow(iova: number, span: number, write: boolean): number {
    const w = this._w;
    const page = Math.floor(iova / PAGE_SIZE);
    // ORDERING: seq-cst loads inside the reader's seqlock section.
    const idx = page - Atomics.load(w, IommuWord.WINDOW_BASE);
    if (idx < 0 || idx >= this._windowPages) return -1;
    const pte = Atomics.load(w, this._pt + idx);
    if (pte <= 0 || pte > this._maxExtents) return -1;
    const e = extentBase(pte - 1);
    if (Atomics.load(w, e + ExtentWord.STATE) !== ExtentState.VALID) return -1;
    const start = Atomics.load(w, e + ExtentWord.IOVA_PAGE) * PAGE_SIZE;
    const end = start + Atomics.load(w, e + ExtentWord.PAGES) * PAGE_SIZE;
    if (iova < start || span > end - iova) return -1;
    if (write && (Atomics.load(w, e + ExtentWord.FLAGS) & ExtentFlag.WRITABLE) === 0) return -1;
    this._lastDomid = Atomics.load(w, e + ExtentWord.DOMID);
    return Atomics.load(w, e + ExtentWord.GFN) * PAGE_SIZE + (iova - start);
  }

  private _fault(): false {
    // ORDERING: seq-cst add; a shared counter read by diagnostics only.
    Atomics.add(this._w, IommuWord.FAULTS, 1);
    return false;
  }
}
