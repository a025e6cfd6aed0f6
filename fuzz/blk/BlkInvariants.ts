/**
 * The invariants that hold between two cases of the blk target, whatever the adversary did:
 *  - no map of an ungranted page (RecordingGrants) and no device call outside a live mapping or
 *    revocation of a mapped grant (AdvDevice.ts), both recorded while the case ran;
 *  - the serving round never threw (`blk/loop:threw`), and no ring was halted for anything but
 *    a producer overflow (`blk/loop:handler-threw`: a handler must answer, never throw);
 *  - dom0 holds exactly one mapping per connected ring: every data mapping ended with its
 *    request (`blk/grant:data-mapping-held`);
 *  - the adversary's never-granted canary and its read-only granted pages are unchanged.
 */

import type { Violation } from '../core/FuzzTarget.js';
import type { RecordingGrants } from '../core/RecordingGrants.js';
import type { WatchedDevice } from './AdvDevice.js';
import type { AdvGuest } from './AdvGuest.js';
import type { BlkWorld } from './BlkWorld.js';

/** The checks; `thrown` is the message of a serving round that threw during the case. */
export function caseChecks(
  world: BlkWorld,
  recorder: RecordingGrants,
  watched: readonly WatchedDevice[],
  adv: AdvGuest,
  thrown: string | undefined,
): Violation[] {
  const out: Violation[] = recorder.take();
  for (const d of watched) out.push(...d.violations.splice(0));
  if (thrown !== undefined) out.push({ signature: 'blk/loop:threw', detail: thrown });
  for (const line of world.log.splice(0)) {
    if (!line.includes('PV_ERR_RING_PROD_OVERFLOW')) out.push({ signature: 'blk/loop:handler-threw', detail: line });
  }
  const live = world.dom0.grant.liveMappings();
  if (live !== world.backend.connections) {
    out.push({
      signature: 'blk/grant:data-mapping-held',
      detail: `dom0 holds ${live} mappings between requests with ${world.backend.connections} rings connected`,
    });
  }
  for (const v of [adv.canary.check('blk/mem:canary-changed'), adv.readOnly.check('blk/mem:readonly-page-changed')]) {
    if (v !== undefined) out.push(v);
  }
  return out;
}

/** The backend's halt lines (BlkBackend's log) for the adversary's vbd `devid`, into `out`. */
export function haltsOf(log: readonly string[], adv: number, devid: number, out: string[]): string[] {
  const tag = `dom${adv} vbd ${devid} halted`;
  out.length = 0;
  for (const line of log) if (line.includes(tag)) out.push(line);
  return out;
}
