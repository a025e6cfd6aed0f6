/**
 * Driver-side ring builder shared by tests and benches: lays out a shared ring in a
 * `SharedArrayBuffer` the way a frontend driver does (`SHARED_RING_INIT`, then
 * `FRONT_RING_INIT`), and attaches a backend over the same memory (`BACK_RING_ATTACH`).
 *
 * ```
 * SharedArrayBuffer
 * 0              ringOffset                      ringOffset + ringBytes(order)     byteLength
 * | extra before |  header (64 B) | slots ...    | extra after (doorbells, data) |
 * ```
 * The ring part is exactly 2^order pages, as a granted ring would be. Space outside it is for the
 * caller (doorbell words, payload pages) so one buffer can be handed to a worker.
 *
 * In a worker, rebuild the ends with `MockRing.attach(sab, opts)` (it does not re-initialise).
 */

import { BackRing } from '../../protocol/ring/BackRing.js';
import { FrontRing } from '../../protocol/ring/FrontRing.js';
import {
  encodeIoRequest,
  encodeIoResponse,
  IO_SLOT_SIZE,
  type IoRequest,
  type IoResponse,
} from '../../protocol/ring/IoSlot.js';
import { initSharedRing, ringBytes } from '../../protocol/ring/Layout.js';

/** Where the ring lives and how it is shaped. Plain data, so it can go through `workerData`. */
export interface MockRingLayout {
  /** Ring size in pages, as log2 (0 = one 4 KiB page). Default 0. */
  readonly order: number;
  /** Slot size in bytes (a multiple of 4). Default `IO_SLOT_SIZE` (64). */
  readonly slotSize: number;
  /** Byte offset of the ring inside the buffer (a multiple of 4). Default 0. */
  readonly ringOffset: number;
}

/** Options for `MockRing.create`. */
export interface MockRingOptions extends Partial<MockRingLayout> {
  /** Initial value of every index (events start at `start + 1`); near 2^32 to test wrap-around. */
  readonly start?: number;
  /** Extra bytes after the ring for the caller (doorbells, payload). Default 0. */
  readonly extraBytes?: number;
}

/** A ring laid out in one `SharedArrayBuffer`, with both ends attached in this thread. */
export class MockRing {
  /** The whole buffer (ring + caller's extra space). */
  readonly sab: SharedArrayBuffer;
  /** Shape and place of the ring; pass it with `sab` to a worker. */
  readonly layout: MockRingLayout;
  /** The ring bytes only (header + slots), 2^order pages. */
  readonly view: Uint8Array;
  /** The front (guest) end. */
  readonly front: FrontRing;
  /** The back (driver domain) end. */
  readonly back: BackRing;

  private constructor(sab: SharedArrayBuffer, layout: MockRingLayout, front: FrontRing, back: BackRing) {
    this.sab = sab;
    this.layout = layout;
    this.view = MockRing.ringView(sab, layout);
    this.front = front;
    this.back = back;
  }

  /** Allocates a buffer, initialises the ring as a frontend would, and attaches both ends. */
  static create(opts: MockRingOptions = {}): MockRing {
    const layout: MockRingLayout = {
      order: opts.order ?? 0,
      slotSize: opts.slotSize ?? IO_SLOT_SIZE,
      ringOffset: opts.ringOffset ?? 0,
    };
    const sab = new SharedArrayBuffer(layout.ringOffset + ringBytes(layout.order) + (opts.extraBytes ?? 0));
    initSharedRing(MockRing.ringView(sab, layout), opts.start ?? 0);
    return MockRing.attach(sab, layout);
  }

  /** Attaches both ends to a ring that is already initialised (e.g. in a worker). */
  static attach(sab: SharedArrayBuffer, layout: MockRingLayout): MockRing {
    const view = MockRing.ringView(sab, layout);
    return new MockRing(sab, layout, new FrontRing(view, layout.slotSize), new BackRing(view, layout.slotSize));
  }

  /** The ring bytes of `sab` described by `layout`. */
  static ringView(sab: SharedArrayBuffer, layout: MockRingLayout): Uint8Array {
    return new Uint8Array(sab, layout.ringOffset, ringBytes(layout.order));
  }

  /** Byte offset of the first byte after the ring (start of the caller's extra space). */
  get extraOffset(): number {
    return this.layout.ringOffset + this.view.byteLength;
  }

  /** The shared header and slots as Int32 words (what a hostile peer could scribble on). */
  get words(): Int32Array {
    return this.front.words;
  }
}

/** Writes one I/O request into the next free slot of `front` and commits it (not yet published). */
export function produceIoRequest(front: FrontRing, req: IoRequest): void {
  encodeIoRequest(front.words, front.nextRequestSlot(), req);
  front.commitRequest();
}

/** Writes one I/O response into the next response slot of `back` and commits it (not yet published). */
export function produceIoResponse(back: BackRing, rsp: IoResponse): void {
  encodeIoResponse(back.words, back.nextResponseSlot(), rsp);
  back.commitResponse();
}

/** An all-zero request with the given 32-bit id, a handy default for tests. */
export function ioRequest(id: number, fields: Partial<IoRequest> = {}): IoRequest {
  return { idLo: id >>> 0, idHi: 0, op: 1, nseg: 0, gref: 0, offset: 0, length: 0, checksum: 0, ...fields };
}
