/**
 * Foreign memory for a privileged backend (vhost SET_MEM_TABLE, vhost-vdpa IOTLB / VFIO DMA map,
 * Xen privcmd): only dom0 gets it; regions alias the guest's real memory; a device mapping is
 * range-checked overflow-safely, page granular, with the asked permission, for an owned device
 * only, and gone after unmap.
 */

import assert from 'node:assert/strict';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { isPrivileged, SimForeignOps } from '../../../hypervisor-sim/memory/SimForeignOps.js';
import { type DomId, type GuestPhysAddr, type MapHandle, PAGE_SIZE } from '../../../protocol/Types.js';

const DOM0 = 0 as DomId;
const GUEST = 1 as DomId;
const OTHER = 2 as DomId;
const GUEST_PAGES = 16;
const g = (n: number): GuestPhysAddr => n as GuestPhysAddr;

/** dom0 owns nic0 (translate); nic1 belongs to a guest; the guest has 16 pages. */
function setup(opts: { dmaBase?: number; maxMappings?: number; mode?: 'translate' | 'bypass' } = {}) {
  const memories = new MemoryDirectory();
  const dom0Mem = memories.addMemory(SharedArrayGuestMemory.create(DOM0, 8 * PAGE_SIZE));
  const guestMem = memories.addMemory(SharedArrayGuestMemory.create(GUEST, GUEST_PAGES * PAGE_SIZE));
  memories.addMemory(SharedArrayGuestMemory.create(OTHER, 4 * PAGE_SIZE));
  const nic = IommuContext.attach(IommuContext.create({ device: 'nic0', maxExtents: 8 }), memories);
  nic.assign(DOM0, dom0Mem.size, opts.mode ?? 'translate');
  const nic1 = IommuContext.attach(IommuContext.create({ device: 'nic1', maxExtents: 8 }), memories);
  nic1.assign(OTHER, 4 * PAGE_SIZE, 'translate');
  const ops = new SimForeignOps(DOM0, memories, {
    devices: new Map([
      ['nic0', nic],
      ['nic1', nic1],
    ]),
    deviceDmaBase: opts.dmaBase === undefined ? undefined : new Map([['nic0', opts.dmaBase]]),
    maxMappings: opts.maxMappings,
  });
  return { memories, ops, nic, nic1, guestMem, ref: emptyDmaRef() };
}

describe('SimForeignOps: only a privileged domain reaches foreign memory', () => {
  it('dom0 is privileged; a guest gets no ops and cannot construct them (PV_ERR_CONFIG)', () => {
    const memories = new MemoryDirectory();
    assert.equal(isPrivileged(DOM0), true);
    assert.equal(isPrivileged(GUEST), false);
    assert.ok(SimForeignOps.forDomain(DOM0, memories) instanceof SimForeignOps);
    assert.equal(SimForeignOps.forDomain(GUEST, memories), undefined);
    assert.throws(() => new SimForeignOps(GUEST, memories), { code: 'PV_ERR_CONFIG' });
  });

  it('the regions alias the guest real memory, both ways', () => {
    const { ops, guestMem } = setup();
    const regions = ops.regions(GUEST);
    assert.equal(regions.length, 1);
    const r = regions[0];
    assert.deepEqual(
      { gpa: r.gpa, size: r.size, offset: r.offset },
      { gpa: 0, size: GUEST_PAGES * PAGE_SIZE, offset: 0 },
    );
    assert.equal(r.buffer, guestMem.buffer, 'the guest buffer itself, not a copy');
    guestMem.bytes[5 * PAGE_SIZE + 7] = 0xa5;
    const seen = new Uint8Array(r.buffer, r.offset, r.size);
    assert.equal(seen[5 * PAGE_SIZE + 7], 0xa5);
    seen[9] = 0x3c;
    assert.equal(guestMem.bytes[9], 0x3c);
  });

  it('an unknown or removed domain is PV_ERR_NO_DOMAIN; the caller itself and malformed ids PV_ERR_INVALID_ARG', () => {
    const { ops, memories } = setup();
    assert.throws(() => ops.regions(7 as DomId), { code: 'PV_ERR_NO_DOMAIN' });
    memories.remove(OTHER);
    assert.throws(() => ops.regions(OTHER), { code: 'PV_ERR_NO_DOMAIN' });
    assert.throws(() => ops.regions(DOM0), { code: 'PV_ERR_INVALID_ARG', message: /own memory/ });
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 40]) {
      assert.throws(() => ops.regions(bad as DomId), { code: 'PV_ERR_INVALID_ARG' }, String(bad));
    }
    assert.throws(() => ops.mapForDevice(DOM0, g(0), 1, false, 'nic0'), { code: 'PV_ERR_INVALID_ARG' });
  });
});

describe('SimForeignOps.mapForDevice: range checks (overflow-safe, page granular)', () => {
  it('refuses len 0, ranges beyond memory and gpa + len past 2^53, leaving no IOMMU entry', () => {
    const { ops, nic } = setup();
    const size = GUEST_PAGES * PAGE_SIZE;
    assert.throws(() => ops.mapForDevice(GUEST, g(PAGE_SIZE), 0, true, 'nic0'), { code: 'PV_ERR_INVALID_ARG' });
    const outside: Array<[number, number]> = [
      [size - 10, 11],
      [size, 1],
      [0, size + 1],
      [2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE],
      [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
      [PAGE_SIZE, 2 ** 53],
      [-PAGE_SIZE, 2 * PAGE_SIZE],
      [1.5, 4],
      [Number.NaN, 4],
      [0, -1],
    ];
    for (const [gpa, len] of outside) {
      assert.throws(
        () => ops.mapForDevice(GUEST, g(gpa), len, true, 'nic0'),
        { code: 'PV_ERR_OUT_OF_BOUNDS' },
        `${gpa}+${len}`,
      );
    }
    assert.equal(ops.liveDeviceMappings(), 0);
    assert.equal(nic.liveExtents(), 0);
    // The last byte of memory is inside.
    const m = ops.mapForDevice(GUEST, g(size - 1), 1, false, 'nic0');
    ops.unmapForDevice(m.handle);
  });

  it('an unaligned start maps exactly the pages it spans: deviceAddr is the byte, nothing beyond resolves', () => {
    const { ops, nic, guestMem, ref } = setup();
    const gpa = 3 * PAGE_SIZE + 4000;
    guestMem.bytes.set([1, 2, 3, 4], gpa);
    const m = ops.mapForDevice(GUEST, g(gpa), 200, true, 'nic0');
    const [extent] = nic.extents();
    assert.deepEqual({ pages: extent.pages, gfn: extent.gfn, domid: extent.domid }, { pages: 2, gfn: 3, domid: GUEST });
    assert.equal(m.deviceAddr, extent.iova + 4000);
    assert.equal(nic.resolve(m.deviceAddr, 4, false, ref), true);
    assert.equal(ref.domid, GUEST);
    assert.deepEqual([...ref.bytes.subarray(ref.offset, ref.offset + 4)], [1, 2, 3, 4]);
    const pageStart = m.deviceAddr - 4000;
    assert.equal(nic.resolve(pageStart, 2 * PAGE_SIZE, false, ref), true, 'both spanned pages, whole');
    assert.equal(ref.offset, 3 * PAGE_SIZE);
    assert.equal(nic.resolve(pageStart - 1, 1, false, ref), false, 'not the byte before page 3');
    assert.equal(nic.resolve(pageStart + 2 * PAGE_SIZE, 1, false, ref), false, 'not page 5');
    assert.equal(nic.resolve(pageStart, 2 * PAGE_SIZE + 1, false, ref), false);
    ops.unmapForDevice(m.handle);
    // A range ending exactly on a page boundary does not reach into the next page.
    const whole = ops.mapForDevice(GUEST, g(7 * PAGE_SIZE), PAGE_SIZE, false, 'nic0');
    assert.deepEqual(
      nic.extents().map((e) => [e.gfn, e.pages]),
      [[7, 1]],
    );
    assert.equal(nic.resolve(whole.deviceAddr + PAGE_SIZE, 1, false, ref), false);
    ops.unmapForDevice(whole.handle);
  });

  it('a read-only mapping lets the device read and refuses a DMA write; a writable one writes the guest', () => {
    const { ops, nic, guestMem, ref } = setup();
    const ro = ops.mapForDevice(GUEST, g(2 * PAGE_SIZE), 64, false, 'nic0');
    assert.equal(ro.writable, false);
    assert.equal(nic.resolve(ro.deviceAddr, 64, false, ref), true);
    const faults = nic.faults();
    assert.equal(nic.resolve(ro.deviceAddr, 64, true, ref), false);
    assert.equal(nic.faults(), faults + 1);
    const rw = ops.mapForDevice(GUEST, g(6 * PAGE_SIZE + 8), 16, true, 'nic0');
    assert.equal(nic.resolve(rw.deviceAddr, 2, true, ref), true);
    ref.bytes.set([0xde, 0xad], ref.offset);
    assert.deepEqual([...guestMem.bytes.subarray(6 * PAGE_SIZE + 8, 6 * PAGE_SIZE + 10)], [0xde, 0xad]);
    ops.unmapForDevice(ro.handle);
    ops.unmapForDevice(rw.handle);
  });

  it('deviceAddr includes the device DMA base (a lent device), as a grant device map does', () => {
    const base = 2 ** 40;
    const { ops, nic, ref } = setup({ dmaBase: base });
    const m = ops.mapForDevice(GUEST, g(PAGE_SIZE + 12), 4, false, 'nic0');
    const [extent] = nic.extents();
    assert.equal(m.deviceAddr, base + extent.iova + 12);
    assert.equal(nic.resolve(m.deviceAddr - base, 4, false, ref), true);
    assert.equal(ref.offset, PAGE_SIZE + 12);
    ops.unmapForDevice(m.handle);
  });
});

describe('SimForeignOps: device ownership, unmap and limits', () => {
  it('unmap removes access (generation bumped); an unknown or stale handle is PV_ERR_INVALID_ARG', () => {
    const { ops, nic, ref } = setup();
    const m = ops.mapForDevice(GUEST, g(0), PAGE_SIZE, true, 'nic0');
    assert.equal(ops.liveDeviceMappings(), 1);
    const g0 = nic.generation();
    ops.unmapForDevice(m.handle);
    assert.equal(nic.resolve(m.deviceAddr, 1, false, ref), false);
    assert.ok(nic.generation() > g0);
    assert.equal(ops.liveDeviceMappings(), 0);
    assert.equal(nic.liveExtents(), 0);
    assert.throws(() => ops.unmapForDevice(m.handle), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => ops.unmapForDevice(999 as MapHandle), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => ops.unmapForDevice(Number.NaN as MapHandle), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('a device the caller does not own (unknown, another domain’s, released) is PV_ERR_INVALID_ARG', () => {
    const { ops, nic } = setup();
    assert.throws(() => ops.mapForDevice(GUEST, g(0), 8, true, 'nic9'), {
      code: 'PV_ERR_INVALID_ARG',
      message: /nic9/,
    });
    assert.throws(() => ops.mapForDevice(GUEST, g(0), 8, true, 'nic1'), {
      code: 'PV_ERR_INVALID_ARG',
      message: /nic1/,
    });
    nic.clear();
    assert.throws(() => ops.mapForDevice(GUEST, g(0), 8, true, 'nic0'), { code: 'PV_ERR_INVALID_ARG' });
    assert.equal(ops.liveDeviceMappings(), 0);
  });

  it('the guest dying revokes the extent: DMA faults, and unmap still frees the handle', () => {
    const { ops, nic, ref } = setup();
    const m = ops.mapForDevice(GUEST, g(PAGE_SIZE), 32, true, 'nic0');
    assert.equal(nic.revokeDomain(GUEST), 1);
    assert.equal(nic.resolve(m.deviceAddr, 1, false, ref), false);
    ops.unmapForDevice(m.handle);
    assert.equal(nic.liveExtents(), 0);
  });

  it('a device in bypass is PV_ERR_NOT_SUPPORTED; past maxMappings PV_ERR_LIMIT, with nothing left mapped', () => {
    const bypass = setup({ mode: 'bypass' });
    assert.throws(() => bypass.ops.mapForDevice(GUEST, g(0), 8, true, 'nic0'), { code: 'PV_ERR_NOT_SUPPORTED' });
    assert.equal(bypass.ops.liveDeviceMappings(), 0);
    const { ops, nic } = setup({ maxMappings: 2 });
    const a = ops.mapForDevice(GUEST, g(0), 8, true, 'nic0');
    const b = ops.mapForDevice(GUEST, g(PAGE_SIZE), 8, true, 'nic0');
    assert.throws(() => ops.mapForDevice(GUEST, g(2 * PAGE_SIZE), 8, true, 'nic0'), { code: 'PV_ERR_LIMIT' });
    assert.equal(nic.liveExtents(), 2);
    ops.unmapForDevice(a.handle);
    ops.unmapForDevice(b.handle);
  });
});
