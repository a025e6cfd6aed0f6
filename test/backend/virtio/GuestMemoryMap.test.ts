/**
 * The device's guest memory map (vhost SET_MEM_TABLE analogue): regions are validated once, and
 * every range the device touches resolves inside ONE region with the right permission,
 * overflow-safe (rust-vmm vm-memory get_slice / check_range semantics).
 */

import assert from 'node:assert/strict';
import { GuestMemoryMap, type MemRegion, newTranslation } from '../../../backend/virtio/GuestMemoryMap.js';
import { guestPhysAddr } from '../../../protocol/Types.js';
import { virtioCode } from './VirtioAsserts.js';

const sab = new SharedArrayBuffer(0x4000);
const g = guestPhysAddr;

const code = virtioCode;

/** Two GPA-adjacent regions, a gap, then a read-only region. */
function threeRegions(): GuestMemoryMap {
  return new GuestMemoryMap([
    { gpa: g(0x1000), size: 0x1000, backing: sab, offset: 0x0 },
    { gpa: g(0x2000), size: 0x1000, backing: sab, offset: 0x2000 },
    { gpa: g(0x10000), size: 0x800, backing: sab, offset: 0x3000, readOnly: true },
  ]);
}

describe('GuestMemoryMap: regions are validated at construction', () => {
  it('refuses an empty map, a zero size, a region past its buffer, unsafe numbers (PV_ERR_VIRTQ_LAYOUT)', () => {
    const bad: MemRegion[][] = [
      [],
      [{ gpa: g(0), size: 0, backing: sab, offset: 0 }],
      [{ gpa: g(0), size: 0x1000, backing: sab, offset: 0x3800 }],
      [{ gpa: g(0), size: 0x4001, backing: sab, offset: 0 }],
      [{ gpa: g(2 ** 53 - 0x10), size: 0x100, backing: sab, offset: 0 }],
      [{ gpa: g(0), size: 1.5, backing: sab, offset: 0 }],
      [{ gpa: g(0), size: 0x10, backing: sab, offset: -1 }],
    ];
    for (const regions of bad)
      assert.equal(
        code(() => new GuestMemoryMap(regions)),
        'PV_ERR_VIRTQ_LAYOUT',
      );
  });

  it('refuses regions overlapping in guest-physical space', () => {
    const regions: MemRegion[] = [
      { gpa: g(0x1000), size: 0x1000, backing: sab, offset: 0 },
      { gpa: g(0x1fff), size: 0x10, backing: sab, offset: 0x2000 },
    ];
    assert.equal(
      code(() => new GuestMemoryMap(regions)),
      'PV_ERR_VIRTQ_LAYOUT',
    );
  });

  it('refuses two regions aliasing the same backing bytes (a read-only region with a writable twin)', () => {
    const regions: MemRegion[] = [
      { gpa: g(0x1000), size: 0x1000, backing: sab, offset: 0, readOnly: true },
      { gpa: g(0x8000), size: 0x10, backing: sab, offset: 0xff0 },
    ];
    assert.equal(
      code(() => new GuestMemoryMap(regions)),
      'PV_ERR_VIRTQ_LAYOUT',
    );
  });
});

describe('GuestMemoryMap: translate resolves a range inside one region', () => {
  const m = threeRegions();
  const t = newTranslation();

  it('maps a range to its backing offset, in any region', () => {
    m.translate(0x1010, 0x20, true, t);
    assert.equal(t.offset, 0x10);
    assert.equal(t.bytes.buffer, sab);
    m.translate(0x2ff0, 0x10, false, t);
    assert.equal(t.offset, 0x2ff0);
    m.translate(0x10000, 0x800, false, t);
    assert.equal(t.offset, 0x3000);
  });

  it('refuses a buffer straddling the end of guest memory or of a region (PV_ERR_VIRTQ_BAD_ADDR)', () => {
    assert.equal(
      code(() => m.translate(0x10700, 0x101, false, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
    assert.equal(
      code(() => m.translate(0x0ff0, 0x20, false, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });

  it('refuses a range spanning two GPA-adjacent regions (one region per range, as get_slice)', () => {
    assert.equal(
      code(() => m.translate(0x1ff0, 0x20, false, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });

  it('refuses addresses in a gap or past memory', () => {
    for (const gpa of [0, 0xfff, 0x3000, 0x8000, 0x10800, 2 ** 40]) {
      assert.equal(
        code(() => m.translate(gpa, 1, false, t)),
        'PV_ERR_VIRTQ_BAD_ADDR',
        `0x${gpa.toString(16)}`,
      );
    }
  });

  it('is overflow-safe: addr near 2^53 and len near 2^32 never round into a region', () => {
    for (const [gpa, len] of [
      [2 ** 53 - 1, 0xffffffff],
      [0x1000, 2 ** 53 - 1],
      [0x1000, 0xffffffff],
      [2 ** 53, 1],
      [2 ** 64 - 1, 1],
      [-1, 1],
      [4096.5, 1],
    ]) {
      assert.equal(
        code(() => m.translate(gpa, len, false, t)),
        'PV_ERR_VIRTQ_BAD_ADDR',
        `${gpa}+${len}`,
      );
    }
  });

  it('allows zero length inside a region or at its end, and refuses it at a wild address', () => {
    m.translate(0x1000, 0, false, t);
    m.translate(0x10800, 0, false, t);
    assert.equal(t.offset, 0x3800);
    assert.equal(
      code(() => m.translate(0x90000, 0, false, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });

  it('lets the device read a read-only region and refuses a write into it', () => {
    m.translate(0x10100, 0x10, false, t);
    assert.equal(
      code(() => m.translate(0x10100, 0x10, true, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });
});
