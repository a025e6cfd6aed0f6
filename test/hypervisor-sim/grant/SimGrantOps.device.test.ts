import assert from 'node:assert/strict';
import sinon from 'sinon';
import { GrantTableSpace } from '../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../hypervisor-sim/grant/SimGrantOps.js';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, type Gfn, type Iova, PAGE_SIZE } from '../../../protocol/Types.js';

const BACKEND = 0 as DomId;
const GUEST = 1 as DomId;

/** dom0 owns nic0 (translate); the guest grants it pages; both sides' ops share one space. */
function setup(iommu: { windowPages?: number } = {}) {
  const space = GrantTableSpace.create({ maxDomains: 2, entriesPerDomain: 64 });
  const memories = new MemoryDirectory();
  const backendMem = memories.addMemory(SharedArrayGuestMemory.create(BACKEND, 8 * PAGE_SIZE));
  const guestMem = memories.addMemory(SharedArrayGuestMemory.create(GUEST, 16 * PAGE_SIZE));
  const nic = IommuContext.attach(IommuContext.create({ device: 'nic0', maxExtents: 8, ...iommu }), memories);
  nic.assign(BACKEND, backendMem.size, 'translate');
  const backend = new SimGrantOps(BACKEND, space, memories, { devices: new Map([['nic0', nic]]) });
  const guest = new SimGrantOps(GUEST, space, memories);
  return { nic, backend, guest, guestMem, ref: emptyDmaRef() };
}

describe('grant device map: mapGrants(…, { device }) maps the frames in the device IOMMU', () => {
  afterEach(() => sinon.restore());

  it('the device reaches the granted pages at deviceAddr, both ways', () => {
    const { nic, backend, guest, guestMem, ref } = setup();
    const refs = [guest.grantAccess(BACKEND, 5 as Gfn, false), guest.grantAccess(BACKEND, 6 as Gfn, false)];
    guestMem.bytes.set([9, 8, 7, 6], 6 * PAGE_SIZE + 100);
    const map = backend.mapGrants(GUEST, refs, true, { device: 'nic0' });
    assert.ok(map.deviceAddr !== undefined && map.deviceAddr >= 8 * PAGE_SIZE, 'an IOVA above the owner memory');
    const at = map.deviceAddr + PAGE_SIZE + 100;
    assert.equal(nic.resolve(at, 4, true, ref), true);
    assert.equal(ref.domid, GUEST);
    assert.deepEqual([...ref.bytes.subarray(ref.offset, ref.offset + 4)], [9, 8, 7, 6]);
    ref.bytes.set([1, 2], ref.offset);
    assert.deepEqual([...guestMem.bytes.subarray(6 * PAGE_SIZE + 100, 6 * PAGE_SIZE + 102)], [1, 2]);
    assert.equal(nic.resolve(map.deviceAddr, 2 * PAGE_SIZE + 1, false, ref), false, 'not one byte beyond the grant');
    backend.unmapGrant(map.handle);
  });

  it('after unmap the same IOVA faults, and the extent left before the pins dropped', () => {
    const { nic, backend, guest, ref } = setup();
    const gref = guest.grantAccess(BACKEND, 3 as Gfn, false);
    const map = backend.mapGrants(GUEST, [gref], true, { device: 'nic0' });
    const iova = map.deviceAddr as Iova;
    const g0 = nic.generation();
    const unmapForeign = nic.unmapForeign.bind(nic);
    let pinnedDuringIommuUnmap: boolean | undefined;
    sinon.stub(nic, 'unmapForeign').callsFake((at: Iova) => {
      pinnedDuringIommuUnmap = guest.isGrantInUse(gref);
      return unmapForeign(at);
    });
    backend.unmapGrant(map.handle);
    assert.equal(pinnedDuringIommuUnmap, true, 'the IOMMU entry went first, while the page was still pinned');
    assert.equal(nic.resolve(iova, 4, false, ref), false);
    assert.ok(nic.generation() > g0);
    assert.equal(guest.isGrantInUse(gref), false);
    guest.endAccess(gref);
  });

  it('a read-only grant gives a read-only extent: the device may read, a device write faults', () => {
    const { nic, backend, guest, ref } = setup();
    const gref = guest.grantAccess(BACKEND, 2 as Gfn, true);
    assert.throws(() => backend.mapGrants(GUEST, [gref], true, { device: 'nic0' }), {
      code: 'PV_ERR_GRANT_PERMISSION',
    });
    const map = backend.mapGrants(GUEST, [gref], false, { device: 'nic0' });
    const iova = map.deviceAddr as Iova;
    assert.equal(nic.resolve(iova, 64, false, ref), true);
    assert.equal(nic.resolve(iova, 64, true, ref), false);
    backend.unmapGrant(map.handle);
  });

  it('an unknown device, or one the caller does not own, is PV_ERR_INVALID_ARG and pins nothing', () => {
    const { nic, backend, guest } = setup();
    const gref = guest.grantAccess(BACKEND, 2 as Gfn, false);
    assert.throws(() => backend.mapGrants(GUEST, [gref], true, { device: 'nic9' }), {
      code: 'PV_ERR_INVALID_ARG',
      message: /nic9/,
    });
    assert.equal(guest.isGrantInUse(gref), false);
    // The guest holds no device at all; nor may it use dom0's through its own hypercalls.
    assert.throws(() => guest.mapGrants(BACKEND, [gref], true, { device: 'nic0' }), { code: 'PV_ERR_INVALID_ARG' });
    nic.clear();
    assert.throws(() => backend.mapGrants(GUEST, [gref], true, { device: 'nic0' }), { code: 'PV_ERR_INVALID_ARG' });
    assert.equal(backend.liveMappings(), 0);
  });

  it('when the IOMMU has no room the map fails whole: no mapping, no pins', () => {
    const { backend, guest } = setup({ windowPages: 4 });
    const refs = [0, 1, 2, 3].map((f) => guest.grantAccess(BACKEND, f as Gfn, false));
    assert.throws(() => backend.mapGrants(GUEST, refs, true, { device: 'nic0' }), { code: 'PV_ERR_INVALID_ARG' });
    const three = refs.slice(0, 3);
    const map = backend.mapGrants(GUEST, three, true, { device: 'nic0' });
    const again = guest.grantAccess(BACKEND, 9 as Gfn, false);
    assert.throws(() => backend.mapGrants(GUEST, [again], true, { device: 'nic0' }), { code: 'PV_ERR_LIMIT' });
    assert.equal(guest.isGrantInUse(again), false);
    assert.equal(backend.liveMappings(), 1);
    backend.unmapGrant(map.handle);
  });
});
