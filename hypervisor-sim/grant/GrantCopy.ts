/**
 * Argument checks and the byte move of `GNTTABOP_copy` (reference protocol.md §2.2: "a copy may
 * not cross a page", `GNTST_bad_copy_arg`). Every field of a copy op is untrusted: sides are
 * parsed here before any pin is taken, with overflow-safe bounds (no `offset + len` is formed
 * before both are known to be small).
 */

import { pvError } from '../../protocol/errors.js';
import type { GrantCopySide } from '../../protocol/Hypercalls.js';
import { type DomId, type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import type { SharedArrayGuestMemory } from '../memory/SharedArrayGuestMemory.js';
import type { GrantTableSpace } from './GrantTableSpace.js';

/** Copies at most this long use a loop: `subarray()` costs more than the copy (DESIGN §4). */
const SMALL_COPY = 16;

/** A copy side after its numbers were checked; granted sides still need a pin. */
export interface ResolvedSide {
  /** Memory the bytes live in (the granter's, or our own for a `gpa` side). */
  readonly memory: SharedArrayGuestMemory;
  /** Word index of the grant entry, or −1 for a `gpa` side (nothing to pin). */
  readonly base: number;
  /** Offset inside the granted frame, or the guest-physical address of a `gpa` side. */
  readonly addr: number;
  /** The grant ref (for messages), −1 for a `gpa` side. */
  readonly ref: number;
}

/**
 * Checks one side of a copy of `len` bytes (1 … PAGE_SIZE, already checked):
 * `{domid, ref, offset}` needs `offset + len ≤ PAGE_SIZE` and a known granter; `{gpa}` must lie
 * in our own memory without crossing a page. `PV_ERR_GRANT_BAD_COPY` for a bad shape or bounds.
 */
export function resolveSide(
  side: GrantCopySide,
  len: number,
  own: SharedArrayGuestMemory,
  space: GrantTableSpace,
  granterMemory: (domid: DomId) => SharedArrayGuestMemory,
): ResolvedSide {
  if (side === null || typeof side !== 'object') {
    throw pvError('PV_ERR_GRANT_BAD_COPY', 'copy side is not an object');
  }
  if ('gpa' in side) {
    const gpa = side.gpa;
    if (!Number.isSafeInteger(gpa) || gpa < 0) {
      throw pvError('PV_ERR_GRANT_BAD_COPY', `copy address ${gpa} is not an integer ≥ 0`);
    }
    // INVARIANT: len ≤ PAGE_SIZE, so the sum is small and exact.
    if ((gpa % PAGE_SIZE) + len > PAGE_SIZE) {
      throw pvError('PV_ERR_GRANT_BAD_COPY', `copy of ${len} bytes at ${gpa} crosses a page`);
    }
    own.checkRange(gpa as GuestPhysAddr, len);
    return { memory: own, base: -1, addr: gpa, ref: -1 };
  }
  if ('ref' in side && 'domid' in side) {
    const offset = side.offset;
    if (!Number.isInteger(offset) || offset < 0 || offset > PAGE_SIZE || len > PAGE_SIZE - offset) {
      throw pvError('PV_ERR_GRANT_BAD_COPY', `copy of ${len} bytes at offset ${offset} crosses a page`);
    }
    const base = space.entryBase(side.domid, side.ref);
    return { memory: granterMemory(side.domid), base, addr: offset, ref: side.ref };
  }
  throw pvError('PV_ERR_GRANT_BAD_COPY', 'copy side has neither {gpa} nor {domid, ref, offset}');
}

/** Moves `len` bytes; ranges were checked by the caller. Overlap inside one memory is handled. */
export function copyBetween(
  src: SharedArrayGuestMemory,
  srcAddr: number,
  dst: SharedArrayGuestMemory,
  dstAddr: number,
  len: number,
): void {
  // INVARIANT: both ranges lie inside their memories (resolveSide + the pinned frame check).
  if (src.buffer === dst.buffer) {
    dst.bytes.copyWithin(dstAddr, srcAddr, srcAddr + len);
  } else if (len <= SMALL_COPY) {
    const from = src.bytes;
    const to = dst.bytes;
    for (let i = 0; i < len; i++) to[dstAddr + i] = from[srcAddr + i];
  } else {
    dst.bytes.set(src.bytes.subarray(srcAddr, srcAddr + len), dstAddr);
  }
}
