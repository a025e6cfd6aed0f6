/**
 * The packed virtqueue (VIRTIO 1.2 §2.8, reference §5.2, `VIRTIO_F_RING_PACKED`): one descriptor
 * ring that both sides write, plus two 4-byte event suppression structures. Every field is little
 * endian (pvio runs on little-endian hosts only, see `HOST_IS_LITTLE_ENDIAN` in SplitRing.ts).
 *
 * ```
 * descriptor ring (16·QS bytes, align 16), written by the driver (available) and the device (used)
 * offset  size  field   note
 * 16·i+0  8     addr    guest-physical address of the buffer (le64); the device leaves it alone
 * 16·i+8  4     len     bytes: the buffer's length (driver), or the bytes written (device) (le32)
 * 16·i+12 2     id      buffer id: the driver's cookie, echoed by the device (le16)
 * 16·i+14 2     flags   NEXT=1, WRITE=2, INDIRECT=4, AVAIL=1<<7, USED=1<<15 (le16)
 *
 * event suppression structure (4 bytes, align 4); the driver area is written by the driver
 * (it tells the device when to interrupt), the device area by the device (when to kick)
 * 0       2     desc    bits 0..14 desc_event_off: ring position to be notified at
 *                       bit 15     desc_event_wrap: the wrap counter that position belongs to
 * 2       2     flags   bits 0..1: ENABLE=0, DISABLE=1, DESC=2 (DESC needs VIRTIO_F_EVENT_IDX)
 * ```
 * Ownership is in the flags word, not in an index: the driver makes a slot available by writing
 * AVAIL = its wrap counter and USED = the inverse (`availFlags`); the device marks it used by
 * writing AVAIL = USED = its wrap counter (`usedFlags`). Both wrap counters start at 1 and flip
 * each time that side's position passes the end of the ring. The flags word must therefore be
 * stored last (after addr, len, id) by its writer and loaded first by its reader; it is the
 * only word accessed through `Atomics` — the packed form of the split ring's published index.
 *
 * QS is any integer in [1, 2^15] (it need not be a power of two: no free-running index is
 * masked); 15 bits of desc_event_off are enough for any position.
 */

import { pvError } from '../errors.js';
import { vringNeedEvent } from './SplitRing.js';

/** Chain continues in the next slot (there is no `next` field: chains are contiguous). */
export const VIRTQ_PACKED_DESC_F_NEXT = 1;
/** Device-writable buffer. */
export const VIRTQ_PACKED_DESC_F_WRITE = 2;
/** The buffer is a table of descriptors (VIRTIO_F_INDIRECT_DESC). */
export const VIRTQ_PACKED_DESC_F_INDIRECT = 4;
/** Bit 7: the driver's wrap counter when it made the slot available. */
export const VIRTQ_PACKED_DESC_F_AVAIL = 1 << 7;
/** Bit 15: the device's wrap counter when it marked the slot used (inverted by the driver). */
export const VIRTQ_PACKED_DESC_F_USED = 1 << 15;

/** Event suppression flags: notify on every event. */
export const VRING_PACKED_EVENT_FLAG_ENABLE = 0;
/** Event suppression flags: never notify. */
export const VRING_PACKED_EVENT_FLAG_DISABLE = 1;
/** Event suppression flags: notify when `desc` (offset + wrap) is passed; needs VIRTIO_F_EVENT_IDX. */
export const VRING_PACKED_EVENT_FLAG_DESC = 2;
/** Bit of the event `desc` word that holds the wrap counter. */
export const VRING_PACKED_EVENT_F_WRAP_CTR = 15;
/** Mask of desc_event_off inside the event `desc` word. */
export const VRING_PACKED_EVENT_OFF_MASK = 0x7fff;

/** Largest packed queue (2^15: desc_event_off has 15 bits). */
export const VIRTQ_PACKED_MAX_SIZE = 32768;
/** Bytes per packed descriptor. */
export const VIRTQ_PACKED_DESC_BYTES = 16;
/** Bytes per event suppression structure. */
export const VIRTQ_PACKED_EVENT_BYTES = 4;

/** Byte offsets inside one packed descriptor. */
export const enum PackedDescOffset {
  ADDR = 0,
  LEN = 8,
  ID = 12,
  FLAGS = 14,
}

/** Byte offsets inside one event suppression structure. */
export const enum PackedEventOffset {
  DESC = 0,
  FLAGS = 2,
}

/** Required alignment of each area (VIRTIO 1.2 §2.8.10: ring 16, both event structures 4). */
export const VIRTQ_PACKED_ALIGN = { desc: 16, driverEvent: 4, deviceEvent: 4 } as const;

/** Throws `PV_ERR_VIRTQ_LAYOUT` unless `qs` is an integer in [1, 2^15]. */
export function checkPackedQueueSize(qs: number): void {
  if (!Number.isInteger(qs) || qs < 1 || qs > VIRTQ_PACKED_MAX_SIZE) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `packed queue size ${qs} is not an integer in [1, ${VIRTQ_PACKED_MAX_SIZE}]`);
  }
}

/** Where the three areas of one packed queue sit, as byte offsets from the start of one block. */
export interface PackedLayout {
  readonly size: number;
  readonly desc: number;
  /** Driver event suppression (written by the driver). */
  readonly driverEvent: number;
  /** Device event suppression (written by the device). */
  readonly deviceEvent: number;
  /** Bytes of the whole block. */
  readonly bytes: number;
}

/** The contiguous placement: ring at 0, driver event right after it (16·QS is 4-aligned), device event after that. */
export function packedLayout(qs: number): PackedLayout {
  checkPackedQueueSize(qs);
  const driverEvent = VIRTQ_PACKED_DESC_BYTES * qs;
  const deviceEvent = driverEvent + VIRTQ_PACKED_EVENT_BYTES;
  return { size: qs, desc: 0, driverEvent, deviceEvent, bytes: deviceEvent + VIRTQ_PACKED_EVENT_BYTES };
}

/** True iff the slot's flags say "available" for a reader whose wrap counter is `wrap`. */
export function isDescAvail(flags: number, wrap: boolean): boolean {
  const avail = (flags & VIRTQ_PACKED_DESC_F_AVAIL) !== 0;
  const used = (flags & VIRTQ_PACKED_DESC_F_USED) !== 0;
  return avail === wrap && used !== wrap;
}

/** True iff the slot's flags say "used" for a reader whose wrap counter is `wrap`. */
export function isDescUsed(flags: number, wrap: boolean): boolean {
  const avail = (flags & VIRTQ_PACKED_DESC_F_AVAIL) !== 0;
  const used = (flags & VIRTQ_PACKED_DESC_F_USED) !== 0;
  return avail === used && used === wrap;
}

/** The flags a driver with wrap counter `wrap` stores to make a slot available. */
export function availFlags(wrap: boolean, write: boolean, next: boolean): number {
  return (
    (wrap ? VIRTQ_PACKED_DESC_F_AVAIL : VIRTQ_PACKED_DESC_F_USED) |
    (write ? VIRTQ_PACKED_DESC_F_WRITE : 0) |
    (next ? VIRTQ_PACKED_DESC_F_NEXT : 0)
  );
}

/** The AVAIL/USED bits a device with wrap counter `wrap` stores to mark a slot used. */
export function usedFlags(wrap: boolean): number {
  return wrap ? VIRTQ_PACKED_DESC_F_AVAIL | VIRTQ_PACKED_DESC_F_USED : 0;
}

/** Encodes an event `desc` word: desc_event_off | wrap << 15. */
export function packEventDesc(off: number, wrap: boolean): number {
  return (off & VRING_PACKED_EVENT_OFF_MASK) | (wrap ? 1 << VRING_PACKED_EVENT_F_WRAP_CTR : 0);
}

/**
 * The packed `vring_need_event` (Linux `virtqueue_kick_prepare_packed`, vhost's
 * `vhost_vring_packed_need_event`): should a side that just published `count` slots, ending at
 * ring position `newIdx` with its wrap counter now `newWrap`, notify a peer whose event `desc`
 * word is `offWrap`? The event position is mapped onto this side's lap: same wrap bit → this lap,
 * other wrap bit → the previous lap (offset − QS); then it is `vring_need_event` on those
 * positions, i.e. true iff the event lies in [newIdx − count, newIdx). An event two laps away
 * carries the same wrap bit as this lap (the spec's own ambiguity; a peer only ever asks for
 * positions within one lap of the other side's).
 *
 * `count` (not an old position) says how far the batch went, so a batch of exactly QS slots is
 * not mistaken for an empty one. An `offWrap` whose offset is ≥ QS (a peer's garbage) never
 * indexes anything here; it just gives some answer.
 */
export function packedNeedEvent(offWrap: number, newIdx: number, newWrap: boolean, count: number, qs: number): boolean {
  const off = offWrap & VRING_PACKED_EVENT_OFF_MASK;
  const eventWrap = (offWrap >>> VRING_PACKED_EVENT_F_WRAP_CTR) & 1;
  const event = eventWrap === (newWrap ? 1 : 0) ? off : off - qs;
  // Positions lie in [−QS, QS) ⊂ a 2^16 window, so the u16 arithmetic of vring_need_event is exact.
  return vringNeedEvent(event & 0xffff, newIdx & 0xffff, (newIdx - count) & 0xffff);
}

/**
 * The whole notify decision from a peer's event suppression structure: DESC → `packedNeedEvent`,
 * otherwise notify unless DISABLE (Linux `virtqueue_kick_prepare_packed`). An unknown flags value
 * (3, a peer's garbage) counts as ENABLE: a spurious notification is harmless, a lost one is not.
 */
export function packedNotifyNeeded(
  eventFlags: number,
  offWrap: number,
  newIdx: number,
  newWrap: boolean,
  count: number,
  qs: number,
): boolean {
  if (count === 0) return false;
  if (eventFlags === VRING_PACKED_EVENT_FLAG_DESC) return packedNeedEvent(offWrap, newIdx, newWrap, count, qs);
  return eventFlags !== VRING_PACKED_EVENT_FLAG_DISABLE;
}
