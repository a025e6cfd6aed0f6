/**
 * Guest side of the generic I/O ring ("io" device): allocates and grants the shared ring
 * pages, allocates the event channel, and moves requests and responses. Used by the foundation's
 * end-to-end test and by the ring benchmarks; device frontends (RDMA, block) follow the same
 * shape with their own slot codecs.
 *
 * The front never trusts the backend either: responses are decoded into a private object once,
 * and the front checks the response producer against its own window (RING_RESPONSE_PROD_OVERFLOW).
 */

import type { Hypercalls } from '../../protocol/Hypercalls.js';
import { FrontRing } from '../../protocol/ring/FrontRing.js';
import {
  decodeIoResponse,
  encodeIoRequest,
  IO_SLOT_SIZE,
  type IoRequest,
  type IoResponse,
} from '../../protocol/ring/IoSlot.js';
import { initSharedRing, ringBytes } from '../../protocol/ring/Layout.js';
import {
  type DomId,
  type EvtchnPort,
  type GrantRef,
  type GuestPhysAddr,
  gfnOf,
  PAGE_SIZE,
} from '../../protocol/Types.js';

/** Where the backend finds this ring: what the frontend writes to the store. */
export interface IoRingKeys {
  readonly ringRefs: readonly GrantRef[];
  readonly ringOrder: number;
  readonly port: EvtchnPort;
}

/** Options of a ring front. */
export interface IoRingFrontOptions {
  /** 2^order pages of ring. */
  readonly order?: number;
  /** First value of the free-running indices (tests start near 2^32 to wrap). */
  readonly startIndex?: number;
  /** Polls before sleeping when waiting for responses. */
  readonly spinBudget?: number;
}

export class IoRingFront {
  readonly ring: FrontRing;
  readonly keys: IoRingKeys;
  /** Sleeps that ended by timeout while requests were outstanding (a lost wake-up). */
  lostWakeups = 0;
  /** Times the front slept waiting for responses. */
  sleeps = 0;
  private readonly _hc: Hypercalls;
  private readonly _ringAddr: GuestPhysAddr;
  private readonly _pages: number;
  private readonly _spin: number;
  private readonly _rsp: IoResponse = { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };

  /** Allocates, initialises and grants the ring to `backend`, and allocates the event channel. */
  constructor(hc: Hypercalls, backend: DomId, opts: IoRingFrontOptions = {}) {
    this._hc = hc;
    const order = opts.order ?? 0;
    this._spin = opts.spinBudget ?? 1000;
    this._pages = 1 << order;
    this._ringAddr = hc.memory.allocPages(this._pages);
    const view = hc.memory.view(this._ringAddr, ringBytes(order));
    initSharedRing(view, opts.startIndex ?? 0);
    this.ring = new FrontRing(view, IO_SLOT_SIZE);
    this.ring.counters.publish(hc.monitor, 'io', backend, 'front');
    const first = gfnOf(this._ringAddr);
    const ringRefs: GrantRef[] = [];
    for (let i = 0; i < this._pages; i++) {
      ringRefs.push(hc.grant.grantAccess(backend, (first + i) as typeof first, false));
    }
    const port = hc.evtchn.allocUnbound(backend);
    this.keys = { ringRefs, ringOrder: order, port };
  }

  /** Writes one request into the next slot (throws PV_ERR_RING_FULL when full); call `push()` after a batch. */
  submit(req: IoRequest): void {
    const w = this.ring.nextRequestSlot();
    encodeIoRequest(this.ring.words, w, req);
    this.ring.commitRequest();
  }

  /** Publishes submitted requests and notifies the backend if it asked. */
  push(): void {
    if (this.ring.pushRequests()) this._hc.evtchn.notify(this.keys.port);
  }

  /**
   * Takes the next response into a private object (reused: copy what you keep), or returns
   * undefined if none is published.
   */
  poll(): IoResponse | undefined {
    if (this.ring.unconsumedResponses() === 0) return undefined;
    decodeIoResponse(this.ring.words, this.ring.responseSlot(), this._rsp);
    this.ring.consumeResponse();
    return this._rsp;
  }

  /**
   * Sleeps until a response may be there: re-arms rsp_event with the final check, then waits on
   * the domain's wake word (spin first). A timeout with requests outstanding is counted as a
   * lost wake-up.
   */
  waitForResponses(timeoutMs = 5000): void {
    const ev = this._hc.evtchn;
    const port = this.keys.port;
    // Snapshot the wake word, then clear the port's pending bit BEFORE the final check (as a
    // Xen guest clears pending before scanning): a notify after this point finds pending 0,
    // bumps the wake word and so cannot be coalesced into one we already consumed.
    const snapshot = ev.wakeSnapshot();
    ev.testAndClearPending(port);
    if (this.ring.finalCheckForResponses()) return;
    this.sleeps++;
    const woke = ev.waitForEvent(snapshot, { spinBudget: this._spin, timeoutMs });
    if (!woke && this.ring.unconsumedResponses() === 0 && this.outstanding() > 0) this.lostWakeups++;
  }

  /** Requests submitted and not yet answered. */
  outstanding(): number {
    return this.ring.size - this.ring.freeRequests();
  }

  /** Ends the ring grants and frees the pages (after the backend has unmapped). */
  release(): void {
    this.ring.counters.unpublish();
    for (const ref of this.keys.ringRefs) this._hc.grant.endAccess(ref);
    this._hc.evtchn.close(this.keys.port);
    this._hc.memory.freePages(this._ringAddr, this._pages);
  }
}

/** Bytes of one data page, re-exported for programs that size payloads. */
export const IO_PAGE = PAGE_SIZE;
