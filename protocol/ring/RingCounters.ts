/**
 * Per-ring-end counters. They live in a Float64Array (`values`, RingCounter order) so counting
 * costs one indexed add on the fast path. The array is private to the ring end by default; when
 * the hypervisor offers a monitor (Hypercalls.monitor), `publish()` re-points it at a record of
 * the host's monitor buffer (protocol/monitor/MonitorLayout.ts), copying what was counted so
 * far, so a monitor on another thread reads the same figures without asking anyone.
 * `unpublish()` copies them back into a private array and frees the record (ring torn down).
 *
 * Readers keep using the named fields (`requests`, `responses`, …): they are accessors over
 * `values`, which V8 inlines.
 */

import { pvError } from '../errors.js';
import type { MonitorOps, MonitorRingRecord } from '../Hypercalls.js';
import type { DomId } from '../Types.js';

/** Index of each counter in `RingCounters.values` (and in a monitor ring record). */
export const enum RingCounter {
  REQUESTS = 0,
  RESPONSES = 1,
  NOTIFIES = 2,
  SUPPRESSED = 3,
  FULL_STALLS = 4,
  BATCHES = 5,
  BATCHED_ITEMS = 6,
  COUNT = 7,
}

/** Counters of one ring end; see the file comment. */
export class RingCounters {
  /**
   * The counters, in RingCounter order: private, or a monitor record's view while published.
   * Writers index it directly (`values[RingCounter.REQUESTS]++`); it is re-pointed by
   * `attach`/`detach`, so never keep a reference to it.
   */
  values: Float64Array = new Float64Array(RingCounter.COUNT);
  private _record: MonitorRingRecord | undefined;

  /** Requests produced (front) or consumed (back). */
  get requests(): number {
    return this.values[RingCounter.REQUESTS];
  }
  set requests(n: number) {
    this.values[RingCounter.REQUESTS] = n;
  }
  /** Responses consumed (front) or produced (back). */
  get responses(): number {
    return this.values[RingCounter.RESPONSES];
  }
  set responses(n: number) {
    this.values[RingCounter.RESPONSES] = n;
  }
  /** Pushes whose peer asked to be notified. */
  get notifies(): number {
    return this.values[RingCounter.NOTIFIES];
  }
  set notifies(n: number) {
    this.values[RingCounter.NOTIFIES] = n;
  }
  /** Pushes whose notification was suppressed by the peer's event index. */
  get suppressed(): number {
    return this.values[RingCounter.SUPPRESSED];
  }
  set suppressed(n: number) {
    this.values[RingCounter.SUPPRESSED] = n;
  }
  /** Attempts to produce into a full ring. */
  get fullStalls(): number {
    return this.values[RingCounter.FULL_STALLS];
  }
  set fullStalls(n: number) {
    this.values[RingCounter.FULL_STALLS] = n;
  }
  /** Number of non-empty batches consumed (batch size = batchedItems / batches). */
  get batches(): number {
    return this.values[RingCounter.BATCHES];
  }
  set batches(n: number) {
    this.values[RingCounter.BATCHES] = n;
  }
  /** Requests consumed in those batches. */
  get batchedItems(): number {
    return this.values[RingCounter.BATCHED_ITEMS];
  }
  set batchedItems(n: number) {
    this.values[RingCounter.BATCHED_ITEMS] = n;
  }

  /** True while the counters live in a monitor record. */
  get published(): boolean {
    return this._record !== undefined;
  }

  /**
   * Counts into `view` (RingCounter.COUNT Float64 slots) from now on, carrying over what was
   * counted so far. The caller's thread must be the only writer of `view`.
   */
  attach(view: Float64Array): void {
    if (view.length < RingCounter.COUNT) {
      throw pvError('PV_ERR_INVALID_ARG', `counter view of ${view.length} slots, need ${RingCounter.COUNT}`);
    }
    view.set(this.values.subarray(0, RingCounter.COUNT));
    this.values = view;
  }

  /** Counts into a private array again, keeping the figures (the shared view is no longer written). */
  detach(): void {
    this.values = this.values.slice(0, RingCounter.COUNT);
  }

  /**
   * Publishes this ring end to the hypervisor's monitor, if there is one and it has a free
   * record: true when published. A second call while published does nothing.
   */
  publish(monitor: MonitorOps | undefined, kind: string, peer: DomId, end: 'front' | 'back'): boolean {
    if (this._record !== undefined) return true;
    const record = monitor?.ringRecord(kind, peer, end);
    if (record === undefined) return false;
    this.attach(record.counters);
    this._record = record;
    return true;
  }

  /** Stops publishing (the ring is torn down): figures go back to a private array, the record is freed. */
  unpublish(): void {
    const record = this._record;
    if (record === undefined) return;
    this._record = undefined;
    this.detach();
    record.release();
  }

  /** A plain-object snapshot. */
  snapshot(): Record<string, number> {
    return {
      requests: this.requests,
      responses: this.responses,
      notifies: this.notifies,
      suppressed: this.suppressed,
      fullStalls: this.fullStalls,
      batches: this.batches,
      batchedItems: this.batchedItems,
    };
  }
}
