/**
 * Whole-run checks once every guest has closed its vbd (XSA-331/350/371: nothing of a
 * disconnected frontend may stay mapped or referenced): dom0 holds no mapping, every map the
 * backend made was unmapped, no grant entry anywhere still carries a pin, the backend serves no
 * connection and its ring server no ring, and its serving loop never threw during the run.
 */

import { GRANT_ENTRY_WORDS, GrantWord } from '../../hypervisor-sim/grant/GrantTableSpace.js';
import type { DomId, EvtchnPort } from '../../protocol/Types.js';
import type { Violation } from '../core/FuzzTarget.js';
import type { RecordingGrants } from '../core/RecordingGrants.js';
import type { BlkWorld } from './BlkWorld.js';

/** Ports of dom0 not closed (the event channels of every connection must be gone). */
function openPorts(world: BlkWorld): number {
  let open = 0;
  for (let p = 1; p < 64; p++) if (world.dom0.evtchn.status(p as EvtchnPort).state !== 'closed') open++;
  return open;
}

/** What a run starts from, to compare with at teardown. */
export interface BlkBase {
  /** Free pages of each guest once its long-lived buffers were allocated. */
  readonly freePages: ReadonlyMap<DomId, number>;
}

/** The checks; see the file comment. Call after the guests closed, before `world.close()`. */
export function teardownChecks(
  world: BlkWorld,
  recorder: RecordingGrants,
  serveThrew: number,
  base: BlkBase,
): Violation[] {
  const out: Violation[] = [...recorder.take()];
  const ports = openPorts(world);
  if (ports !== 0) out.push({ signature: 'blk/teardown:port-left', detail: `${ports} dom0 event channels still open` });
  for (const g of world.guests) {
    const want = base.freePages.get(g.domid);
    if (want !== undefined && g.mem.freePageCount() !== want) {
      out.push({
        signature: 'blk/teardown:pages-held',
        detail: `dom${g.domid} has ${g.mem.freePageCount()} free pages, ${want} before its vbds connected`,
      });
    }
  }
  const live = world.dom0.grant.liveMappings();
  if (live !== 0) {
    out.push({ signature: 'blk/teardown:mapping-leak', detail: `dom0 still holds ${live} grant mappings` });
  }
  const r = recorder.record;
  if (r.maps !== r.unmaps) {
    out.push({ signature: 'blk/teardown:map-unbalanced', detail: `${r.maps} maps but ${r.unmaps} unmaps` });
  }
  const words = world.grants.words;
  let pinned = 0;
  for (let base = 0; base < words.length; base += GRANT_ENTRY_WORDS) {
    // ORDERING: seq-cst loads; nothing runs concurrently at teardown.
    if (Atomics.load(words, base + GrantWord.READ_PINS) + Atomics.load(words, base + GrantWord.WRITE_PINS) > 0) {
      pinned++;
    }
  }
  if (pinned > 0) out.push({ signature: 'blk/teardown:pins-left', detail: `${pinned} grant entries still pinned` });
  if (world.backend.connections !== 0 || world.server.size !== 0) {
    out.push({
      signature: 'blk/teardown:connection-left',
      detail: `${world.backend.connections} connections, ${world.server.size} rings still served`,
    });
  }
  if (serveThrew > 0) {
    out.push({ signature: 'blk/loop:threw', detail: `the serving round threw ${serveThrew} times` });
  }
  return out;
}
