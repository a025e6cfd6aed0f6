/**
 * Serves one virtqueue of a virtio-rdma device with a vrdma RequestHandler (CtrlHandler or
 * DataHandler), so the two transports run the very same command and WR validation. Per chain:
 *  - the chain was walked and validated by the queue (SplitDevice / PackedDevice: addresses
 *    inside guest memory, TTL = queue size, no loops, direction flags, overflow-safe sums);
 *  - it must be exactly one slot readable and at least one slot writable, else it is used with
 *    length 0 (the driver reads that as PV_ERR_BAD_REQUEST) and counted;
 *  - the readable slot is copied ONCE into private memory (XSA-155's rule: the handler never
 *    sees guest-shared bytes), the handler writes a private response slot, and that is copied
 *    into the writable part;
 *  - a handler that defers (a full device queue) keeps the chain: nothing more is popped from
 *    this queue until the same private copy is answered (per-queue order is kept).
 * A queue the guest breaks (a bad descriptor, avail.idx jumping) throws in `pop`: serving stops
 * (`broken`), and the mmio device reports DEVICE_NEEDS_RESET at its next service. Used buffers
 * are published after each batch and the interrupt is raised only when the driver asked for it
 * (EVENT_IDX used_event, or no NO_INTERRUPT flag).
 */

import type { ErrorCode } from '../../../protocol/errors.js';
import { PvError } from '../../../protocol/errors.js';
import { RingCounters } from '../../../protocol/ring/RingCounters.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { RequestHandler } from '../../ring/RingServer.js';
import type { IovecList } from '../../virtio/DescChain.js';
import type { PackedDevice } from '../../virtio/PackedDevice.js';
import type { SplitDevice } from '../../virtio/SplitDevice.js';

/** One served queue; see the file comment. */
export class VirtqServer {
  /** The queue's counters (see the file comment). */
  readonly counters = new RingCounters();
  /** Chains of the wrong shape, used with length 0 (also counted as requests and responses). */
  malformed = 0;
  private readonly _list: IovecList;
  private readonly _req: Int32Array;
  private readonly _reqBytes: Uint8Array;
  private readonly _rsp: Int32Array;
  private readonly _rspBytes: Uint8Array;
  /** Head of a chain whose request the handler deferred (its copy is still in `_req`), or −1. */
  private _deferred = -1;
  private _brokenBy: ErrorCode | undefined;

  constructor(
    private readonly _vq: SplitDevice | PackedDevice,
    private readonly _handler: RequestHandler,
    private readonly _slotBytes: number,
  ) {
    this._list = _vq.newIovecList();
    this._req = new Int32Array(_slotBytes >> 2);
    this._reqBytes = new Uint8Array(this._req.buffer);
    this._rsp = new Int32Array(_slotBytes >> 2);
    this._rspBytes = new Uint8Array(this._rsp.buffer);
  }

  /** The queue served. */
  get queue(): SplitDevice | PackedDevice {
    return this._vq;
  }

  /** Why serving stopped (the guest broke the queue), or undefined. */
  get brokenBy(): ErrorCode | undefined {
    return this._brokenBy;
  }

  /** True while a deferred request waits for room in the device. */
  get stalled(): boolean {
    return this._deferred >= 0;
  }

  /**
   * Serves up to `max` chains; returns how many were answered and whether the driver wants an
   * interrupt for them (the caller raises it). Never throws on guest input.
   */
  serve(max: number): { done: number; interrupt: boolean } {
    if (this._brokenBy !== undefined) return { done: 0, interrupt: false };
    const vq = this._vq;
    let done = 0;
    let prev = Stage.HOME;
    let entered = false;
    try {
      while (done < max) {
        let head = this._deferred;
        if (head < 0) {
          head = vq.pop(this._list);
          if (head < 0) break;
          if (!entered) {
            prev = stages.enter(Stage.RING);
            entered = true;
          }
          this.counters.requests++;
          if (!this._copyIn()) {
            this.malformed++;
            vq.addUsed(head, 0);
            done++;
            continue;
          }
        }
        stages.enter(prev);
        const ok = this._handler(this._req, this._rsp, 0) !== false;
        stages.enter(Stage.RING);
        entered = true;
        if (!ok) {
          this.counters.fullStalls++;
          this._deferred = head;
          break;
        }
        this._deferred = -1;
        // INVARIANT: _copyIn checked the chain has at least one slot writable.
        const n = this._list.write(0, this._rspBytes, 0, this._slotBytes);
        vq.addUsed(head, n);
        done++;
      }
      if (done === 0) return { done, interrupt: false };
      const interrupt = vq.publishUsed();
      const c = this.counters;
      c.responses += done;
      c.batches++;
      c.batchedItems += done;
      if (interrupt) {
        c.notifies++;
      } else {
        c.suppressed++;
      }
      return { done, interrupt };
    } catch (err) {
      // pop threw: the guest broke the queue. addUsed/publishUsed throw only on a broken queue.
      this._brokenBy = err instanceof PvError ? err.code : 'PV_ERR_VIRTIO_NEEDS_RESET';
      return { done, interrupt: false };
    } finally {
      if (entered) stages.enter(prev);
    }
  }

  /** Copies the one readable slot into private memory; false if the chain has the wrong shape. */
  private _copyIn(): boolean {
    const l = this._list;
    if (l.readableBytes !== this._slotBytes || l.writableBytes < this._slotBytes) return false;
    this._rsp.fill(0);
    return l.read(0, this._reqBytes, 0, this._slotBytes) === this._slotBytes;
  }
}
