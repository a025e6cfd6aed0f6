/**
 * The grant oracle over the simulator's host-wide grant tables: it reads the granter's entry
 * the way a hypervisor would find it (flags and grantee in word 0), independently of the
 * SimGrantOps code whose decisions RecordingGrants cross-checks.
 */

import type { GrantTableSpace } from '../../hypervisor-sim/grant/GrantTableSpace.js';
import type { GrantOracle } from './RecordingGrants.js';

/** An oracle reading `space`; a ref or domain outside the tables gives undefined. */
export function tableOracle(space: GrantTableSpace): GrantOracle {
  const { maxDomains, entriesPerDomain } = space.config;
  return (granter, ref) => {
    if (!Number.isInteger(granter) || granter < 0 || granter >= maxDomains) return undefined;
    if (!Number.isInteger(ref) || ref < 0 || ref >= entriesPerDomain) return undefined;
    const s = space.snapshot(granter, ref);
    return { flags: s.flags, domid: s.domid };
  };
}
