import assert from 'node:assert/strict';
import sinon from 'sinon';
import {
  GrantTableSpace,
  GrantWord,
  GTF_PV_CLAIMED,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_writing,
  HOST_LOCK_OWNER,
  MAX_GRANT_RETRIES,
} from '../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../hypervisor-sim/grant/SimGrantOps.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { GrantCopySide } from '../../../protocol/Hypercalls.js';
import {
  type DomId,
  type Gfn,
  type GrantRef,
  type GuestPhysAddr,
  type MapHandle,
  PAGE_SIZE,
} from '../../../protocol/Types.js';

const DOM0 = 0 as DomId;
const DOM1 = 1 as DomId;
const DOM2 = 2 as DomId;
const ENTRIES = 32;
const PAGES = 16;
const gfn = (n: number) => n as Gfn;
const gref = (n: number) => n as GrantRef;
const gpa = (n: number) => n as GuestPhysAddr;

/** Asserts that `fn` throws a pvio error with `code` (and, if given, a message matching `re`). */
function throwsCode(fn: () => unknown, code: string, re?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    const e = err as { code?: string; message?: string };
    return e.code === code && (re === undefined || re.test(e.message ?? ''));
  });
}

/** Three domains sharing one grant space; every domain's ops see every memory (one thread). */
function world() {
  const space = GrantTableSpace.create({ maxDomains: 3, entriesPerDomain: ENTRIES });
  const memories = new MemoryDirectory();
  const mem = [DOM0, DOM1, DOM2].map((d) => memories.addMemory(SharedArrayGuestMemory.create(d, PAGES * PAGE_SIZE)));
  const ops = [DOM0, DOM1, DOM2].map((d) => new SimGrantOps(d, space, memories));
  /** True when the entry holds no pin and no status bit (nothing leaked). */
  const idle = (granter: DomId, ref: GrantRef) => {
    const s = space.snapshot(granter, ref);
    return s.readPins === 0 && s.writePins === 0 && (s.flags & (GTF_reading | GTF_writing)) === 0 && s.lock === 0;
  };
  return { space, memories, mem, ops, idle };
}

describe('SimGrantOps (grant tables, reference §2)', () => {
  describe('grantAccess', () => {
    it('publishes {permit_access, readonly, grantee, frame} in a ref past the reserved ones', () => {
      const { space, ops } = world();
      const ref = ops[1].grantAccess(DOM0, gfn(5), true);
      assert.ok(ref >= 8 && ref < ENTRIES);
      const s = space.snapshot(DOM1, ref);
      assert.deepEqual([s.flags, s.domid, s.frame], [GTF_permit_access | GTF_readonly, DOM0, 5]);
    });

    it('refuses a frame outside the granter memory and a bad grantee', () => {
      const { ops } = world();
      for (const f of [PAGES, -1, 1.5, Number.NaN])
        throwsCode(() => ops[1].grantAccess(DOM0, gfn(f), false), 'PV_ERR_OUT_OF_BOUNDS');
      throwsCode(() => ops[1].grantAccess(0x8000 as DomId, gfn(1), false), 'PV_ERR_INVALID_ARG');
    });

    it('a full table is PV_ERR_GRANT_NO_SPACE; an ended ref becomes free again', () => {
      const { ops } = world();
      const refs = new Set<GrantRef>();
      for (let i = 8; i < ENTRIES; i++) refs.add(ops[1].grantAccess(DOM0, gfn(1), false));
      assert.equal(refs.size, ENTRIES - 8);
      throwsCode(() => ops[1].grantAccess(DOM0, gfn(1), false), 'PV_ERR_GRANT_NO_SPACE');
      ops[1].endAccess(gref(20));
      assert.equal(ops[1].grantAccess(DOM0, gfn(2), false), 20);
    });
  });

  it('read-only grant map refused for write', () => {
    const { ops, idle } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(3), true);
    throwsCode(() => ops[0].mapGrants(DOM1, [ref], true), 'PV_ERR_GRANT_PERMISSION');
    throwsCode(
      () => ops[0].grantCopy({ source: { gpa: gpa(0) }, dest: { domid: DOM1, ref, offset: 0 }, len: 8 }),
      'PV_ERR_GRANT_PERMISSION',
    );
    assert.ok(idle(DOM1, ref), 'a refused write leaves no pin behind');
    const m = ops[0].mapGrants(DOM1, [ref], false);
    assert.equal(m.writable, false);
    ops[0].unmapGrant(m.handle);
  });

  it('end access while mapped fails and succeeds after unmap', () => {
    const { space, ops, idle } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(2), false);
    const m = ops[0].mapGrants(DOM1, [ref], true);
    assert.equal(ops[1].isGrantInUse(ref), true);
    assert.equal(space.snapshot(DOM1, ref).flags & (GTF_reading | GTF_writing), GTF_reading | GTF_writing);
    throwsCode(() => ops[1].endAccess(ref), 'PV_ERR_GRANT_IN_USE');
    assert.equal(space.snapshot(DOM1, ref).flags & GTF_permit_access, GTF_permit_access, 'never revoked silently');
    ops[0].unmapGrant(m.handle);
    assert.ok(idle(DOM1, ref));
    assert.equal(ops[1].isGrantInUse(ref), false);
    ops[1].endAccess(ref);
    throwsCode(() => ops[0].mapGrants(DOM1, [ref], false), 'PV_ERR_GRANT_BAD_REF');
  });

  it('a read map and a write map of one grant keep GTF_reading until both are gone', () => {
    const { space, ops, idle } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(2), false);
    const r = ops[0].mapGrants(DOM1, [ref], false);
    const w = ops[0].mapGrants(DOM1, [ref], true);
    ops[0].unmapGrant(w.handle);
    assert.equal(space.snapshot(DOM1, ref).flags & (GTF_reading | GTF_writing), GTF_reading);
    throwsCode(() => ops[1].endAccess(ref), 'PV_ERR_GRANT_IN_USE');
    ops[0].unmapGrant(r.handle);
    assert.ok(idle(DOM1, ref));
  });

  it('foreign domid refused (a third domain maps or copies a grant made to someone else)', () => {
    const { ops, idle } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(4), false);
    throwsCode(() => ops[2].mapGrants(DOM1, [ref], false), 'PV_ERR_GRANT_BAD_DOMAIN');
    throwsCode(
      () => ops[2].grantCopy({ source: { domid: DOM1, ref, offset: 0 }, dest: { gpa: gpa(0) }, len: 4 }),
      'PV_ERR_GRANT_BAD_DOMAIN',
    );
    assert.ok(idle(DOM1, ref));
    throwsCode(() => ops[0].mapGrants(7 as DomId, [ref], false), 'PV_ERR_GRANT_BAD_DOMAIN');
  });

  it('unknown and revoked refs refused', () => {
    const { space, ops } = world();
    const refs = [-1, ENTRIES, 2 ** 32, 1.5, Number.NaN, 0 /* reserved, never granted */, 9 /* free */];
    for (const r of refs) {
      throwsCode(() => ops[0].mapGrants(DOM1, [gref(r)], false), 'PV_ERR_GRANT_BAD_REF');
      throwsCode(
        () => ops[0].grantCopy({ source: { domid: DOM1, ref: gref(r), offset: 0 }, dest: { gpa: gpa(0) }, len: 1 }),
        'PV_ERR_GRANT_BAD_REF',
      );
      throwsCode(() => ops[1].endAccess(gref(r)), 'PV_ERR_GRANT_BAD_REF');
    }
    const ended = ops[1].grantAccess(DOM0, gfn(1), false);
    ops[1].endAccess(ended);
    throwsCode(() => ops[0].mapGrants(DOM1, [ended], false), 'PV_ERR_GRANT_BAD_REF');
    throwsCode(() => ops[1].endAccess(ended), 'PV_ERR_GRANT_BAD_REF');
    // An entry claimed but not yet published by its granter is not a grant.
    const base = space.entryBase(DOM1, 12);
    space.words[base + GrantWord.FLAGS_DOMID] = GTF_PV_CLAIMED;
    throwsCode(() => ops[0].mapGrants(DOM1, [gref(12)], false), 'PV_ERR_GRANT_BAD_REF');
  });

  it('a frame a hostile granter rewrote outside its memory is refused and leaves no pin', () => {
    const { space, ops, idle } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(1), false);
    for (const frame of [PAGES, -1]) {
      space.words[space.entryBase(DOM1, ref) + GrantWord.FRAME] = frame;
      throwsCode(() => ops[0].mapGrants(DOM1, [ref], false), 'PV_ERR_GRANT_BAD_REF', /outside its memory/);
      throwsCode(
        () => ops[0].grantCopy({ source: { domid: DOM1, ref, offset: 0 }, dest: { gpa: gpa(0) }, len: 1 }),
        'PV_ERR_GRANT_BAD_REF',
      );
      assert.ok(idle(DOM1, ref));
    }
  });

  it('map is zero copy (a write through the view is seen by the granter)', () => {
    const { mem, ops } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(6), false);
    const m = ops[0].mapGrants(DOM1, [ref], true);
    assert.equal(m.view.buffer, mem[1].buffer);
    assert.equal(m.view.length, PAGE_SIZE);
    m.view[123] = 0x5a;
    assert.equal(mem[1].bytes[6 * PAGE_SIZE + 123], 0x5a);
    mem[1].bytes[6 * PAGE_SIZE + 7] = 0xa5;
    assert.equal(m.view[7], 0xa5);
    ops[0].unmapGrant(m.handle);
  });

  it('multi-page map all-or-nothing (one bad ref unpins the others)', () => {
    const { ops, idle } = world();
    const good = [3, 4, 5].map((f) => ops[1].grantAccess(DOM0, gfn(f), false));
    const readOnly = ops[1].grantAccess(DOM0, gfn(6), true);
    throwsCode(() => ops[0].mapGrants(DOM1, [...good, gref(9999)], true), 'PV_ERR_GRANT_BAD_REF');
    throwsCode(() => ops[0].mapGrants(DOM1, [...good, readOnly], true), 'PV_ERR_GRANT_PERMISSION');
    for (const ref of good) assert.ok(idle(DOM1, ref), `ref ${ref} left pinned`);
    assert.equal(ops[0].liveMappings(), 0);
    // The granter can end them: nothing was left pinned (XSA-224).
    ops[1].endAccess(good[0]);
    const [a, b, c] = [ops[1].grantAccess(DOM0, gfn(3), false), good[1], good[2]];
    const m = ops[0].mapGrants(DOM1, [a, b, c], true);
    assert.equal(m.view.length, 3 * PAGE_SIZE);
    assert.equal(m.view.byteOffset, 3 * PAGE_SIZE);
    ops[0].unmapGrant(m.handle);
  });

  it('frames that are not contiguous in the granter are refused, and unpinned', () => {
    const { ops, idle } = world();
    const refs = [3, 5].map((f) => ops[1].grantAccess(DOM0, gfn(f), false));
    throwsCode(() => ops[0].mapGrants(DOM1, refs, false), 'PV_ERR_INVALID_ARG', /contiguous/);
    throwsCode(() => ops[0].mapGrants(DOM1, [refs[0], refs[0]], false), 'PV_ERR_INVALID_ARG', /contiguous/);
    for (const ref of refs) assert.ok(idle(DOM1, ref));
    throwsCode(() => ops[0].mapGrants(DOM1, [], false), 'PV_ERR_INVALID_ARG');
  });

  it('unmap of an unknown or already unmapped handle is PV_ERR_GRANT_BAD_HANDLE', () => {
    const { ops } = world();
    const ref = ops[1].grantAccess(DOM0, gfn(1), false);
    const m = ops[0].mapGrants(DOM1, [ref], false);
    assert.equal(ops[0].liveMappings(), 1);
    throwsCode(() => ops[2].unmapGrant(m.handle), 'PV_ERR_GRANT_BAD_HANDLE');
    ops[0].unmapGrant(m.handle);
    assert.equal(ops[0].liveMappings(), 0);
    throwsCode(() => ops[0].unmapGrant(m.handle), 'PV_ERR_GRANT_BAD_HANDLE');
    throwsCode(() => ops[0].unmapGrant(12345 as MapHandle), 'PV_ERR_GRANT_BAD_HANDLE');
  });

  it('the maptrack is finite: mapping past its limit is PV_ERR_GRANT_NO_SPACE', () => {
    const { space, memories, ops } = world();
    const small = new SimGrantOps(DOM0, space, memories, { maxMappedRefs: 2 });
    const refs = [1, 2, 3].map((f) => ops[1].grantAccess(DOM0, gfn(f), false));
    small.mapGrants(DOM1, refs.slice(0, 2), false);
    throwsCode(() => small.mapGrants(DOM1, [refs[2]], false), 'PV_ERR_GRANT_NO_SPACE');
  });

  describe('grantCopy', () => {
    it('copies granted → own, own → granted and granted → granted', () => {
      const { mem, ops, idle } = world();
      const src = ops[1].grantAccess(DOM0, gfn(2), true);
      const dst = ops[2].grantAccess(DOM0, gfn(3), false);
      const data = Uint8Array.from({ length: 100 }, (_, i) => i + 1);
      mem[1].write(gpa(2 * PAGE_SIZE + 50), data);
      ops[0].grantCopy({ source: { domid: DOM1, ref: src, offset: 50 }, dest: { gpa: gpa(PAGE_SIZE + 8) }, len: 100 });
      assert.deepEqual(mem[0].bytes.slice(PAGE_SIZE + 8, PAGE_SIZE + 108), data);
      ops[0].grantCopy({ source: { gpa: gpa(PAGE_SIZE + 8) }, dest: { domid: DOM2, ref: dst, offset: 4000 }, len: 96 });
      assert.deepEqual(mem[2].bytes.slice(3 * PAGE_SIZE + 4000, 4 * PAGE_SIZE), data.slice(0, 96));
      ops[0].grantCopy({
        source: { domid: DOM1, ref: src, offset: 50 },
        dest: { domid: DOM2, ref: dst, offset: 0 },
        len: 5,
      });
      assert.deepEqual(mem[2].bytes.slice(3 * PAGE_SIZE, 3 * PAGE_SIZE + 5), data.slice(0, 5));
      assert.ok(idle(DOM1, src) && idle(DOM2, dst));
    });

    it('len 0 is a no-op: nothing is looked up, pinned or copied', () => {
      const { mem, ops, idle } = world();
      mem[0].bytes[0] = 9;
      // Ref 9 of DOM2 was never granted: with len 0 it is not even looked at.
      ops[0].grantCopy({ source: { gpa: gpa(0) }, dest: { domid: DOM2, ref: gref(9), offset: 0 }, len: 0 });
      assert.ok(idle(DOM2, gref(9)));
      assert.ok(mem[2].bytes.every((b) => b === 0));
    });

    it('copy across a page boundary refused (both sides)', () => {
      const { mem, ops, idle } = world();
      const ref = ops[1].grantAccess(DOM0, gfn(2), false);
      const granted = (offset: number): GrantCopySide => ({ domid: DOM1, ref, offset });
      const own = (addr: number): GrantCopySide => ({ gpa: gpa(addr) });
      const cases: Array<[string, GrantCopySide, GrantCopySide, number]> = [
        ['granted source crosses', granted(4000), own(0), 200],
        ['granted dest crosses', own(0), granted(4000), 200],
        ['own source crosses', own(PAGE_SIZE - 10), granted(0), 20],
        ['own dest crosses', granted(0), own(2 * PAGE_SIZE - 1), 2],
        ['offset past the page', granted(PAGE_SIZE + 1), own(0), 0 + 1],
        ['negative offset', granted(-1), own(0), 1],
        ['fractional offset', granted(0.5), own(0), 1],
        ['NaN offset', granted(Number.NaN), own(0), 1],
        ['offset + len overflows near 2^53', granted(Number.MAX_SAFE_INTEGER), own(0), 2],
        ['len over a page', granted(0), own(0), PAGE_SIZE + 1],
        ['negative len', granted(0), own(0), -1],
        ['NaN len', granted(0), own(0), Number.NaN],
        ['own address not an integer', granted(0), own(1.5), 1],
      ];
      mem[1].bytes.fill(0x11, 2 * PAGE_SIZE, 3 * PAGE_SIZE);
      for (const [what, source, dest, len] of cases) {
        assert.throws(
          () => ops[0].grantCopy({ source, dest, len }),
          (e: unknown) => (e as { code?: string }).code === 'PV_ERR_GRANT_BAD_COPY',
          what,
        );
      }
      assert.ok(
        mem[0].bytes.every((b) => b === 0),
        'nothing was copied',
      );
      assert.ok(idle(DOM1, ref));
      // A full page at offset 0 is fine on both sides.
      ops[0].grantCopy({ source: granted(0), dest: own(PAGE_SIZE), len: PAGE_SIZE });
      assert.equal(mem[0].bytes[2 * PAGE_SIZE - 1], 0x11);
    });

    it('an own address outside memory is PV_ERR_OUT_OF_BOUNDS; a malformed side is PV_ERR_GRANT_BAD_COPY', () => {
      const { ops } = world();
      const ref = ops[1].grantAccess(DOM0, gfn(2), false);
      const source = { domid: DOM1, ref, offset: 0 };
      throwsCode(
        () => ops[0].grantCopy({ source, dest: { gpa: gpa(PAGES * PAGE_SIZE) }, len: 1 }),
        'PV_ERR_OUT_OF_BOUNDS',
      );
      throwsCode(() => ops[0].grantCopy({ source, dest: {} as GrantCopySide, len: 1 }), 'PV_ERR_GRANT_BAD_COPY');
    });

    it('holds a transient pin on each granted side while the bytes move, and drops it after', () => {
      const { ops, idle } = world();
      const src = ops[1].grantAccess(DOM0, gfn(2), true);
      const dst = ops[2].grantAccess(DOM0, gfn(3), false);
      const inUse: boolean[] = [];
      const realSet = Uint8Array.prototype.set;
      const stub = sinon.stub(Uint8Array.prototype, 'set').callsFake(function (this: Uint8Array, ...args) {
        inUse.push(ops[1].isGrantInUse(src), ops[2].isGrantInUse(dst));
        return realSet.apply(this, args as Parameters<typeof realSet>);
      });
      try {
        ops[0].grantCopy({
          source: { domid: DOM1, ref: src, offset: 0 },
          dest: { domid: DOM2, ref: dst, offset: 0 },
          len: 64,
        });
      } finally {
        stub.restore();
      }
      assert.deepEqual(inUse, [true, true]);
      assert.ok(idle(DOM1, src) && idle(DOM2, dst));
      ops[1].endAccess(src);
      ops[2].endAccess(dst);
    });
  });

  describe('hostile granter rewriting its entry (bounded retries, reference §6.3 item 16)', () => {
    it('a map gives up after MAX_GRANT_RETRIES lost CASes and leaves no pin', () => {
      const { space, ops, idle } = world();
      const ref = ops[1].grantAccess(DOM0, gfn(2), false);
      const flagsIdx = space.entryBase(DOM1, ref) + GrantWord.FLAGS_DOMID;
      const realCas = Atomics.compareExchange;
      let churn = 0;
      // The guest flips a bit it owns (PWT, bit 5) just before every hypervisor CAS on its flags.
      const fake = (arr: Int32Array, idx: number, expected: number, value: number): number => {
        if (arr === space.words && idx === flagsIdx) {
          churn++;
          space.words[flagsIdx] ^= 1 << 5;
        }
        return realCas(arr, idx, expected, value);
      };
      const stub = sinon.stub(Atomics, 'compareExchange').callsFake(fake as unknown as typeof Atomics.compareExchange);
      try {
        throwsCode(() => ops[0].mapGrants(DOM1, [ref], false), 'PV_ERR_GRANT_BAD_REF', /keep(s)? changing/);
      } finally {
        stub.restore();
      }
      assert.equal(churn, MAX_GRANT_RETRIES);
      assert.ok(idle(DOM1, ref));
    });
  });

  describe('GrantTableSpace.releaseDomain', () => {
    it('releaseDomain drops pins held by a dead grantee and ends a dead granter\u2019s free grants', () => {
      const { space, ops, idle } = world();
      // DOM2 as grantee: maps a grant of DOM1, then dies without unmapping.
      const toDead = ops[1].grantAccess(DOM2, gfn(1), false);
      ops[2].mapGrants(DOM1, [toDead], true);
      // DOM2 as granter: one free grant, one mapped by DOM0.
      const free = ops[2].grantAccess(DOM0, gfn(1), false);
      const mapped = ops[2].grantAccess(DOM0, gfn(2), false);
      const m = ops[0].mapGrants(DOM2, [mapped], false);
      // DOM2 also died holding an entry lock (inside a critical section).
      const lockedBase = space.entryBase(DOM1, 30);
      space.lock(lockedBase, DOM2 + 1);

      const report = space.releaseDomain(DOM2);
      assert.deepEqual(report, { endedGrants: 1, stillMapped: 1, droppedPins: 1, brokenLocks: 1 });
      assert.ok(idle(DOM1, toDead));
      ops[1].endAccess(toDead);
      assert.equal(space.snapshot(DOM2, free).flags, 0);
      assert.equal(
        space.snapshot(DOM2, mapped).flags & GTF_permit_access,
        GTF_permit_access,
        'a mapping is not revoked',
      );
      assert.equal(space.snapshot(DOM1, 30).lock, 0);

      // Once the live mapper unmaps, a second release ends the rest (idempotent).
      ops[0].unmapGrant(m.handle);
      assert.deepEqual(space.releaseDomain(DOM2), { endedGrants: 1, stillMapped: 0, droppedPins: 0, brokenLocks: 0 });
      assert.equal(space.snapshot(DOM2, mapped).flags, 0);
    });

    it('leaves other domains\u2019 grants, pins and locks alone', () => {
      const { space, ops } = world();
      const ref = ops[1].grantAccess(DOM0, gfn(1), false);
      const m = ops[0].mapGrants(DOM1, [ref], false);
      const base = space.entryBase(DOM1, 31);
      space.lock(base, HOST_LOCK_OWNER);
      assert.deepEqual(space.releaseDomain(DOM2), { endedGrants: 0, stillMapped: 0, droppedPins: 0, brokenLocks: 0 });
      assert.equal(space.snapshot(DOM1, ref).readPins, 1);
      assert.equal(space.snapshot(DOM1, 31).lock, HOST_LOCK_OWNER);
      space.unlock(base);
      ops[0].unmapGrant(m.handle);
    });
  });
});
