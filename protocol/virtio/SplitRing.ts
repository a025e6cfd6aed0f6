/**
 * The split virtqueue (VIRTIO 1.2 §2.7, reference §5.1): three areas in guest memory, each
 * written by one side. Offsets are bytes from the start of each area; every field is little
 * endian (pvio runs on little-endian hosts only: `HOST_IS_LITTLE_ENDIAN` is checked where the
 * queue is attached, so the areas can be read through plain typed-array views and `Atomics`).
 *
 * ```
 * descriptor table (16·QS bytes, align 16), written by the driver only
 * offset  size  field   note
 * 16·i+0  8     addr    guest-physical address of the buffer (le64)
 * 16·i+8  4     len     bytes (le32)
 * 16·i+12 2     flags   NEXT=1, WRITE=2 (device-writable), INDIRECT=4 (le16)
 * 16·i+14 2     next    index of the next descriptor when NEXT is set (le16)
 *
 * available ring (6 + 2·QS bytes, align 2), written by the driver only
 * 0       2     flags       NO_INTERRUPT=1 (ignored once EVENT_IDX is negotiated)
 * 2       2     idx         free-running u16: where the driver will put the next head
 * 4+2·i   2     ring[i]     head descriptor index of the i-th chain (i = idx mod QS)
 * 4+2·QS  2     used_event  EVENT_IDX: "interrupt me once used.idx passes this"
 *
 * used ring (6 + 8·QS bytes, align 4), written by the device only
 * 0       2     flags       NO_NOTIFY=1 (ignored once EVENT_IDX is negotiated)
 * 2       2     idx         free-running u16: where the device will put the next element
 * 4+8·i   4     ring[i].id  head index of a consumed chain (le32)
 * 8+8·i   4     ring[i].len bytes the device wrote into the chain's writable part (le32)
 * 4+8·QS  2     avail_event EVENT_IDX: "kick me once avail.idx passes this"
 * ```
 * The event indices sit at the END of the OTHER side's ring (Linux `vring_used_event`): each side
 * writes only its own area. QS is a power of two ≤ 32768, so a u16 free-running index still tells
 * full (idx − last = QS) from empty (0), as Xen's u32 RING_IDX does with its masked slots.
 */

import { pvError } from '../errors.js';

/** VIRTQ_DESC_F_NEXT: the chain goes on at `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** VIRTQ_DESC_F_WRITE: the buffer is device-writable (else device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** VIRTQ_DESC_F_INDIRECT: the buffer is a table of descriptors (VIRTIO_F_INDIRECT_DESC). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to be interrupted (a hint). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** VIRTQ_USED_F_NO_NOTIFY: the device asks not to be kicked (a hint). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Largest queue size of a split virtqueue (a power of two; u16 indices must tell full from empty). */
export const VIRTQ_MAX_SIZE = 32768;
/** Bytes per descriptor. */
export const VIRTQ_DESC_BYTES = 16;
/** Bytes per used element. */
export const VIRTQ_USED_ELEM_BYTES = 8;

/** Byte offsets inside one descriptor. */
export const enum DescOffset {
  ADDR = 0,
  LEN = 8,
  FLAGS = 12,
  NEXT = 14,
}

/** Byte offsets inside the available ring (ring[i] at RING + 2·i, used_event at RING + 2·QS). */
export const enum AvailOffset {
  FLAGS = 0,
  IDX = 2,
  RING = 4,
}

/** Byte offsets inside the used ring (ring[i] at RING + 8·i, avail_event at RING + 8·QS). */
export const enum UsedOffset {
  FLAGS = 0,
  IDX = 2,
  RING = 4,
}

/** Byte offsets inside one used element. */
export const enum UsedElemOffset {
  ID = 0,
  LEN = 4,
}

/** Required alignment of each area (VIRTIO 1.2 §2.7, table "Virtqueue Part Alignment"). */
export const VIRTQ_ALIGN = { desc: 16, avail: 2, used: 4 } as const;

/** True on a little-endian host: the only kind where the typed-array views read the le fields right. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws PV_ERR_VIRTQ_LAYOUT unless `qs` is a power of two in [1, 32768]. */
export function checkQueueSize(qs: number): void {
  if (!Number.isInteger(qs) || qs < 1 || qs > VIRTQ_MAX_SIZE || (qs & (qs - 1)) !== 0) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue size ${qs} is not a power of two in [1, ${VIRTQ_MAX_SIZE}]`);
  }
}

/** Bytes of the descriptor table of a QS-entry queue. */
export function descTableBytes(qs: number): number {
  return VIRTQ_DESC_BYTES * qs;
}

/** Bytes of the available ring, used_event included. */
export function availRingBytes(qs: number): number {
  return 6 + 2 * qs;
}

/** Bytes of the used ring, avail_event included. */
export function usedRingBytes(qs: number): number {
  return 6 + VIRTQ_USED_ELEM_BYTES * qs;
}

/** Byte offset of `used_event` inside the available ring. */
export function usedEventOffset(qs: number): number {
  return AvailOffset.RING + 2 * qs;
}

/** Byte offset of `avail_event` inside the used ring. */
export function availEventOffset(qs: number): number {
  return UsedOffset.RING + VIRTQ_USED_ELEM_BYTES * qs;
}

/** Where the three areas of one queue sit, as byte offsets from the start of one contiguous block. */
export interface SplitLayout {
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** Bytes of the whole block (the used ring's end). */
  readonly bytes: number;
}

/**
 * The contiguous placement pvio's drivers use: descriptor table at 0, available ring right after
 * it, used ring at the next 4-byte boundary (virtio 1.x needs only the per-area alignment; the
 * legacy 4096-byte alignment of the used ring is not required).
 */
export function splitLayout(qs: number): SplitLayout {
  checkQueueSize(qs);
  const avail = descTableBytes(qs);
  const used = (avail + availRingBytes(qs) + VIRTQ_ALIGN.used - 1) & ~(VIRTQ_ALIGN.used - 1);
  return { size: qs, desc: 0, avail, used, bytes: used + usedRingBytes(qs) };
}

/**
 * `vring_need_event(event_idx, new_idx, old_idx)`: true iff `event` lies in [old, new) modulo
 * 2^16, i.e. the other side asked to be notified at an index this batch of publishes crossed.
 * (Xen's RING_PUSH_*_AND_CHECK_NOTIFY is the same test with event = req_event − 1.)
 */
export function vringNeedEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
