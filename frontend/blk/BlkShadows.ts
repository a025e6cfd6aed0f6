/**
 * blkfront's shadow table: one entry per ring slot holding what a request in flight granted and
 * who waits for it (Linux blkfront's `shadow[]`), plus the queue of requests waiting for a slot.
 *
 * Request ids are `(index, generation)`: the low word indexes the table, the high word must match
 * the entry's current generation, so a backend replaying an old id, inventing one, or answering
 * twice is caught and the response thrown away. Each entry owns one guest page for the indirect
 * descriptors of its request; the page is granted read-only for that request only.
 *
 * Grants end when the response arrives (the backend unmapped before answering). One the backend
 * still maps is kept on a deferred list and retried, never revoked and its page never reused
 * (XSA-396).
 */

import { BlkifOp } from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SEG_WORDS, type BlkifRequestIn, type BlkifSegment } from '../../protocol/blkif/BlkifSlot.js';
import { PvError, pvError } from '../../protocol/errors.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import { type DomId, type Gfn, type GrantRef, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../protocol/Types.js';

/** Operations a caller may ask for. */
export type BlkOp = BlkifOp.READ | BlkifOp.WRITE | BlkifOp.FLUSH_DISKCACHE;

/** A request waiting for a slot; `segs[i].gref` holds the guest frame until it is granted. */
export interface BlkPending {
  readonly op: BlkOp;
  readonly sector: number;
  readonly segs: readonly BlkifSegment[];
  readonly indirect: boolean;
}

interface Queued extends BlkPending {
  resolve(): void;
  reject(err: Error): void;
}

interface Shadow {
  busy: boolean;
  gen: number;
  /** The operation byte on the wire (INDIRECT for an indirect request). */
  wireOp: number;
  refs: GrantRef[];
  /** The request as queued (frames, not grants): what a reconnect re-issues. */
  req: Queued | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

const noop = (): void => {};

export class BlkShadows {
  private readonly _shadows: Shadow[] = [];
  private readonly _free: number[] = [];
  private readonly _queue: Queued[] = [];
  private _queueHead = 0;
  private _inFlight = 0;
  private _deferred: GrantRef[] = [];
  private readonly _indAddr: GuestPhysAddr;

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _backend: DomId,
    readonly size: number,
  ) {
    this._indAddr = _hc.memory.allocPages(size);
    for (let i = 0; i < size; i++) {
      this._shadows.push({ busy: false, gen: 0, wireOp: 0, refs: [], req: undefined, resolve: noop, reject: noop });
      // Popped from the end: entry 0 goes out first.
      this._free.push(size - 1 - i);
    }
  }

  /** Requests on the ring. */
  get inFlight(): number {
    return this._inFlight;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this._queue.length - this._queueHead;
  }

  /** Queues a request; the promise settles with its response. */
  enqueue(p: BlkPending): Promise<void> {
    return new Promise<void>((resolve, reject) => this._queue.push({ ...p, resolve, reject }));
  }

  /**
   * Grants the next queued request's pages and hands its wire form to `encode`. Returns false
   * (the request rejected, nothing left granted) when a grant fails; the caller then tries the
   * next one. INVARIANT: the caller checked the ring has a free slot, so a shadow is free.
   */
  submitNext(
    encode: (r: BlkifRequestIn) => void,
    encodeSeg: (dst: Int32Array, w: number, s: BlkifSegment) => void,
  ): boolean {
    const q = this._queue[this._queueHead++];
    if (this._queueHead > 1024 && this._queueHead * 2 > this._queue.length) {
      this._queue.splice(0, this._queueHead);
      this._queueHead = 0;
    }
    const idx = this._free.pop() as number;
    const sh = this._shadows[idx];
    const refs: GrantRef[] = [];
    try {
      // READ: the backend writes our pages; WRITE: it only reads them (least privilege).
      const ro = q.op !== BlkifOp.READ;
      const segs = q.segs.map((s) => {
        const ref = this._hc.grant.grantAccess(this._backend, s.gref as Gfn, ro);
        refs.push(ref);
        return { gref: ref, first: s.first, last: s.last };
      });
      sh.gen = (sh.gen + 1) >>> 0;
      const base = {
        idLo: idx,
        idHi: sh.gen,
        sectorLo: q.sector >>> 0,
        sectorHi: Math.floor(q.sector / 2 ** 32),
        handle: 0,
      };
      if (q.indirect) {
        const page = (this._indAddr + idx * PAGE_SIZE) as GuestPhysAddr;
        const v = this._hc.memory.view(page, PAGE_SIZE);
        const words = new Int32Array(v.buffer, v.byteOffset, PAGE_SIZE / 4);
        words.fill(0);
        for (let i = 0; i < segs.length; i++) encodeSeg(words, i * BLKIF_SEG_WORDS, segs[i]);
        const ind = this._hc.grant.grantAccess(this._backend, gfnOf(page), true);
        refs.push(ind);
        sh.wireOp = BlkifOp.INDIRECT;
        encode({ ...base, op: BlkifOp.INDIRECT, indirectOp: q.op, nseg: segs.length, indirectGrefs: [ind] });
      } else {
        sh.wireOp = q.op;
        encode({ ...base, op: q.op, segs });
      }
    } catch (err) {
      this._endRefs(refs);
      this._free.push(idx);
      q.reject(err instanceof PvError ? err : pvError('PV_ERR_INVALID_ARG', String(err)));
      return false;
    }
    sh.busy = true;
    sh.refs = refs;
    sh.req = q;
    sh.resolve = q.resolve;
    sh.reject = q.reject;
    this._inFlight++;
    return true;
  }

  /**
   * Settles the request a response names. False (and nothing done) when the id is unknown,
   * stale or not in flight, or the operation differs from what was sent.
   */
  complete(idLo: number, idHi: number, op: number, err: Error | undefined): boolean {
    if (idLo >= this.size) return false;
    const sh = this._shadows[idLo];
    if (!sh.busy || sh.gen !== idHi || sh.wireOp !== op) return false;
    sh.busy = false;
    this._inFlight--;
    this._endRefs(sh.refs);
    sh.refs = [];
    sh.req = undefined;
    this._free.push(idLo);
    const { resolve, reject } = sh;
    sh.resolve = noop;
    sh.reject = noop;
    if (err === undefined) resolve();
    else reject(err);
    if (this._deferred.length > 0) this._endRefs(this._deferred.splice(0));
    return true;
  }

  /**
   * The ring is gone but the device will reconnect (Linux `blkif_recover`): every request in
   * flight goes back to the head of the queue, unsettled, to be granted afresh and re-issued on
   * the next ring. Its old grants are ended (deferred while the dead backend's mappings are still
   * being torn down). Its shadow's generation moves on at re-submission, so an answer to the old
   * id can never settle it: each request settles exactly once. Returns how many were requeued.
   */
  requeueAll(): number {
    const back: Queued[] = [];
    for (let i = 0; i < this._shadows.length; i++) {
      const sh = this._shadows[i];
      if (!sh.busy) continue;
      sh.busy = false;
      this._endRefs(sh.refs);
      sh.refs = [];
      back.push(sh.req as Queued);
      sh.req = undefined;
      sh.resolve = noop;
      sh.reject = noop;
      this._free.push(i);
    }
    this._inFlight = 0;
    if (back.length > 0) {
      this._queue.splice(0, this._queueHead, ...back);
      this._queueHead = 0;
    }
    return back.length;
  }

  /** Rejects everything queued or in flight; in-flight grants go to the deferred list. */
  failAll(err: Error): void {
    for (const sh of this._shadows) {
      if (!sh.busy) continue;
      sh.busy = false;
      this._deferred.push(...sh.refs);
      sh.refs = [];
      sh.req = undefined;
      sh.reject(err);
    }
    this._inFlight = 0;
    while (this._queueHead < this._queue.length) this._queue[this._queueHead++].reject(err);
  }

  /** Grants not yet ended (the backend may still map them). */
  heldRefs(): GrantRef[] {
    return [...this._deferred];
  }

  /** Frees the indirect pages (only once no grant on them is left). */
  freePages(): void {
    this._hc.memory.freePages(this._indAddr, this.size);
  }

  private _endRefs(refs: readonly GrantRef[]): void {
    for (const ref of refs) {
      try {
        this._hc.grant.endAccess(ref);
      } catch (err) {
        // Still mapped by the backend: retry later, never reuse the page meanwhile (XSA-396).
        if ((err as { code?: unknown }).code === 'PV_ERR_GRANT_IN_USE') this._deferred.push(ref);
      }
    }
  }
}
