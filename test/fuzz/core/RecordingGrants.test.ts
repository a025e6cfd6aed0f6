/**
 * The "every access outside granted pages is recorded" invariant must be able to fail: with a
 * deliberately broken hypervisor underneath (it grants every map and copy), a backend mapping
 * or copying a page the guest did not grant it is reported with its signature — for each way a
 * ref can be wrong (revoked, granted to another domain, read-only, outside the table) — while
 * accesses to pages that were granted are not.
 */

import assert from 'node:assert/strict';
import { type GrantOracle, RecordingGrants } from '../../../fuzz/core/RecordingGrants.js';
import { tableOracle } from '../../../fuzz/core/TableOracle.js';
import { GrantTableSpace } from '../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../hypervisor-sim/grant/SimGrantOps.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { GrantCopyOp, GrantMapping, GrantOps } from '../../../protocol/Hypercalls.js';
import { DOM0, type DomId, type Gfn, type GrantRef, type MapHandle } from '../../../protocol/Types.js';

/** A broken hypervisor: every map and copy succeeds, whatever the entry says. */
class PermissiveGrants implements GrantOps {
  live = 0;
  grantAccess(): GrantRef {
    return 8 as GrantRef;
  }
  endAccess(): void {}
  isGrantInUse(): boolean {
    return false;
  }
  mapGrants(_g: DomId, refs: readonly GrantRef[], writable: boolean): GrantMapping {
    this.live++;
    return { handle: this.live as MapHandle, view: new Uint8Array(refs.length * 4096), writable };
  }
  unmapGrant(): void {
    this.live--;
  }
  grantCopy(_op: GrantCopyOp): void {}
  liveMappings(): number {
    return this.live;
  }
}

function world() {
  const space = GrantTableSpace.create({ maxDomains: 3, entriesPerDomain: 64 });
  const dirs = new MemoryDirectory();
  for (const d of [0, 1, 2]) dirs.addMemory(SharedArrayGuestMemory.create(d as DomId, 16 * 4096));
  const guest = new SimGrantOps(1 as DomId, space, dirs);
  const dom0 = new SimGrantOps(DOM0, space, dirs);
  const valid = guest.grantAccess(DOM0, 1 as Gfn, false);
  const ro = guest.grantAccess(DOM0, 2 as Gfn, true);
  const foreign = guest.grantAccess(2 as DomId, 3 as Gfn, false);
  const revoked = guest.grantAccess(DOM0, 4 as Gfn, false);
  guest.endAccess(revoked);
  return { space, dom0, valid, ro, foreign, revoked, oracle: tableOracle(space) };
}

describe('fuzz RecordingGrants: a backend access to memory the guest did not grant is recorded', () => {
  it('with a broken hypervisor, each kind of ungranted map is reported; granted ones are not', () => {
    const w = world();
    const rec = new RecordingGrants(new PermissiveGrants(), DOM0, w.oracle, 'test');
    rec.mapGrants(1 as DomId, [w.valid], true);
    rec.mapGrants(1 as DomId, [w.ro], false);
    assert.deepEqual(rec.take(), []);
    const cases: Array<[string, GrantRef, boolean, RegExp]> = [
      ['revoked', w.revoked, false, /revoked/],
      ['foreign', w.foreign, false, /granted to dom2/],
      ['read-only mapped writable', w.ro, true, /read-only/],
      ['outside the table', 64 as GrantRef, false, /outside its table/],
      ['u32 edge', 0xffffffff as GrantRef, false, /outside its table/],
    ];
    for (const [what, ref, writable, why] of cases) {
      rec.mapGrants(1 as DomId, [ref], writable);
      const v = rec.take();
      assert.equal(v.length, 1, what);
      assert.equal(v[0].signature, 'test/grant:ungranted-map', what);
      assert.match(v[0].detail, why, what);
    }
  });

  it('with a broken hypervisor, a copy into a read-only grant or from a revoked one is reported', () => {
    const w = world();
    const rec = new RecordingGrants(new PermissiveGrants(), DOM0, w.oracle, 'test');
    rec.grantCopy({ source: { domid: 1 as DomId, ref: w.ro, offset: 0 }, dest: { gpa: 0 as never }, len: 8 });
    rec.grantCopy({ source: { gpa: 0 as never }, dest: { domid: 1 as DomId, ref: w.valid, offset: 0 }, len: 8 });
    assert.deepEqual(rec.take(), []);
    rec.grantCopy({ source: { gpa: 0 as never }, dest: { domid: 1 as DomId, ref: w.ro, offset: 0 }, len: 8 });
    rec.grantCopy({ source: { domid: 1 as DomId, ref: w.revoked, offset: 0 }, dest: { gpa: 0 as never }, len: 8 });
    const v = rec.take();
    assert.deepEqual(
      v.map((x) => x.signature),
      ['test/grant:ungranted-copy', 'test/grant:ungranted-copy'],
    );
  });

  it('over the real hypervisor, the same bad accesses are refused (counted, not violations)', () => {
    const w = world();
    const rec = new RecordingGrants(w.dom0, DOM0, w.oracle, 'test');
    for (const [ref, writable] of [
      [w.revoked, false],
      [w.foreign, false],
      [w.ro, true],
      [64, false],
    ] as Array<[GrantRef, boolean]>) {
      assert.throws(() => rec.mapGrants(1 as DomId, [ref], writable));
    }
    assert.equal(rec.record.refused, 4);
    const m = rec.mapGrants(1 as DomId, [w.valid], true);
    rec.unmapGrant(m.handle);
    assert.deepEqual(rec.take(), []);
    assert.equal(rec.liveMappings(), 0);
  });

  it('an oracle that knows nothing makes every successful access a violation (the check is not vacuous)', () => {
    const none: GrantOracle = () => undefined;
    const rec = new RecordingGrants(new PermissiveGrants(), DOM0, none, 'x');
    rec.mapGrants(1 as DomId, [8 as GrantRef], false);
    assert.equal(rec.take().length, 1);
  });
});
