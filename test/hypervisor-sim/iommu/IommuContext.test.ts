import assert from 'node:assert/strict';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import {
  ExtentWord,
  extentBase,
  IommuWord,
  iommuBytes,
  OWNER_GUARD_PAGES,
  pageTableBase,
} from '../../../hypervisor-sim/iommu/IommuLayout.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, type Gfn, type Iova, PAGE_SIZE } from '../../../protocol/Types.js';

const OWNER = 0 as DomId;
const GUEST = 3 as DomId;
const OWNER_PAGES = 16;
const GUEST_PAGES = 32;

function setup(mode: 'translate' | 'bypass' = 'translate') {
  const memories = new MemoryDirectory();
  const owner = memories.addMemory(SharedArrayGuestMemory.create(OWNER, OWNER_PAGES * PAGE_SIZE));
  const guest = memories.addMemory(SharedArrayGuestMemory.create(GUEST, GUEST_PAGES * PAGE_SIZE));
  const ctx = IommuContext.attach(IommuContext.create({ device: 'nic0', windowPages: 64, maxExtents: 8 }), memories);
  ctx.assign(OWNER, owner.size, mode);
  return { memories, owner, guest, ctx, ref: emptyDmaRef() };
}

describe('iommu layout: the offset table matches the word enums', () => {
  it('header is 64 bytes, slots are 32 bytes, the page table follows the slots, nothing overlaps', () => {
    assert.equal(IommuWord.HEADER * 4, 64);
    assert.equal(ExtentWord.SIZE * 4, 32);
    const header = [
      IommuWord.MAGIC,
      IommuWord.SEQ,
      IommuWord.GENERATION,
      IommuWord.MODE,
      IommuWord.OWNER,
      IommuWord.OWNER_PAGES,
      IommuWord.WINDOW_BASE,
      IommuWord.WINDOW_PAGES,
      IommuWord.MAX_EXTENTS,
      IommuWord.LIVE_EXTENTS,
      IommuWord.FAULTS,
      IommuWord.ALLOC_CURSOR,
      IommuWord.SLOT_HINT,
    ];
    assert.equal(new Set(header).size, header.length, 'header words are distinct');
    assert.ok(header.every((w) => w < IommuWord.HEADER));
    const slot = [
      ExtentWord.STATE,
      ExtentWord.IOVA_PAGE,
      ExtentWord.PAGES,
      ExtentWord.DOMID,
      ExtentWord.GFN,
      ExtentWord.FLAGS,
    ];
    assert.equal(new Set(slot).size, slot.length);
    assert.ok(slot.every((w) => w < ExtentWord.SIZE));
    assert.equal(extentBase(0), IommuWord.HEADER);
    assert.equal(extentBase(3), IommuWord.HEADER + 3 * ExtentWord.SIZE);
    assert.equal(pageTableBase(8), extentBase(8));
    assert.equal(iommuBytes(8, 64), 64 + 8 * 32 + 64 * 4);
    const desc = IommuContext.create({ device: 'x', maxExtents: 8, windowPages: 64 });
    assert.equal(desc.buffer.byteLength, iommuBytes(8, 64));
  });

  it('refuses a buffer that is not a context', () => {
    assert.throws(
      () => IommuContext.attach({ device: 'x', buffer: new SharedArrayBuffer(256) }, new MemoryDirectory()),
      {
        code: 'PV_ERR_CONFIG',
      },
    );
  });
});

describe('iommu translate: owner memory is mapped 1:1 and bounds-checked', () => {
  it('an owner range resolves to the same offset in the owner memory', () => {
    const { owner, ctx, ref } = setup();
    assert.equal(ctx.resolve(5 * PAGE_SIZE + 12, 100, true, ref), true);
    assert.equal(ref.domid, OWNER);
    assert.equal(ref.offset, 5 * PAGE_SIZE + 12);
    assert.equal(ref.bytes.buffer, owner.buffer);
    assert.equal(ref.words.buffer, owner.buffer);
    assert.equal(ref.words.length, owner.size / 4);
    assert.equal(ctx.resolve(owner.size - 4, 4, false, ref), true, 'last word');
  });

  it('a range leaving owner memory, or hostile numbers, return false and count a fault (never throw)', () => {
    const { owner, ctx, ref } = setup();
    const before = ctx.faults();
    for (const [iova, len] of [
      [owner.size - 4, 8],
      [owner.size, 1],
      [-1, 4],
      [Number.NaN, 4],
      [0, -1],
      [1.5, 4],
      [2 ** 60, 1],
      [0, 2 ** 60],
      [Number.MAX_SAFE_INTEGER, 1],
    ]) {
      assert.equal(ctx.resolve(iova, len, false, ref), false, `${iova}+${len}`);
    }
    assert.equal(ctx.faults() - before, 9);
  });

  it('an unassigned (or cleared) context faults everything', () => {
    const { ctx, ref } = setup();
    ctx.clear();
    assert.equal(ctx.owner(), undefined);
    assert.equal(ctx.resolve(0, 4, false, ref), false);
  });

  it('assigning a device that has an owner is refused', () => {
    const { ctx } = setup();
    assert.throws(() => ctx.assign(GUEST, PAGE_SIZE, 'translate'), { code: 'PV_ERR_CONFIG', message: /nic0/ });
  });
});

describe('iommu bypass: DMA addresses are owner physical addresses, bounded, with no extents', () => {
  it('owner ranges resolve, anything beyond faults, and foreign maps are refused', () => {
    const { owner, ctx, ref } = setup('bypass');
    assert.equal(ctx.mode(), 'bypass');
    assert.equal(ctx.resolve(3 * PAGE_SIZE, PAGE_SIZE, true, ref), true);
    assert.equal(ref.offset, 3 * PAGE_SIZE);
    assert.equal(ctx.resolve(owner.size, 4, false, ref), false);
    assert.equal(ctx.resolve((OWNER_PAGES + OWNER_GUARD_PAGES) * PAGE_SIZE, 4, false, ref), false);
    assert.throws(() => ctx.mapForeign(GUEST, 0 as Gfn, 1, true), { code: 'PV_ERR_NOT_SUPPORTED' });
  });
});

describe('iommu foreign extents: grant device maps in the window above owner memory', () => {
  it('an extent resolves into the target domain at its frame, above the owner and its guard page', () => {
    const { guest, ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, 7 as Gfn, 3, true);
    assert.ok(iova >= (OWNER_PAGES + OWNER_GUARD_PAGES) * PAGE_SIZE, 'inside the window');
    assert.equal(ctx.resolve(iova + PAGE_SIZE + 8, 2 * PAGE_SIZE - 8, true, ref), true);
    assert.equal(ref.domid, GUEST);
    assert.equal(ref.bytes.buffer, guest.buffer);
    assert.equal(ref.offset, 8 * PAGE_SIZE + 8);
    assert.deepEqual(ctx.extents(), [{ iova, pages: 3, domid: GUEST, gfn: 7, writable: true, revoked: false }]);
  });

  it('a write to a read-only extent faults; a read of it resolves', () => {
    const { ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, 2 as Gfn, 1, false);
    assert.equal(ctx.resolve(iova, 16, false, ref), true);
    assert.equal(ctx.resolve(iova, 16, true, ref), false);
  });

  it('a range crossing two extents, or leaving one, returns false', () => {
    const { owner, ctx, ref } = setup();
    // Contiguous frames of one domain in two maps: still two extents, never one range.
    const a = ctx.mapForeign(GUEST, 0 as Gfn, 2, true);
    const b = ctx.mapForeign(GUEST, 2 as Gfn, 2, true);
    assert.equal(ctx.resolve(a, 2 * PAGE_SIZE, true, ref), true);
    assert.equal(ctx.resolve(a + PAGE_SIZE, 2 * PAGE_SIZE, true, ref), false, 'runs off a into its guard');
    assert.equal(ctx.resolve(a, b + PAGE_SIZE - a, false, ref), false, 'spans a, guard and b');
    assert.equal(ctx.resolve(a + 2 * PAGE_SIZE, 4, false, ref), false, 'the guard page itself');
    assert.equal(ctx.resolve(owner.size - 4, 8, false, ref), false, 'from owner memory into the window');
  });

  it('an extent whose target memory is gone (or smaller than the extent) faults', () => {
    const { memories, ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, (GUEST_PAGES - 1) as Gfn, 2, true);
    assert.equal(ctx.resolve(iova, PAGE_SIZE, false, ref), true);
    assert.equal(ctx.resolve(iova + PAGE_SIZE, 4, false, ref), false, 'frame beyond the guest memory');
    memories.remove(GUEST);
    assert.equal(ctx.resolve(iova, 4, false, ref), false, 'domain no longer known');
  });

  it('unmap bumps the generation and the same IOVA then faults', () => {
    const { ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, 4 as Gfn, 1, true);
    const g0 = ctx.generation();
    assert.equal(ctx.resolve(iova, 4, true, ref), true);
    assert.equal(ctx.generation(), g0, 'a map does not invalidate cached resolutions');
    assert.equal(ctx.unmapForeign(iova), true);
    assert.equal(ctx.generation(), g0 + 1);
    assert.equal(ctx.resolve(iova, 4, false, ref), false);
    assert.equal(ctx.unmapForeign(iova), false, 'nothing left to unmap');
    assert.equal(ctx.liveExtents(), 0);
  });

  it('a dead granter is revoked: its extents fault until the owner unmaps them', () => {
    const { ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, 1 as Gfn, 1, true);
    const g0 = ctx.generation();
    assert.equal(ctx.revokeDomain(GUEST), 1);
    assert.equal(ctx.generation(), g0 + 1);
    assert.equal(ctx.resolve(iova, 4, false, ref), false);
    assert.equal(ctx.extents()[0].revoked, true);
    assert.equal(ctx.unmapForeign(iova), true);
    assert.equal(ctx.liveExtents(), 0);
  });

  it('clear (owner died) drops every extent, the owner, and bumps the generation', () => {
    const { owner, ctx, ref } = setup();
    const iova = ctx.mapForeign(GUEST, 1 as Gfn, 1, true);
    const g0 = ctx.generation();
    ctx.clear();
    assert.ok(ctx.generation() > g0);
    assert.equal(ctx.liveExtents(), 0);
    assert.equal(ctx.resolve(iova, 4, false, ref), false);
    // The device can be given to another domain afterwards.
    ctx.assign(GUEST, owner.size, 'translate');
    assert.equal(ctx.owner(), GUEST);
    assert.equal(ctx.resolve(0, 4, false, ref), true);
    assert.equal(ref.domid, GUEST);
  });

  it('slots and window are bounded: exhaustion is PV_ERR_LIMIT, and freed space is reused', () => {
    const { ctx } = setup();
    const maps: Iova[] = [];
    for (let i = 0; i < 8; i++) maps.push(ctx.mapForeign(GUEST, i as Gfn, 1, true));
    assert.throws(() => ctx.mapForeign(GUEST, 0 as Gfn, 1, true), { code: 'PV_ERR_LIMIT', message: /extents/ });
    for (const m of maps) ctx.unmapForeign(m);
    assert.throws(() => ctx.mapForeign(GUEST, 0 as Gfn, 64, true), { code: 'PV_ERR_INVALID_ARG' });
    const big = ctx.mapForeign(GUEST, 0 as Gfn, 40, true);
    assert.throws(() => ctx.mapForeign(GUEST, 0 as Gfn, 30, true), { code: 'PV_ERR_LIMIT', message: /window/ });
    ctx.unmapForeign(big);
    assert.ok(ctx.mapForeign(GUEST, 0 as Gfn, 30, true) > 0, 'the window wraps and reuses freed pages');
  });
});
