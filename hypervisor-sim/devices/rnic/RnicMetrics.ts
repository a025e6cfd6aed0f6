/**
 * The NIC's counters. They live in the `dev` buffer (DevLayout: a Float64 block written under
 * the fabric lock, and the DOORBELLS word written with Atomics.add by doorbell writers), so the
 * figures are the whole device's, whichever threads ran it. Reads are plain snapshots.
 *
 * Example (`snapshot()` after a 1 KiB RDMA WRITE, signaled):
 * ```json
 * { "wrs": 1, "bytes": 1024, "cqes": 1, "faults": 0, "doorbells": 1, "rnrRetries": 0,
 *   "errors": 0, "flushed": 0, "commands": 14 }
 * ```
 */

import { DevWord, METRICS_BYTE_OFFSET, MetricSlot } from './DevLayout.js';

/** Plain counters of one NIC. */
export interface RnicMetrics {
  /** Send-queue WRs executed (successful or not; flushed ones are in `flushed`). */
  readonly wrs: number;
  /** Payload bytes moved by WRs this NIC requested. */
  readonly bytes: number;
  /** CQEs written into this NIC's CQs. */
  readonly cqes: number;
  /** DMA faults (queue, CQ ring or payload not reachable through the IOMMU). */
  readonly faults: number;
  /** Doorbell register writes. */
  readonly doorbells: number;
  /** RNR waits (a SEND or WRITE_WITH_IMM found no receive posted). */
  readonly rnrRetries: number;
  /** Error completions (requester and responder side). */
  readonly errors: number;
  /** WRs completed with WR_FLUSH_ERR. */
  readonly flushed: number;
  /** Mailbox commands executed. */
  readonly commands: number;
  /** All counters as a plain object (JSON-ready). */
  snapshot(): Record<string, number>;
}

/** RnicMetrics over a NIC's `dev` buffer. */
export class SharedRnicMetrics implements RnicMetrics {
  private readonly _f: Float64Array;
  private readonly _w: Int32Array;

  constructor(dev: SharedArrayBuffer) {
    this._f = new Float64Array(dev, METRICS_BYTE_OFFSET, MetricSlot.COUNT);
    this._w = new Int32Array(dev);
  }

  get wrs(): number {
    return this._f[MetricSlot.WRS];
  }
  get bytes(): number {
    return this._f[MetricSlot.BYTES];
  }
  get cqes(): number {
    return this._f[MetricSlot.CQES];
  }
  get faults(): number {
    return this._f[MetricSlot.FAULTS];
  }
  get doorbells(): number {
    // ORDERING: seq-cst load of a counter doorbell writers bump with Atomics.add; a snapshot.
    return Atomics.load(this._w, DevWord.DOORBELLS) >>> 0;
  }
  get rnrRetries(): number {
    return this._f[MetricSlot.RNR_RETRIES];
  }
  get errors(): number {
    return this._f[MetricSlot.ERRORS];
  }
  get flushed(): number {
    return this._f[MetricSlot.FLUSHED];
  }
  get commands(): number {
    return this._f[MetricSlot.COMMANDS];
  }

  snapshot(): Record<string, number> {
    return {
      wrs: this.wrs,
      bytes: this.bytes,
      cqes: this.cqes,
      faults: this.faults,
      doorbells: this.doorbells,
      rnrRetries: this.rnrRetries,
      errors: this.errors,
      flushed: this.flushed,
      commands: this.commands,
    };
  }
}
