/**
 * Argument checks shared by the guest's split and packed drivers: a buffer must be a GPA and a
 * u32 length inside guest memory, an indirect table aligned inside guest memory and clear of the
 * queue itself. The driver refuses its own caller's mistakes with PV_ERR_INVALID_ARG before it
 * writes anything the device could see.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';

const TWO_32 = 2 ** 32;

/** One buffer of a chain: guest-physical address and length in bytes. */
export interface VirtqBuffer {
  readonly addr: GuestPhysAddr;
  readonly len: number;
}

/**
 * Checks a chain's buffers before a driver writes any of it: 1..`qs` buffers (VIRTIO 1.2: a
 * chain is no longer than the queue), each inside guest memory, at most 2^32 bytes in all.
 * Returns the device-writable capacity (the bound on the used len the device may report).
 */
export function checkChain(
  readable: readonly VirtqBuffer[],
  writable: readonly VirtqBuffer[],
  qs: number,
  memBytes: number,
): number {
  const n = readable.length + writable.length;
  if (n === 0 || n > qs) throw pvError('PV_ERR_INVALID_ARG', `a chain has 1..${qs} buffers, got ${n}`);
  let total = 0;
  let wcap = 0;
  for (const b of readable) total += checkBuffer(b, memBytes);
  for (const b of writable) wcap += checkBuffer(b, memBytes);
  if (total + wcap > TWO_32) throw pvError('PV_ERR_INVALID_ARG', `chain of ${total + wcap} bytes exceeds 2^32`);
  return wcap;
}

/** Returns `b.len` if `b` is a u32-long range inside `memBytes` of guest memory. */
export function checkBuffer(b: VirtqBuffer, memBytes: number): number {
  const { addr, len } = b;
  if (!Number.isSafeInteger(addr) || addr < 0 || !Number.isInteger(len) || len < 0 || len >= TWO_32) {
    throw pvError('PV_ERR_INVALID_ARG', `buffer {addr: ${addr}, len: ${len}} is not a GPA and a u32 length`);
  }
  if (addr + len > memBytes) {
    throw pvError('PV_ERR_INVALID_ARG', `buffer [${addr}, +${len}) lies outside guest memory`);
  }
  return len;
}

/**
 * Returns `t` if an indirect table of `n` descriptors of `descBytes` at `t` is `align`-aligned,
 * inside `memBytes` and outside the queue's own `[qBase, qBase + qBytes)`.
 */
export function checkIndirectTable(
  t: GuestPhysAddr,
  n: number,
  descBytes: number,
  align: number,
  memBytes: number,
  qBase: number,
  qBytes: number,
): number {
  const end = t + descBytes * n;
  if (!Number.isSafeInteger(t) || t < 0 || t % align !== 0 || end > memBytes) {
    throw pvError('PV_ERR_INVALID_ARG', `indirect table at ${t} is not ${align}-aligned inside guest memory`);
  }
  if (t < qBase + qBytes && end > qBase) {
    throw pvError('PV_ERR_INVALID_ARG', `indirect table [${t}, ${end}) overlaps the queue`);
  }
  return t;
}

/**
 * Refuses (PV_ERR_VIRTQ_LAYOUT) a queue that cannot sit at byte `base` of `memBytes` of guest
 * memory: a host that is not little-endian, a base that is not an `align`-aligned offset, or
 * `bytes` that run past the end.
 */
export function checkQueuePlacement(
  littleEndian: boolean,
  memBytes: number,
  base: number,
  bytes: number,
  align: number,
): void {
  if (!littleEndian) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'virtqueues need a little-endian host');
  if (!Number.isSafeInteger(base) || base < 0 || base % align !== 0) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue base ${base} is not a ${align}-aligned offset`);
  }
  if (base + bytes > memBytes) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `queue [${base}, +${bytes}) lies outside guest memory`);
  }
}
