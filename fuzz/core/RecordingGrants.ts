/**
 * "Memory is wrapped so that every access outside granted pages is recorded" (issue 7): a
 * GrantOps wrapper for the BACKEND's domain. Every map and copy the backend makes is checked,
 * before it reaches the hypervisor, against an oracle of what the guest really granted (its own
 * grant-table entries): the ref must lie inside the table, the entry must permit access, name
 * the backend's domain as grantee, and not be read-only when the backend maps or copies into it
 * for writing. The call is then passed on. An access the oracle refuses but the hypervisor lets
 * through is a violation (`grant:ungranted-*`): the backend touched memory it was not given.
 * An access both refuse is only counted (the backend asked, the hypervisor said no, and the
 * backend must then answer the request with an error — the other checks see to that).
 *
 * This does not trust the hypervisor simulator's own checks (they are what is being cross-
 * checked), and it does not see raw view reads after an unmap: canary pages (Canary.ts) cover
 * those, as they cover writes through read-only mappings.
 */

import type { GrantCopyOp, GrantCopySide, GrantMapping, GrantOps, MapGrantOptions } from '../../protocol/Hypercalls.js';
import type { DomId, Gfn, GrantRef, MapHandle } from '../../protocol/Types.js';
import type { Violation } from './FuzzTarget.js';

/** What the granter's table says about one ref (undefined: outside the table). */
export interface GrantEntryView {
  /** GTF flags (type bits, readonly, reading/writing). */
  readonly flags: number;
  /** The grantee named in the entry. */
  readonly domid: number;
}

/** Where the oracle reads a granter's entries. */
export type GrantOracle = (granter: number, ref: number) => GrantEntryView | undefined;

/** Xen's GTF bits the check needs (grant_table.h; the simulator uses the same values). */
const GTF_TYPE_MASK = 3;
const GTF_PERMIT_ACCESS = 1;
const GTF_READONLY = 1 << 2;

/** Why an access is outside what was granted, or undefined when it is inside. */
export function grantVerdict(
  oracle: GrantOracle,
  grantee: number,
  granter: number,
  ref: number,
  write: boolean,
): string | undefined {
  const e = oracle(granter, ref);
  if (e === undefined) return `ref ${ref} of dom${granter} is outside its table`;
  if ((e.flags & GTF_TYPE_MASK) !== GTF_PERMIT_ACCESS) return `ref ${ref} of dom${granter} is not granted (revoked)`;
  if (e.domid !== grantee) return `ref ${ref} of dom${granter} is granted to dom${e.domid}, not dom${grantee}`;
  if (write && (e.flags & GTF_READONLY) !== 0) return `ref ${ref} of dom${granter} is read-only`;
  return undefined;
}

/** Counters of the recorded traffic. */
export interface GrantRecord {
  maps: number;
  mappedRefs: number;
  unmaps: number;
  copies: number;
  /** Maps and copies the hypervisor refused. */
  refused: number;
}

/** The wrapper; see the file comment. */
export class RecordingGrants implements GrantOps {
  readonly record: GrantRecord = { maps: 0, mappedRefs: 0, unmaps: 0, copies: 0, refused: 0 };
  private _violations: Violation[] = [];

  /**
   * `inner` is the backend domain's real GrantOps, `self` its domid, `oracle` reads the guests'
   * tables, `prefix` starts every signature (`rdma`, `blk`).
   */
  constructor(
    private readonly _inner: GrantOps,
    private readonly _self: DomId,
    private readonly _oracle: GrantOracle,
    private readonly _prefix: string,
  ) {}

  /** Violations recorded since the last call (and forgets them). */
  take(): Violation[] {
    const v = this._violations;
    this._violations = [];
    return v;
  }

  grantAccess(remote: DomId, frame: Gfn, readonly: boolean): GrantRef {
    return this._inner.grantAccess(remote, frame, readonly);
  }

  endAccess(ref: GrantRef): void {
    this._inner.endAccess(ref);
  }

  isGrantInUse(ref: GrantRef): boolean {
    return this._inner.isGrantInUse(ref);
  }

  mapGrants(granter: DomId, refs: readonly GrantRef[], writable: boolean, opts?: MapGrantOptions): GrantMapping {
    // Decide before the call: the entry is the guest's, and the guest is not racing here.
    const bad: string[] = [];
    for (const ref of refs) {
      const why = grantVerdict(this._oracle, this._self, granter, ref, writable);
      if (why !== undefined) bad.push(why);
    }
    let m: GrantMapping;
    try {
      m = this._inner.mapGrants(granter, refs, writable, opts);
    } catch (err) {
      this.record.refused++;
      throw err;
    }
    this.record.maps++;
    this.record.mappedRefs += refs.length;
    if (bad.length > 0) {
      this._violations.push({
        signature: `${this._prefix}/grant:ungranted-map`,
        detail: `the backend mapped ${writable ? 'writable' : 'read-only'}: ${bad.slice(0, 3).join('; ')}`,
      });
    }
    return m;
  }

  unmapGrant(handle: MapHandle): void {
    this._inner.unmapGrant(handle);
    this.record.unmaps++;
  }

  grantCopy(op: GrantCopyOp): void {
    const bad = [this._sideVerdict(op.source, false), this._sideVerdict(op.dest, true)].filter((x) => x !== undefined);
    try {
      this._inner.grantCopy(op);
    } catch (err) {
      this.record.refused++;
      throw err;
    }
    this.record.copies++;
    if (bad.length > 0) {
      this._violations.push({
        signature: `${this._prefix}/grant:ungranted-copy`,
        detail: `the backend copied ${op.len} bytes: ${bad.join('; ')}`,
      });
    }
  }

  liveMappings(): number {
    return this._inner.liveMappings();
  }

  private _sideVerdict(side: GrantCopySide, write: boolean): string | undefined {
    if ('gpa' in side) return undefined; // the backend's own memory
    return grantVerdict(this._oracle, this._self, side.domid, side.ref, write);
  }
}
