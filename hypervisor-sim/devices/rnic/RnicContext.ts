/**
 * One NIC as attached in one thread: views of its shared state (BAR 0 and `dev`), its IOMMU
 * context, the host fabric, and thread-private caches and scratch space. Every engine function
 * takes one of these; the responder side of a WR runs on the PEER's context (fabric.get(port)),
 * so each NIC's caches and DMA resolver are its own even when one thread runs both ends.
 *
 * Nothing here is allocated per request: decode targets, DMA refs, the private WQE copy and the
 * work-completion record are built once; queue and CQ views are resolved once per (object
 * epoch, IOMMU generation) and reused.
 */

import { emptyWc, type Wc } from '../../../protocol/rdma/Verbs.js';
import {
  emptyRecvWqe,
  emptySendWqe,
  MAX_RECV_SGE,
  MAX_SEND_SGE,
  RECV_WQE_WORDS,
  type RecvWqe,
  SEND_WQE_WORDS,
  type SendWqe,
} from '../../../protocol/rdma/Wqe.js';
import { type DmaRef, type DmaResolver, emptyDmaRef } from '../../iommu/DmaResolver.js';
import type { Segments } from './DataMover.js';
import { DevLayout, METRICS_BYTE_OFFSET, MetricSlot } from './DevLayout.js';
import type { RnicFabric } from './RnicFabric.js';

/** Sizes and identity of a NIC (RnicConfig with every default filled in). */
export interface RnicSizes {
  readonly name: string;
  readonly portId: number;
  readonly maxQp: number;
  readonly maxCq: number;
  readonly maxMr: number;
  readonly maxQpWr: number;
  readonly maxCqe: number;
}

/** A cached DMA view of one queue or CQ ring, valid for one (epoch, generation). */
export interface QueueView {
  readonly ref: DmaRef;
  /** Object epoch it was resolved for; -1 = never. */
  epoch: number;
  /** IOMMU generation read before resolving. */
  gen: number;
  /** The CQ ring as its own Int32Array (CQ views only; produceCqe indexes from the header). */
  ring: Int32Array | null;
}

function views(n: number): QueueView[] {
  const a: QueueView[] = [];
  for (let i = 0; i < n; i++) a.push({ ref: emptyDmaRef(), epoch: -1, gen: -1, ring: null });
  return a;
}

/** Per-thread state of one NIC (see the file comment). */
export class RnicCtx {
  readonly sizes: RnicSizes;
  /** BAR 0 as words (registers, command mailbox, doorbells). */
  readonly bar: Int32Array;
  /** Device memory as words (DevLayout). */
  readonly dev: Int32Array;
  /** Metrics counters (Float64, inside `dev`). */
  readonly counters: Float64Array;
  readonly layout: DevLayout;
  readonly dma: DmaResolver;
  readonly fabric: RnicFabric;

  /** Cached send-queue, receive-queue and CQ views, indexed by qpn / cqn. */
  readonly sqViews: QueueView[];
  readonly rqViews: QueueView[];
  readonly cqViews: QueueView[];

  /** Private copy of the send WQE being executed (XSA-155: read from the queue once). */
  readonly wqeWords = new Int32Array(SEND_WQE_WORDS);
  /** The same copy as bytes: the inline payload is read from here. */
  readonly wqeBytes: Uint8Array;
  readonly swqe: SendWqe = emptySendWqe();
  /** Private copy of a receive WQE (responder side). */
  readonly rwqeWords = new Int32Array(RECV_WQE_WORDS);
  readonly rwqe: RecvWqe = emptyRecvWqe();
  /** Completion record reused for every CQE. */
  readonly wc: Wc = emptyWc();
  /**
   * Local segments of the WR being executed (this NIC's SGEs, translated to IOVAs), and the
   * responder-side segments (the peer's IOVAs; `rem.dma` is set to the peer's resolver per WR).
   */
  readonly loc: Segments;
  readonly rem: Segments;
  /** Payload bytes of the WR being executed. */
  total = 0;
  /** Private copy of the command arguments (read from CMD_IN once). */
  readonly cmdIn = new Int32Array(32);
  /** Results of the command being executed. */
  readonly cmdOut = new Int32Array(32);

  constructor(sizes: RnicSizes, bar: SharedArrayBuffer, dev: SharedArrayBuffer, dma: DmaResolver, fabric: RnicFabric) {
    this.sizes = sizes;
    this.bar = new Int32Array(bar);
    this.dev = new Int32Array(dev);
    this.counters = new Float64Array(dev, METRICS_BYTE_OFFSET, MetricSlot.COUNT);
    this.layout = new DevLayout(sizes);
    this.dma = dma;
    this.fabric = fabric;
    this.sqViews = views(sizes.maxQp);
    this.rqViews = views(sizes.maxQp);
    this.cqViews = views(sizes.maxCq);
    this.wqeBytes = new Uint8Array(this.wqeWords.buffer);
    this.loc = {
      dma,
      iova: new Array(MAX_SEND_SGE).fill(0),
      len: new Array(MAX_SEND_SGE).fill(0),
      count: 0,
      ref: emptyDmaRef(),
    };
    this.rem = {
      dma,
      iova: new Array(MAX_RECV_SGE).fill(0),
      len: new Array(MAX_RECV_SGE).fill(0),
      count: 0,
      ref: emptyDmaRef(),
    };
  }

  /** Counts one event (caller holds the fabric lock). */
  count(slot: MetricSlot, n = 1): void {
    this.counters[slot] += n;
  }
}
