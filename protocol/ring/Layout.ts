/**
 * Shared ring layout (Xen `io/ring.h`, `DEFINE_RING_TYPES`).
 *
 * ```
 * offset  size   field       writer   reader   note
 * 0       4      req_prod    front    back     free-running u32, published with Atomics.store
 * 4       4      req_event   back     front    "notify me when req_prod reaches this"
 * 8       4      rsp_prod    back     front    free-running u32, published with Atomics.store
 * 12      4      rsp_event   front    back     "notify me when rsp_prod reaches this"
 * 16      48     pad         front    -        zeroed at init (Xen: pvt + __pad[44])
 * 64      N*E    slots       both     both     request and its response share a slot
 * ```
 * N = slots: (bytes − 64) / E rounded down to a power of two (`__CONST_RING_SIZE`); E = slot
 * size, a multiple of 4 so a slot is a whole number of Int32 words. A ring spans 2^order pages.
 * Full/empty invariant: the front never has more than N requests outstanding,
 * i.e. `(req_prod − rsp_cons) >>> 0 ≤ N`; `req_prod == rsp_prod` when idle.
 */

import { pvError } from '../errors.js';
import { PAGE_SIZE } from '../Types.js';

/** Byte offsets of the ring header fields. */
export const enum RingHeader {
  REQ_PROD = 0,
  REQ_EVENT = 4,
  RSP_PROD = 8,
  RSP_EVENT = 12,
  PAD = 16,
  /** Header size in bytes; slots start here. */
  SIZE = 64,
}

/** Int32 word indices of the header fields (byte offset / 4), for `Atomics`. */
export const enum RingWord {
  REQ_PROD = 0,
  REQ_EVENT = 1,
  RSP_PROD = 2,
  RSP_EVENT = 3,
  /** First word of the slot array. */
  SLOTS = 16,
}

/** Largest ring order accepted (Linux `XENBUS_MAX_RING_GRANT_ORDER`). */
export const MAX_RING_ORDER = 4;

/** Number of slots of size `slotSize` that fit in `bytes`, rounded down to a power of two. */
export function ringSlots(bytes: number, slotSize: number): number {
  if (!Number.isInteger(slotSize) || slotSize < 4 || slotSize % 4 !== 0) {
    throw pvError('PV_ERR_RING_LAYOUT', `slot size must be a positive multiple of 4, got ${slotSize}`);
  }
  const raw = Math.floor((bytes - RingHeader.SIZE) / slotSize);
  if (raw < 1) throw pvError('PV_ERR_RING_LAYOUT', `${bytes} bytes hold no ${slotSize}-byte slot`);
  // __RD32: round down to a power of two.
  return 2 ** Math.floor(Math.log2(raw));
}

/** Bytes of a ring of 2^order pages. */
export function ringBytes(order: number): number {
  if (!Number.isInteger(order) || order < 0 || order > MAX_RING_ORDER) {
    throw pvError('PV_ERR_RING_LAYOUT', `ring order must be in [0, ${MAX_RING_ORDER}], got ${order}`);
  }
  return PAGE_SIZE << order;
}

/** The Int32 view over a ring's bytes; the view must start 4-byte aligned. */
export function ringWords(view: Uint8Array): Int32Array {
  if (view.byteOffset % 4 !== 0 || view.byteLength % 4 !== 0) {
    throw pvError('PV_ERR_RING_LAYOUT', 'ring memory must be 4-byte aligned');
  }
  return new Int32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}

/**
 * `SHARED_RING_INIT`: only the front initialises the shared page. Indices start at `start`
 * (0 in Xen; tests start near 2^32 to exercise wrap-around) and events at `start + 1`, so the
 * very first message produced in each direction notifies.
 */
export function initSharedRing(view: Uint8Array, start = 0): void {
  const words = ringWords(view);
  // Zero the whole header including the pad (no stale bytes reach the peer).
  words.fill(0, 0, RingWord.SLOTS);
  const s = start >>> 0;
  const ev = (s + 1) | 0;
  // ORDERING: plain init before the ring is advertised; the store publishes the ring-ref later.
  Atomics.store(words, RingWord.REQ_PROD, s | 0);
  Atomics.store(words, RingWord.RSP_PROD, s | 0);
  Atomics.store(words, RingWord.REQ_EVENT, ev);
  Atomics.store(words, RingWord.RSP_EVENT, ev);
}

/**
 * `RING_PUSH_*_AND_CHECK_NOTIFY` test: notify iff the peer's event index lies in (old, new].
 * All arithmetic is u32 (`>>> 0`), so it is correct across wrap-around.
 */
export function needsNotify(newProd: number, oldProd: number, event: number): boolean {
  return (newProd - event) >>> 0 < (newProd - oldProd) >>> 0;
}
