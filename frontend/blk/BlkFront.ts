/**
 * blkfront's data path: the shared ring, the shadow of every request in flight, the grants of
 * its buffer pages, and promises that settle when the responses come back.
 *
 * `read(sector, count, gpa)` / `write(…)` split the guest buffer into page segments (one grant
 * per segment: writable for READ, read-only for WRITE), 11 inline per request or up to the
 * backend's `feature-max-indirect-segments` in one indirect page, and as many requests as that
 * takes; requests queue when the ring is full and go out as responses free slots (queue depth =
 * ring size). A response ends its request's grants (the backend unmapped before responding); a
 * grant the backend still holds is retried later rather than revoked (XSA-396).
 *
 * The front does not trust the backend either: a response is decoded once into a private
 * object, its id must name a request in flight with the same generation and operation, and a
 * response producer beyond the published requests kills the ring (RING_RESPONSE_PROD_OVERFLOW).
 *
 * Reconnect (BlkConnect.ts): `detach()` when the backend went away puts every request in flight
 * back on the queue and lets the ring go, `attach()` grants a fresh ring and port for the next
 * backend, `resume()` on Connected re-issues the queue (new grants, new ids: an answer to an old
 * id is never taken). `release()` is the end: everything left fails with PV_ERR_DISCONNECTED.
 *
 * Waiting: `wait(p)` drives the ring until `p` settles — poll, and when nothing came back, the
 * adaptive wait on the event channel (clear pending, final check, spin then sleep), or in
 * single-thread tests the `idle` hook that runs the backend instead.
 */

import { BLKIF_MAX_SEGMENTS_PER_REQUEST, BlkifOp, BlkifStatus } from '../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_SEG_WORDS,
  BLKIF_SLOT_SIZE,
  type BlkifResponse,
  type BlkifSegment,
  decodeBlkifResponse,
  encodeBlkifRequest,
  encodeBlkifSegment,
} from '../../protocol/blkif/BlkifSlot.js';
import { pvError } from '../../protocol/errors.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import { FrontRing } from '../../protocol/ring/FrontRing.js';
import { initSharedRing, ringBytes } from '../../protocol/ring/Layout.js';
import {
  type DomId,
  type EvtchnPort,
  type Gfn,
  type GrantRef,
  type GuestPhysAddr,
  gfnOf,
  PAGE_SIZE,
} from '../../protocol/Types.js';
import { type BlkOp, BlkShadows } from './BlkShadows.js';

/** What the backend published (BlkConnect.ts parses it). */
export interface BlkInfo {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  readonly flush: boolean;
  /** Segments per indirect request (0: no indirect requests). */
  readonly maxIndirectSegments: number;
}

/** Options of the front. */
export interface BlkFrontOptions {
  /** Ring of 2^order pages (default 0: 32 slots). */
  readonly order?: number;
  /** Polls before sleeping. */
  readonly spinBudget?: number;
  /** Single-thread tests: run instead of sleeping (serve the backend). */
  readonly idle?: () => void;
  /** Cap on segments per indirect request (default: what the backend offers, at most 512). */
  readonly maxIndirectSegments?: number;
}

const MAX_ONE_PAGE_SEGMENTS = PAGE_SIZE / (BLKIF_SEG_WORDS * 4);

export class BlkFront {
  /** The current ring, its grants and port: replaced by `attach()` after a backend restart. */
  ring: FrontRing;
  port: EvtchnPort;
  ringRefs: readonly GrantRef[];
  readonly ringOrder: number;
  /** Requests put back on the queue by `detach()` to be re-issued on the next ring. */
  requeued = 0;
  /** Set when the backend is Connected. */
  info: BlkInfo | undefined;
  /** Responses the front threw away (unknown id, stale generation, wrong operation). */
  badResponses = 0;
  /** Sleeps taken, and sleeps that ended by timeout with requests outstanding. */
  readonly waits = { sleeps: 0, timeouts: 0 };
  /** Set when the ring broke or the device went away: every later call rejects with it. */
  dead: Error | undefined;
  private readonly _hc: Hypercalls;
  private readonly _backend: DomId;
  private _ringAddr: GuestPhysAddr;
  /** A ring is allocated and granted (false between `detach()` and `attach()`). */
  private _attached = true;
  /** Requests may go onto the ring: the backend is (or is about to be) Connected. */
  private _online = true;
  private readonly _shadows: BlkShadows;
  private readonly _rsp: BlkifResponse = { idLo: 0, idHi: 0, op: 0, status: 0 };
  private readonly _spin: number;
  private readonly _idle: (() => void) | undefined;
  private readonly _maxIndCap: number;

  /** Allocates, initialises and grants the ring, the indirect pages and the event channel. */
  constructor(hc: Hypercalls, backend: DomId, opts: BlkFrontOptions = {}) {
    this._hc = hc;
    this._backend = backend;
    this._spin = opts.spinBudget ?? 1000;
    this._idle = opts.idle;
    this._maxIndCap = Math.min(opts.maxIndirectSegments ?? MAX_ONE_PAGE_SEGMENTS, MAX_ONE_PAGE_SEGMENTS);
    this.ringOrder = opts.order ?? 0;
    const r = this._newRing();
    this.ring = r.ring;
    this._ringAddr = r.addr;
    this.ringRefs = r.refs;
    this.port = r.port;
    this._shadows = new BlkShadows(hc, backend, this.ring.size);
  }

  /** A fresh ring of `ringOrder`, granted to the backend, and a port allocated for it. */
  private _newRing(): { ring: FrontRing; addr: GuestPhysAddr; refs: GrantRef[]; port: EvtchnPort } {
    const hc = this._hc;
    const pages = 1 << this.ringOrder;
    const addr = hc.memory.allocPages(pages);
    const view = hc.memory.view(addr, ringBytes(this.ringOrder));
    initSharedRing(view);
    const ring = new FrontRing(view, BLKIF_SLOT_SIZE);
    ring.counters.publish(hc.monitor, 'blkif', this._backend, 'front');
    const refs: GrantRef[] = [];
    const first = gfnOf(addr);
    for (let i = 0; i < pages; i++) refs.push(hc.grant.grantAccess(this._backend, (first + i) as Gfn, false));
    return { ring, addr, refs, port: hc.evtchn.allocUnbound(this._backend) };
  }

  /** Reads `count` 512-byte sectors from `sector` into guest memory at `gpa` (512-aligned). */
  read(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._io(BlkifOp.READ, sector, count, gpa);
  }

  /** Writes `count` sectors at `sector` from guest memory at `gpa`. */
  write(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._io(BlkifOp.WRITE, sector, count, gpa);
  }

  /** Flushes the backend's write cache (FLUSH_DISKCACHE with no segments). */
  flush(): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.info && !this.info.flush) return Promise.reject(pvError('PV_ERR_NOT_SUPPORTED', 'no feature-flush-cache'));
    const p = this._shadows.enqueue({ op: BlkifOp.FLUSH_DISKCACHE, sector: 0, segs: [], indirect: false });
    this._submitQueued();
    return p;
  }

  /** Requests in flight or queued. */
  outstanding(): number {
    return this._shadows.inFlight + this._shadows.queued;
  }

  /** Consumes every published response, settles its request, submits queued ones; returns how many. */
  poll(): number {
    if (this.dead || !this._attached) return 0;
    let n = 0;
    try {
      while (this.ring.unconsumedResponses() > 0) {
        // Decode once into a private object; only that copy is looked at.
        const rsp = decodeBlkifResponse(this.ring.words, this.ring.responseSlot(), this._rsp);
        this.ring.consumeResponse();
        n++;
        if (!this._shadows.complete(rsp.idLo, rsp.idHi, rsp.op, statusError(rsp.status))) this.badResponses++;
      }
    } catch (err) {
      this.kill(err instanceof Error ? err : new Error(String(err)));
      return n;
    }
    if (n > 0) this._submitQueued();
    return n;
  }

  /** Drives the ring (poll, then wait on the event channel) until `p` settles. */
  async wait<T>(p: Promise<T>, timeoutMs = 30_000): Promise<T> {
    let settled = false;
    const tracked = p.finally(() => {
      settled = true;
    });
    tracked.catch(() => {});
    const deadline = performance.now() + timeoutMs;
    while (!settled) {
      if (this.dead) break;
      if (this.poll() > 0) {
        // Let the settled promises' callbacks (and the caller's chained I/O) run.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      if (performance.now() > deadline) throw pvError('PV_ERR_TIMEOUT', `no blkif response within ${timeoutMs} ms`);
      if (!this._online) {
        // Between rings (the backend went away): the xenbus machine runs on this thread's event
        // loop, so give it the loop until it reconnects (or gives up and kills the device).
        await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      this.waitOnce(deadline);
      // A macrotask turn, not a microtask: store messages (a backend that died, a reconnect)
      // arrive as events and must get through while the caller waits.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return tracked;
  }

  /** Fails every request and refuses new ones (ring broken, or the device went away). */
  kill(reason: Error): void {
    if (this.dead) return;
    this.dead = reason;
    this._shadows.failAll(reason);
  }

  /** Ends the ring grants that ended, closes the port and frees the ring if it is free (after disconnect). */
  async release(endDeferred: (refs: readonly GrantRef[]) => Promise<GrantRef[]>): Promise<number> {
    this.kill(pvError('PV_ERR_DISCONNECTED', 'the vbd was disconnected'));
    const ringRefs = this._attached ? [...this.ringRefs] : [];
    if (this._attached) this._hc.evtchn.close(this.port);
    this.ring.counters.unpublish();
    this._attached = false;
    const left = await endDeferred([...ringRefs, ...this._shadows.heldRefs()]);
    const ringLeft = left.filter((r) => ringRefs.includes(r));
    if (ringRefs.length > 0 && ringLeft.length === 0) this._hc.memory.freePages(this._ringAddr, 1 << this.ringOrder);
    if (left.length === ringLeft.length) this._shadows.freePages();
    return left.length;
  }

  /**
   * The backend went away but the device will reconnect (blkfront `blkif_recover`): stop
   * submitting, put every request in flight back on the queue (BlkShadows.requeueAll), close the
   * port and end the ring's grants; the ring's pages are freed only if every grant ended (a page
   * a backend may still write is never reused, XSA-396). Returns the ring grants still held.
   */
  async detach(endDeferred: (refs: readonly GrantRef[]) => Promise<GrantRef[]>): Promise<number> {
    if (!this._attached || this.dead) return 0;
    this._online = false;
    this._attached = false;
    this.requeued += this._shadows.requeueAll();
    this._hc.evtchn.close(this.port);
    this.ring.counters.unpublish();
    const left = await endDeferred(this.ringRefs);
    if (left.length === 0) this._hc.memory.freePages(this._ringAddr, 1 << this.ringOrder);
    return left.length;
  }

  /** A new ring and port for the next backend (after `detach()`); requests wait for `resume()`. */
  attach(): void {
    if (this.dead) throw this.dead;
    if (this._attached) throw pvError('PV_ERR_INVALID_ARG', 'the vbd ring is still attached');
    const r = this._newRing();
    this.ring = r.ring;
    this._ringAddr = r.addr;
    this.ringRefs = r.refs;
    this.port = r.port;
    this._attached = true;
  }

  /** The backend is Connected on the current ring: re-issue what was requeued, then go on. */
  resume(): void {
    if (this.dead || !this._attached) return;
    this._online = true;
    this._submitQueued();
  }

  private _io(op: BlkOp, sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    const info = this.info;
    try {
      if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 1) {
        throw pvError('PV_ERR_INVALID_ARG', `sector ${sector} / count ${count}`);
      }
      if (info && (count > info.sectors || sector > info.sectors - count)) {
        throw pvError('PV_ERR_BLK_BAD_SECTOR', `sectors [${sector}, +${count}) outside a vbd of ${info.sectors}`);
      }
      if (info?.readOnly && op === BlkifOp.WRITE) throw pvError('PV_ERR_BAD_REQUEST', 'the vbd is read-only');
      if (gpa % 512 !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `buffer ${gpa} is not 512-byte aligned`);
      this._hc.memory.checkRange(gpa, count * 512);
    } catch (err) {
      return Promise.reject(err);
    }
    const maxInd = Math.min(info?.maxIndirectSegments ?? 0, this._maxIndCap);
    const perRequest = Math.max(maxInd, BLKIF_MAX_SEGMENTS_PER_REQUEST);
    const parts: Promise<void>[] = [];
    let addr = gpa as number;
    let s = sector;
    let left = count;
    while (left > 0) {
      const segs: BlkifSegment[] = [];
      const start = s;
      while (left > 0 && segs.length < perRequest) {
        const first = (addr % PAGE_SIZE) >> 9;
        const n = Math.min(8 - first, left);
        // gref is filled in at submit time; `gref` carries the frame until then.
        segs.push({ gref: Math.floor(addr / PAGE_SIZE), first, last: first + n - 1 });
        addr += n * 512;
        s += n;
        left -= n;
      }
      const indirect = segs.length > BLKIF_MAX_SEGMENTS_PER_REQUEST;
      parts.push(this._shadows.enqueue({ op, sector: start, segs, indirect }));
    }
    this._submitQueued();
    return parts.length === 1 ? parts[0] : Promise.all(parts).then(() => undefined);
  }

  /** Moves queued requests onto the ring while slots are free, then publishes and notifies. */
  private _submitQueued(): void {
    if (!this._online) return;
    let any = false;
    while (this._shadows.queued > 0 && !this.ring.isFull()) {
      const w = this.ring.nextRequestSlot();
      if (!this._shadows.submitNext((r) => encodeBlkifRequest(this.ring.words, w, r), encodeBlkifSegment)) continue;
      this.ring.commitRequest();
      any = true;
    }
    if (any) this.push();
  }

  /**
   * Publishes requests committed on `ring` and notifies the backend if it asked (for callers
   * that write their own slots; `read`/`write`/`flush` publish by themselves).
   */
  push(): void {
    if (!this.ring.pushRequests()) return;
    try {
      this._hc.evtchn.notify(this.port);
    } catch (err) {
      // Not bound (yet, or any more): the requests stay published; a backend that binds finds
      // the port pending (EVTCHNOP_bind_interdomain, XE:92) and scans, one that left never will.
      if ((err as { code?: unknown }).code !== 'PV_ERR_EVTCHN_BAD_STATE') throw err;
    }
  }

  /**
   * One wait for responses until `deadline` (performance.now() ms, at most 100 ms per call):
   * clear pending, final check, then spin-then-sleep on the event channel (as IoRingFront), or
   * the `idle` hook in single-thread tests.
   */
  waitOnce(deadline: number): void {
    if (this._idle) {
      this._idle();
      return;
    }
    const ev = this._hc.evtchn;
    const snapshot = ev.wakeSnapshot();
    ev.testAndClearPending(this.port);
    if (this.ring.finalCheckForResponses()) return;
    this.waits.sleeps++;
    const left = Math.max(0, deadline - performance.now());
    const woke = ev.waitForEvent(snapshot, { spinBudget: this._spin, timeoutMs: Math.min(left, 100) });
    if (!woke && this.ring.unconsumedResponses() === 0 && this._shadows.inFlight > 0) this.waits.timeouts++;
  }
}

/** The error a response status stands for (undefined for OKAY). */
function statusError(status: number): Error | undefined {
  if (status === BlkifStatus.OKAY) return undefined;
  if (status === BlkifStatus.EOPNOTSUPP) return pvError('PV_ERR_NOT_SUPPORTED', 'the backend answered EOPNOTSUPP');
  return pvError('PV_ERR_BLK_IO', `the backend answered status ${status}`);
}

/** Re-exported for programs sizing buffers. */
export const BLK_PAGE = PAGE_SIZE;
