/**
 * One domain of an in-process fuzz world (rdma/PvWorld.ts, blk/BlkWorld.ts): no Worker, but the
 * same hypervisor pieces a domain thread gets — its memory, its own grant and event-channel
 * operations over the world's host-wide tables, a store client — and the Hypercalls the code
 * under test is handed, whose grant operations a world may wrap (a recording or faulting
 * GrantOps on the backend's domain) while `grant` stays the domain's own.
 */

import type { EvtchnSpace } from '../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { SimEvtchnOps } from '../../hypervisor-sim/evtchn/SimEvtchnOps.js';
import type { GrantTableSpace } from '../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../hypervisor-sim/grant/SimGrantOps.js';
import type { IommuContext } from '../../hypervisor-sim/iommu/IommuContext.js';
import type { MemoryDirectory } from '../../hypervisor-sim/memory/MemoryDirectory.js';
import type { SharedArrayGuestMemory } from '../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { LocalStoreClient } from '../../hypervisor-sim/store/LocalStoreClient.js';
import type { XenStore } from '../../hypervisor-sim/store/XenStore.js';
import type { GrantOps, Hypercalls } from '../../protocol/Hypercalls.js';
import type { DomId } from '../../protocol/Types.js';

/** One domain of the world. */
export interface Dom {
  readonly domid: DomId;
  readonly mem: SharedArrayGuestMemory;
  /** The domain's own grant operations (`hc.grant` may wrap them). */
  readonly grant: SimGrantOps;
  readonly evtchn: SimEvtchnOps;
  readonly store: LocalStoreClient;
  readonly hc: Hypercalls;
}

/** The host-wide state of a world that its domains share. */
export interface WorldSpaces {
  readonly xs: XenStore;
  readonly grants: GrantTableSpace;
  readonly evtchn: EvtchnSpace;
  readonly memories: MemoryDirectory;
}

/**
 * Introduces `domid` (its memory `mem` already in `w.memories`) and builds its operations;
 * `devices` are the IOMMU contexts its grant maps also map for, `wrapGrant` what `hc.grant` is.
 */
export function makeDom(
  w: WorldSpaces,
  domid: DomId,
  mem: SharedArrayGuestMemory,
  devices?: Map<string, IommuContext>,
  wrapGrant: (g: SimGrantOps) => GrantOps = (g) => g,
): Dom {
  w.xs.introduceDomain(domid);
  w.evtchn.resetDomain(domid);
  const grant = new SimGrantOps(domid, w.grants, w.memories, devices === undefined ? {} : { devices });
  const evtchn = new SimEvtchnOps(domid, w.evtchn);
  const store = new LocalStoreClient(w.xs, domid);
  return { domid, mem, grant, evtchn, store, hc: { domid, memory: mem, grant: wrapGrant(grant), evtchn, store } };
}
