import assert from 'node:assert/strict';
import type { IovecList } from '../../../backend/virtio/DescChain.js';
import type { GuestRam } from '../../../fuzz/virtq/GuestRam.js';

/** The stable code a VirtioError thrown by `fn` carries, or 'no error' (any other throw fails the test). */
export function virtioCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.equal((err as Error).name, 'VirtioError', String(err));
    return (err as { code: string }).code;
  }
  return 'no error';
}

/**
 * Checks what a device popped against the guest's own memory layout: every segment inside one
 * region, no writable segment in read-only memory, and the list's totals equal to the sums of
 * its segments (at most 2^32).
 */
export function assertIovecInside(iov: IovecList, ram: GuestRam): void {
  let r = 0;
  let w = 0;
  for (let i = 0; i < iov.readableCount + iov.writableCount; i++) {
    const write = i >= iov.readableCount;
    const region = ram.regionAt(iov.gpa(i), iov.len(i));
    assert.ok(region, `segment ${i} at 0x${iov.gpa(i).toString(16)}+${iov.len(i)} is outside guest memory`);
    assert.ok(!(write && region.readOnly), 'a writable segment in the read-only region');
    if (write) w += iov.len(i);
    else r += iov.len(i);
  }
  assert.deepEqual([r, w], [iov.readableBytes, iov.writableBytes], 'totals are the sums of the copies');
  assert.ok(r + w <= 2 ** 32);
}
