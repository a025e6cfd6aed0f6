/**
 * The writer side of an IOMMU context (layout in IommuLayout.ts): the seqlock that serialises
 * writers and lets readers detect a concurrent update, and the table edits made under it —
 * insert and remove a foreign extent, revoke a dead domain's extents, clear everything — plus a
 * diagnostic snapshot of the extents.
 *
 * Writers are rare (a grant device map, an unmap, the host assigning or releasing the device);
 * readers (every DMA the device engine makes) never take the lock: they read SEQ, the fields,
 * and SEQ again, and retry if it moved or was odd. Inside the critical section the fields are
 * written with `Atomics.store`, so a reader's seq-cst loads of them are ordered between its two
 * loads of SEQ, which is what makes the retry test sound in the JS memory model.
 */

import { pvError } from '../../protocol/errors.js';
import { type DomId, type Gfn, type Iova, PAGE_SIZE } from '../../protocol/Types.js';
import {
  ExtentFlag,
  ExtentState,
  ExtentWord,
  extentBase,
  IommuModeCode,
  IommuWord,
  PTE_GUARD,
  pageTableBase,
} from './IommuLayout.js';

/** A snapshot of one foreign extent (diagnostics and tests). */
export interface ForeignExtent {
  readonly iova: Iova;
  readonly pages: number;
  readonly domid: DomId;
  readonly gfn: Gfn;
  readonly writable: boolean;
  readonly revoked: boolean;
}

/** Polls of SEQ before a writer starts sleeping on it. */
const WRITER_SPINS = 1000;
/** 1 ms sleeps before a waiting writer gives up (or, when forcing, takes over from a dead one). */
const WRITER_SLEEPS = 1000;

/**
 * Takes the writer lock: turns SEQ from even to odd with a CAS and returns the odd value to pass
 * to `endWrite`. A holder that never releases can only be a thread that was terminated inside
 * its critical section; with `force` (used by the host once the owner's thread is gone) the
 * caller takes over after the bounded wait, otherwise it throws `PV_ERR_TIMEOUT`.
 */
export function beginWrite(w: Int32Array, force = false): number {
  for (let i = 0; ; i++) {
    // ORDERING: seq-cst load; pairs with endWrite's store of the next even value.
    const s = Atomics.load(w, IommuWord.SEQ);
    if ((s & 1) === 0) {
      // ORDERING: seq-cst CAS claims the lock; readers that loaded the even value before it
      // will see SEQ changed on their second load and retry.
      if (Atomics.compareExchange(w, IommuWord.SEQ, s, (s + 1) | 0) === s) return (s + 1) | 0;
      continue;
    }
    if (i < WRITER_SPINS) continue;
    if (i >= WRITER_SPINS + WRITER_SLEEPS) {
      if (force) return s;
      throw pvError('PV_ERR_TIMEOUT', 'IOMMU context: another writer holds the table');
    }
    // ORDERING: sleeps only while SEQ still holds the odd value we saw; endWrite notifies.
    Atomics.wait(w, IommuWord.SEQ, s, 1);
  }
}

/** Releases the writer lock taken by `beginWrite` (SEQ becomes even again) and wakes waiters. */
export function endWrite(w: Int32Array, odd: number): void {
  // ORDERING: seq-cst store publishes every field stored inside the critical section.
  Atomics.store(w, IommuWord.SEQ, (odd + 1) | 0);
  // ORDERING: wakes readers and writers sleeping on SEQ (≈ 40 ns when nobody sleeps).
  Atomics.notify(w, IommuWord.SEQ);
}

/** Bumps the generation (inside a critical section): cached resolutions are now stale. */
export function bumpGeneration(w: Int32Array): void {
  // ORDERING: stored before endWrite's SEQ store, so a reader that sees the new mapping state
  // also sees the new generation.
  Atomics.add(w, IommuWord.GENERATION, 1);
}

/**
 * Inserts a foreign extent (caller holds the lock): takes the lowest free slot and a next-fit
 * run of `pages + 1` free PTEs (the extent and its guard page). Returns the first IOVA page,
 * or -1 when no slot is free, -2 when the window has no such run.
 */
export function insertExtent(w: Int32Array, domid: number, gfn: number, pages: number, flags: number): number {
  const maxExtents = w[IommuWord.MAX_EXTENTS];
  const windowPages = w[IommuWord.WINDOW_PAGES];
  let slot = -1;
  for (let s = w[IommuWord.SLOT_HINT]; s < maxExtents; s++) {
    if (w[extentBase(s) + ExtentWord.STATE] === ExtentState.FREE) {
      slot = s;
      break;
    }
  }
  if (slot < 0) return -1;
  const pt = pageTableBase(maxExtents);
  const start = findFreeRun(w, pt, windowPages, w[IommuWord.ALLOC_CURSOR], pages + 1);
  if (start < 0) return -2;
  const iovaPage = w[IommuWord.WINDOW_BASE] + start;
  const e = extentBase(slot);
  // ORDERING: seq-cst stores inside the critical section (see the file comment); STATE last.
  Atomics.store(w, e + ExtentWord.IOVA_PAGE, iovaPage);
  Atomics.store(w, e + ExtentWord.PAGES, pages);
  Atomics.store(w, e + ExtentWord.DOMID, domid);
  Atomics.store(w, e + ExtentWord.GFN, gfn);
  Atomics.store(w, e + ExtentWord.FLAGS, flags);
  Atomics.store(w, e + ExtentWord.STATE, ExtentState.VALID);
  for (let i = 0; i < pages; i++) Atomics.store(w, pt + start + i, slot + 1);
  Atomics.store(w, pt + start + pages, PTE_GUARD);
  const next = start + pages + 1;
  w[IommuWord.ALLOC_CURSOR] = next >= windowPages ? 0 : next;
  w[IommuWord.SLOT_HINT] = slot + 1;
  Atomics.add(w, IommuWord.LIVE_EXTENTS, 1);
  return iovaPage;
}

/**
 * Removes the extent that starts at `iovaPage` (caller holds the lock), VALID or REVOKED, with
 * its guard page; bumps the generation. False when no extent starts there.
 */
export function removeExtent(w: Int32Array, iovaPage: number): boolean {
  const maxExtents = w[IommuWord.MAX_EXTENTS];
  const idx = iovaPage - w[IommuWord.WINDOW_BASE];
  if (!(idx >= 0 && idx < w[IommuWord.WINDOW_PAGES])) return false;
  const pt = pageTableBase(maxExtents);
  const pte = w[pt + idx];
  if (pte <= 0) return false;
  const slot = pte - 1;
  const e = extentBase(slot);
  if (w[e + ExtentWord.IOVA_PAGE] !== iovaPage || w[e + ExtentWord.STATE] === ExtentState.FREE) return false;
  const pages = w[e + ExtentWord.PAGES];
  // ORDERING: seq-cst stores inside the critical section; STATE first so a reader that raced
  // past the PTE still refuses the slot.
  Atomics.store(w, e + ExtentWord.STATE, ExtentState.FREE);
  for (let i = 0; i <= pages; i++) Atomics.store(w, pt + idx + i, 0);
  for (let i = ExtentWord.IOVA_PAGE; i < ExtentWord.SIZE; i++) Atomics.store(w, e + i, 0);
  if (slot < w[IommuWord.SLOT_HINT]) w[IommuWord.SLOT_HINT] = slot;
  Atomics.sub(w, IommuWord.LIVE_EXTENTS, 1);
  bumpGeneration(w);
  return true;
}

/**
 * Marks every VALID extent that targets `domid` REVOKED (caller holds the lock), so the device
 * can no longer reach a dead domain's pages — nor, once the id is reused, a new domain's. The
 * owner's later unmap frees the slots. Returns how many were revoked.
 */
export function revokeExtents(w: Int32Array, domid: number): number {
  const maxExtents = w[IommuWord.MAX_EXTENTS];
  let revoked = 0;
  for (let s = 0; s < maxExtents; s++) {
    const e = extentBase(s);
    if (w[e + ExtentWord.STATE] === ExtentState.VALID && w[e + ExtentWord.DOMID] === domid) {
      // ORDERING: seq-cst store inside the critical section.
      Atomics.store(w, e + ExtentWord.STATE, ExtentState.REVOKED);
      revoked++;
    }
  }
  if (revoked > 0) bumpGeneration(w);
  return revoked;
}

/** Drops every extent and the owner (caller holds the lock); the context faults everything. */
export function clearTable(w: Int32Array): void {
  const end = pageTableBase(w[IommuWord.MAX_EXTENTS]) + w[IommuWord.WINDOW_PAGES];
  // Bulk zeroing inside the critical section: readers validate with SEQ, so plain stores do.
  w.fill(0, IommuWord.HEADER, end);
  // ORDERING: seq-cst stores inside the critical section.
  Atomics.store(w, IommuWord.MODE, IommuModeCode.NONE);
  Atomics.store(w, IommuWord.OWNER, -1);
  Atomics.store(w, IommuWord.OWNER_PAGES, 0);
  Atomics.store(w, IommuWord.WINDOW_BASE, 0);
  Atomics.store(w, IommuWord.LIVE_EXTENTS, 0);
  w[IommuWord.ALLOC_CURSOR] = 0;
  w[IommuWord.SLOT_HINT] = 0;
  bumpGeneration(w);
}

/**
 * First index of `need` consecutive free PTEs, searching next-fit from `cursor` and wrapping
 * once (a run never wraps across the window's end); -1 when there is none.
 */
function findFreeRun(w: Int32Array, pt: number, windowPages: number, cursor: number, need: number): number {
  if (need > windowPages) return -1;
  let runStart = cursor < windowPages ? cursor : 0;
  let runLen = 0;
  let wrapped = runStart === 0;
  for (let i = runStart, steps = 0; steps <= windowPages + need; steps++) {
    if (i >= windowPages) {
      if (wrapped) return -1;
      wrapped = true;
      i = 0;
      runStart = 0;
      runLen = 0;
    }
    if (w[pt + i] === 0) {
      if (runLen === 0) runStart = i;
      if (++runLen === need) return runStart;
    } else {
      runLen = 0;
    }
    i++;
  }
  return -1;
}

/** The extents in use (valid or revoked), read slot by slot: a snapshot, not seqlock-validated. */
export function snapshotExtents(w: Int32Array, maxExtents: number): ForeignExtent[] {
  const list: ForeignExtent[] = [];
  for (let s = 0; s < maxExtents; s++) {
    const e = extentBase(s);
    // ORDERING: seq-cst loads; diagnostics only.
    const state = Atomics.load(w, e + ExtentWord.STATE);
    if (state === ExtentState.FREE) continue;
    list.push({
      iova: (Atomics.load(w, e + ExtentWord.IOVA_PAGE) * PAGE_SIZE) as Iova,
      pages: Atomics.load(w, e + ExtentWord.PAGES),
      domid: Atomics.load(w, e + ExtentWord.DOMID) as DomId,
      gfn: Atomics.load(w, e + ExtentWord.GFN) as Gfn,
      writable: (Atomics.load(w, e + ExtentWord.FLAGS) & ExtentFlag.WRITABLE) !== 0,
      revoked: state === ExtentState.REVOKED,
    });
  }
  return list;
}
