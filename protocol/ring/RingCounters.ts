/**
 * Per-ring-end counters, kept as plain fields so counting costs one add on the fast path.
 * Published to monitors by whoever owns the ring end (they are not shared memory themselves).
 */
export class RingCounters {
  /** Requests produced (front) or consumed (back). */
  requests = 0;
  /** Responses consumed (front) or produced (back). */
  responses = 0;
  /** Pushes whose peer asked to be notified. */
  notifies = 0;
  /** Pushes whose notification was suppressed by the peer's event index. */
  suppressed = 0;
  /** Attempts to produce into a full ring. */
  fullStalls = 0;
  /** Number of non-empty batches consumed and their total size (batch size = sum / batches). */
  batches = 0;
  /** Requests consumed in those batches. */
  batchedItems = 0;

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
