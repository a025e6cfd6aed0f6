/**
 * Where a virtio-rdma device's memory sits in the guest. The register window is a page of its
 * own, reserved at the first probe and kept for the device's life (the device model serves it
 * until unplug, so it is never handed back to the allocator: an MMIO window is not RAM). The
 * queues and slots are one block of whole pages allocated at each probe and freed after the
 * reset that ends a session, laid out as (offsets from the block's base, each area page-aligned
 * so the device's per-area alignment rules hold whatever the queue format):
 *
 * ```
 * area         bytes                               holds
 * ctrl queue   split/packed layout of 4 entries    control virtqueue (SplitRing.ts / PackedRing.ts)
 * data queue   split/packed layout of 256 entries  data virtqueue
 * ctrl slots   2 × (1 KiB request + 1 KiB response)
 * data slots   128 × (128 B request + 128 B response)
 * ```
 * Slot pair i of a queue: request at `base + i · 2 · slot`, its response right after it.
 */

import { PV_CTRL_SLOT_SIZE, PV_DATA_SLOT_SIZE } from '../../../protocol/rdma/pv/PvConstants.js';
import {
  VRDMA_CHAIN_DESCS,
  VRDMA_CTRL_QUEUE_SIZE,
  VRDMA_DATA_QUEUE_SIZE,
} from '../../../protocol/rdma/virtio/VirtioRdma.js';
import { type GuestPhysAddr, guestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { packedLayout } from '../../../protocol/virtio/PackedRing.js';
import { splitLayout } from '../../../protocol/virtio/SplitRing.js';

const pageUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/** The areas of one device's block; see the file comment. */
export class VirtioLayout {
  /** Pages of the block (the window not included). */
  readonly pages: number;
  readonly window: GuestPhysAddr;
  readonly ctrlQueue: GuestPhysAddr;
  readonly dataQueue: GuestPhysAddr;
  /** Request slots in flight at most on each queue. */
  readonly ctrlSlots = VRDMA_CTRL_QUEUE_SIZE / VRDMA_CHAIN_DESCS;
  readonly dataSlots = VRDMA_DATA_QUEUE_SIZE / VRDMA_CHAIN_DESCS;
  private readonly _ctrlArea: number;
  private readonly _dataArea: number;

  /** The window page at `window`, the block at `base` (both page-aligned), split or packed queues. */
  constructor(window: number, base: number, packed: boolean) {
    const qBytes = (qs: number): number => (packed ? packedLayout(qs).bytes : splitLayout(qs).bytes);
    this.window = guestPhysAddr(window);
    let at = base;
    this.ctrlQueue = guestPhysAddr(at);
    at += pageUp(qBytes(VRDMA_CTRL_QUEUE_SIZE));
    this.dataQueue = guestPhysAddr(at);
    at += pageUp(qBytes(VRDMA_DATA_QUEUE_SIZE));
    this._ctrlArea = at;
    at += pageUp(this.ctrlSlots * 2 * PV_CTRL_SLOT_SIZE);
    this._dataArea = at;
    at += pageUp(this.dataSlots * 2 * PV_DATA_SLOT_SIZE);
    this.pages = (at - base) / PAGE_SIZE;
  }

  /** Pages of the block, to allocate it before it is placed. */
  static pagesFor(packed: boolean): number {
    return new VirtioLayout(0, 0, packed).pages;
  }

  ctrlReq(i: number): GuestPhysAddr {
    return guestPhysAddr(this._ctrlArea + i * 2 * PV_CTRL_SLOT_SIZE);
  }

  ctrlRsp(i: number): GuestPhysAddr {
    return guestPhysAddr(this._ctrlArea + i * 2 * PV_CTRL_SLOT_SIZE + PV_CTRL_SLOT_SIZE);
  }

  dataReq(i: number): GuestPhysAddr {
    return guestPhysAddr(this._dataArea + i * 2 * PV_DATA_SLOT_SIZE);
  }

  dataRsp(i: number): GuestPhysAddr {
    return guestPhysAddr(this._dataArea + i * 2 * PV_DATA_SLOT_SIZE + PV_DATA_SLOT_SIZE);
  }
}
