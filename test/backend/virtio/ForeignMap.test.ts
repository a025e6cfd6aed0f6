/**
 * The device's memory table built from `hc.foreign` (vhost SET_MEM_TABLE): it translates a GPA to
 * the very bytes the guest sees, only a privileged domain can build it, and the map's own rules
 * still police what the hypervisor hands over.
 */

import assert from 'node:assert/strict';
import { foreignMemoryMap } from '../../../backend/virtio/ForeignMap.js';
import { newTranslation } from '../../../backend/virtio/GuestMemoryMap.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { SimForeignOps } from '../../../hypervisor-sim/memory/SimForeignOps.js';
import type { ForeignMemoryOps, ForeignRegion } from '../../../protocol/Hypercalls.js';
import { type DomId, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { virtioCode } from './VirtioAsserts.js';

const DOM0 = 0 as DomId;
const GUEST = 3 as DomId;

function setup() {
  const memories = new MemoryDirectory();
  memories.addMemory(SharedArrayGuestMemory.create(DOM0, 4 * PAGE_SIZE));
  const guestMem = memories.addMemory(SharedArrayGuestMemory.create(GUEST, 8 * PAGE_SIZE));
  const foreign = SimForeignOps.forDomain(DOM0, memories);
  return { foreign, guestMem, memories };
}

/** Foreign ops that hand out fixed regions (to check the map still validates them). */
function fixedRegions(regions: ForeignRegion[]): ForeignMemoryOps {
  return {
    regions: () => regions,
    mapForDevice: () => {
      throw new Error('not used');
    },
    unmapForDevice: () => {},
    liveDeviceMappings: () => 0,
  };
}

describe('foreignMemoryMap: the device memory table from hc.foreign', () => {
  it('translates a GPA to the same bytes the guest sees, both ways', () => {
    const { foreign, guestMem } = setup();
    const map = foreignMemoryMap(foreign, GUEST);
    assert.equal(map.regionCount, 1);
    const gpa = 5 * PAGE_SIZE + 300;
    guestMem.write(gpa as GuestPhysAddr, new Uint8Array([7, 6, 5, 4]));
    const t = newTranslation();
    map.translate(gpa, 4, false, t);
    assert.deepEqual([...t.bytes.subarray(t.offset, t.offset + 4)], [7, 6, 5, 4]);
    map.translate(gpa + 4, 2, true, t);
    t.bytes.set([0xee, 0xff], t.offset);
    assert.deepEqual([...guestMem.view((gpa + 4) as GuestPhysAddr, 2)], [0xee, 0xff]);
  });

  it('covers exactly the guest memory: one byte past its end is PV_ERR_VIRTQ_BAD_ADDR', () => {
    const { foreign, guestMem } = setup();
    const map = foreignMemoryMap(foreign, GUEST);
    const t = newTranslation();
    map.translate(guestMem.size - 1, 1, true, t);
    assert.equal(
      virtioCode(() => map.translate(guestMem.size - 1, 2, false, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });

  it('readOnly gives a map the device may read but not write', () => {
    const { foreign } = setup();
    const map = foreignMemoryMap(foreign, GUEST, { readOnly: true });
    const t = newTranslation();
    map.translate(PAGE_SIZE, 8, false, t);
    assert.equal(
      virtioCode(() => map.translate(PAGE_SIZE, 8, true, t)),
      'PV_ERR_VIRTQ_BAD_ADDR',
    );
  });

  it('without foreign ops (a guest) it is PV_ERR_NOT_SUPPORTED; an unknown guest PV_ERR_NO_DOMAIN', () => {
    const { foreign, memories } = setup();
    assert.throws(() => foreignMemoryMap(SimForeignOps.forDomain(GUEST, memories), DOM0), {
      code: 'PV_ERR_NOT_SUPPORTED',
    });
    assert.throws(() => foreignMemoryMap(undefined, GUEST), { code: 'PV_ERR_NOT_SUPPORTED' });
    assert.throws(() => foreignMemoryMap(foreign, 9 as DomId), { code: 'PV_ERR_NO_DOMAIN' });
  });

  it('regions the map refuses (overlapping, past their buffer) are PV_ERR_VIRTQ_LAYOUT', () => {
    const buffer = new SharedArrayBuffer(2 * PAGE_SIZE);
    const r = (gpa: number, size: number, offset: number): ForeignRegion => ({
      gpa: gpa as GuestPhysAddr,
      size,
      buffer,
      offset,
    });
    const overlapping = fixedRegions([r(0, PAGE_SIZE, 0), r(PAGE_SIZE / 2, PAGE_SIZE, PAGE_SIZE)]);
    assert.equal(
      virtioCode(() => foreignMemoryMap(overlapping, GUEST)),
      'PV_ERR_VIRTQ_LAYOUT',
    );
    assert.equal(
      virtioCode(() => foreignMemoryMap(fixedRegions([r(0, 3 * PAGE_SIZE, 0)]), GUEST)),
      'PV_ERR_VIRTQ_LAYOUT',
    );
  });
});
