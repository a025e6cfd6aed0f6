/**
 * The back (request-consuming) end of a shared ring: Xen's `__name##_back_ring`.
 *
 * The backend treats everything in the shared page as hostile. It reads `req_prod` once per
 * batch and checks it against the response window (`RING_REQUEST_PROD_OVERFLOW`, XSA-39), copies
 * each request into private memory exactly once before looking at it (`RING_COPY_REQUEST`,
 * XSA-155), never consumes a request without a free response slot
 * (`RING_REQUEST_CONS_OVERFLOW`), and publishes responses in batches.
 */

import { pvError } from '../errors.js';
import { type RingIndex, ringIndex } from '../Types.js';
import { needsNotify, RingWord, ringSlots, ringWords } from './Layout.js';
import { RingCounter, RingCounters } from './RingCounters.js';

/** Back end of a shared ring: consumes requests from a hostile front, produces responses. */
export class BackRing {
  /** Number of slots (a power of two). */
  readonly size: number;
  /** Slot size in bytes. */
  readonly slotSize: number;
  /** Words per slot. */
  readonly slotWords: number;
  /** The whole ring as Int32 words (header + slots). */
  readonly words: Int32Array;
  /** Cheap counters (one indexed add each; published to the monitor by the ring's owner). */
  readonly counters = new RingCounters();

  private _reqCons: number;
  private _rspProdPvt: number;
  /** Last value we published to rsp_prod (we are its only writer). */
  private _rspProdPub: number;
  private readonly _mask: number;

  /**
   * `BACK_RING_ATTACH` at the shared `rsp_prod`. Checks the freshly mapped ring as blkback's
   * `xen_blkif_map` does: `req_prod − rsp_prod ≤ size`, else `PV_ERR_RING_PROD_OVERFLOW`.
   */
  constructor(view: Uint8Array, slotSize: number) {
    this.words = ringWords(view);
    this.slotSize = slotSize;
    this.slotWords = slotSize >> 2;
    this.size = ringSlots(view.byteLength, slotSize);
    this._mask = this.size - 1;
    // ORDERING: seq-cst loads of both producers at attach.
    const rspProd = Atomics.load(this.words, RingWord.RSP_PROD) >>> 0;
    const reqProd = Atomics.load(this.words, RingWord.REQ_PROD) >>> 0;
    if ((reqProd - rspProd) >>> 0 > this.size) {
      throw pvError('PV_ERR_RING_PROD_OVERFLOW', `req_prod ${reqProd} − rsp_prod ${rspProd} exceeds ${this.size}`);
    }
    this._reqCons = rspProd;
    this._rspProdPvt = rspProd;
    this._rspProdPub = rspProd;
  }

  /** Private request consumer. */
  get reqCons(): RingIndex {
    return ringIndex(this._reqCons);
  }

  /** Private response producer. */
  get rspProdPvt(): RingIndex {
    return ringIndex(this._rspProdPvt);
  }

  /**
   * Requests the backend may consume now: `XEN_RING_NR_UNCONSUMED_REQUESTS`, i.e. published
   * requests clamped to free response slots. Reads `req_prod` once. Throws
   * `PV_ERR_RING_PROD_OVERFLOW` (a fatal protocol violation) when the frontend claims more
   * requests than the ring can hold.
   */
  unconsumedRequests(): number {
    // ORDERING: seq-cst load of req_prod before any slot is read (rp = req_prod; rmb()).
    const rp = Atomics.load(this.words, RingWord.REQ_PROD) >>> 0;
    if ((rp - this._rspProdPvt) >>> 0 > this.size) {
      throw pvError(
        'PV_ERR_RING_PROD_OVERFLOW',
        `req_prod ${rp} − rsp_prod_pvt ${this._rspProdPvt} exceeds ring size ${this.size}`,
      );
    }
    const published = (rp - this._reqCons) >>> 0;
    // req_prod moved back behind req_cons: the u32 difference wraps to ~2^32. Without this check
    // the clamp below would let us consume up to `room` slots the front never published (stale
    // requests or our own responses). netback's "Impossible number of requests" test (LNB).
    if (published > this.size) {
      throw pvError('PV_ERR_RING_PROD_OVERFLOW', `req_prod ${rp} is behind req_cons ${this._reqCons}`);
    }
    const room = this.size - ((this._reqCons - this._rspProdPvt) >>> 0);
    return Math.min(published, room);
  }

  /**
   * Copies the request at `reqCons` into `dst` (a private Int32Array of `slotWords` words,
   * starting at `dstWord`) and consumes it. Every later decision reads the private copy only,
   * so a guest rewriting the slot concurrently cannot change what was validated (XSA-155).
   * INVARIANT: the caller got a non-zero count from `unconsumedRequests()` for this request.
   */
  copyRequest(dst: Int32Array, dstWord = 0): void {
    const src = this.words;
    const base = RingWord.SLOTS + (this._reqCons & this._mask) * this.slotWords;
    const n = this.slotWords;
    for (let i = 0; i < n; i++) dst[dstWord + i] = src[base + i];
    this._reqCons = (this._reqCons + 1) >>> 0;
    this.counters.values[RingCounter.REQUESTS]++;
  }

  /** `RING_REQUEST_CONS_OVERFLOW`: no response slot is free for another request. */
  requestConsOverflow(): boolean {
    return (this._reqCons - this._rspProdPvt) >>> 0 >= this.size;
  }

  /**
   * Word offset of the slot for the next response. Write every word of it (padding zeroed),
   * then `commitResponse()`.
   * INVARIANT: a request was consumed for this response (rspProdPvt < reqCons).
   */
  nextResponseSlot(): number {
    if (this._rspProdPvt === this._reqCons) {
      throw pvError('PV_ERR_RING_RSP_OVERFLOW', 'no consumed request is waiting for a response');
    }
    return RingWord.SLOTS + (this._rspProdPvt & this._mask) * this.slotWords;
  }

  /** Marks the response slot as produced (still private until `pushResponses()`). */
  commitResponse(): void {
    this._rspProdPvt = (this._rspProdPvt + 1) >>> 0;
    this.counters.values[RingCounter.RESPONSES]++;
  }

  /**
   * `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes private responses; true when the front's
   * `rsp_event` lies in (old, new].
   */
  pushResponses(): boolean {
    const old = this._rspProdPub;
    const newProd = this._rspProdPvt;
    if (old === newProd) return false;
    this._rspProdPub = newProd;
    const w = this.words;
    // ORDERING: seq-cst store publishes the plain-written slots and is the full barrier before
    // reading rsp_event (Dekker pair with the front's finalCheckForResponses).
    Atomics.store(w, RingWord.RSP_PROD, newProd | 0);
    // ORDERING: load after the seq-cst store.
    const event = Atomics.load(w, RingWord.RSP_EVENT) >>> 0;
    const notify = needsNotify(newProd, old, event);
    if (notify) this.counters.values[RingCounter.NOTIFIES]++;
    else this.counters.values[RingCounter.SUPPRESSED]++;
    return notify;
  }

  /**
   * `RING_FINAL_CHECK_FOR_REQUESTS`: true if requests are waiting; otherwise sets
   * `req_event = reqCons + 1` and re-checks, so a request published in between is not missed.
   */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    // ORDERING: seq-cst store of req_event then seq-cst re-load of req_prod (Dekker pair with
    // the front's store req_prod → load req_event).
    Atomics.store(this.words, RingWord.REQ_EVENT, (this._reqCons + 1) | 0);
    return this.unconsumedRequests() > 0;
  }
}
