/**
 * The front (request-producing) end of a shared ring: Xen's `__name##_front_ring`.
 *
 * Private state `{reqProdPvt, rspCons}` lives here, not in shared memory. Requests are written
 * into slots with plain stores (the slot is ours until `req_prod` is published) and published in
 * batches by `pushRequests()`, which tells the caller whether the backend asked to be notified.
 *
 * ```
 *            rspCons           rsp_prod          reqProdPvt
 *               |  responses to   |  requests in    |
 *   ... done ---+---- consume ----+---- flight -----+--- free slots --->
 * ```
 */

import { pvError } from '../errors.js';
import { type RingIndex, ringIndex } from '../Types.js';
import { needsNotify, RingWord, ringSlots, ringWords } from './Layout.js';
import { RingCounter, RingCounters } from './RingCounters.js';

/** Front end of a shared ring: produces requests, consumes responses (see the file comment). */
export class FrontRing {
  /** Number of slots (a power of two). */
  readonly size: number;
  /** Slot size in bytes. */
  readonly slotSize: number;
  /** Words per slot. */
  readonly slotWords: number;
  /** The whole ring as Int32 words (header + slots). Slot fields are read and written here. */
  readonly words: Int32Array;
  /** Cheap counters (one indexed add each; published to the monitor by the ring's owner). */
  readonly counters = new RingCounters();

  private _reqProdPvt: number;
  /** Last value we published to req_prod (we are its only writer; never re-read it). */
  private _reqProdPub: number;
  private _rspCons: number;
  private readonly _mask: number;

  /** Attaches to an initialised ring (`FRONT_RING_ATTACH` at the ring's current indices). */
  constructor(view: Uint8Array, slotSize: number) {
    this.words = ringWords(view);
    this.slotSize = slotSize;
    this.slotWords = slotSize >> 2;
    this.size = ringSlots(view.byteLength, slotSize);
    this._mask = this.size - 1;
    // ORDERING: seq-cst loads; attach happens before any traffic on this end.
    this._reqProdPvt = Atomics.load(this.words, RingWord.REQ_PROD) >>> 0;
    this._reqProdPub = this._reqProdPvt;
    this._rspCons = Atomics.load(this.words, RingWord.RSP_PROD) >>> 0;
  }

  /** Private request producer (requests written, maybe not yet published). */
  get reqProdPvt(): RingIndex {
    return ringIndex(this._reqProdPvt);
  }

  /** Private response consumer. */
  get rspCons(): RingIndex {
    return ringIndex(this._rspCons);
  }

  /** Requests committed but not yet published by `pushRequests()`. */
  get unpushed(): number {
    return (this._reqProdPvt - this._reqProdPub) >>> 0;
  }

  /** `RING_FREE_REQUESTS`: slots the front may still fill. */
  freeRequests(): number {
    return this.size - ((this._reqProdPvt - this._rspCons) >>> 0);
  }

  /** `RING_FULL`. */
  isFull(): boolean {
    return this.freeRequests() === 0;
  }

  /**
   * Word offset of the next request slot to fill. Write the slot, then call `commitRequest()`.
   * Throws `PV_ERR_RING_FULL` if no slot is free (never overwrites an outstanding request).
   */
  nextRequestSlot(): number {
    if (this.freeRequests() === 0) {
      this.counters.values[RingCounter.FULL_STALLS]++;
      throw pvError('PV_ERR_RING_FULL', `all ${this.size} slots hold outstanding requests`);
    }
    return RingWord.SLOTS + (this._reqProdPvt & this._mask) * this.slotWords;
  }

  /** Marks the slot returned by `nextRequestSlot()` as produced (still private). */
  commitRequest(): void {
    this._reqProdPvt = (this._reqProdPvt + 1) >>> 0;
    this.counters.values[RingCounter.REQUESTS]++;
  }

  /**
   * `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes private requests; returns true when the
   * backend's `req_event` lies in (old, new], i.e. it asked to be woken.
   */
  pushRequests(): boolean {
    const w = this.words;
    const old = this._reqProdPub;
    const newProd = this._reqProdPvt;
    if (old === newProd) return false;
    this._reqProdPub = newProd;
    // ORDERING: slot contents were written with plain stores; this seq-cst store publishes them
    // (wmb + store) and acts as the full barrier before we read req_event (Dekker pair).
    Atomics.store(w, RingWord.REQ_PROD, newProd | 0);
    // ORDERING: seq-cst load after the seq-cst store; pairs with the backend's store of req_event
    // followed by its re-read of req_prod in finalCheckForRequests.
    const event = Atomics.load(w, RingWord.REQ_EVENT) >>> 0;
    const notify = needsNotify(newProd, old, event);
    if (notify) this.counters.values[RingCounter.NOTIFIES]++;
    else this.counters.values[RingCounter.SUPPRESSED]++;
    return notify;
  }

  /**
   * Responses published and not yet consumed. Throws `PV_ERR_RING_RSP_OVERFLOW` when the backend
   * claims more responses than requests outstanding (`RING_RESPONSE_PROD_OVERFLOW`).
   */
  unconsumedResponses(): number {
    // ORDERING: seq-cst load of rsp_prod before reading slots (rmb).
    const rp = Atomics.load(this.words, RingWord.RSP_PROD) >>> 0;
    const avail = (rp - this._rspCons) >>> 0;
    // Bound by the requests we *published*: the backend cannot have answered a request still in
    // our private batch, and that slot still holds our own request, not a response.
    if (avail > (this._reqProdPub - this._rspCons) >>> 0) {
      throw pvError('PV_ERR_RING_RSP_OVERFLOW', `rsp_prod ${rp} is beyond the published requests`);
    }
    return avail;
  }

  /** Word offset of the response slot at `rspCons`. Read it, then `consumeResponse()`. */
  responseSlot(): number {
    return RingWord.SLOTS + (this._rspCons & this._mask) * this.slotWords;
  }

  /** Advances the private response consumer. */
  consumeResponse(): void {
    this._rspCons = (this._rspCons + 1) >>> 0;
    this.counters.values[RingCounter.RESPONSES]++;
  }

  /**
   * `RING_FINAL_CHECK_FOR_RESPONSES`: true if responses are waiting; otherwise asks to be
   * notified on the next one (`rsp_event = rspCons + 1`) and re-checks, closing the race with a
   * backend that published between our check and our request.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    // ORDERING: seq-cst store of rsp_event then seq-cst re-load of rsp_prod (Dekker pair with
    // the backend's store rsp_prod → load rsp_event).
    Atomics.store(this.words, RingWord.RSP_EVENT, (this._rspCons + 1) | 0);
    return this.unconsumedResponses() > 0;
  }
}
