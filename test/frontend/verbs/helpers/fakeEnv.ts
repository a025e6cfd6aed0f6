/**
 * A DomainEnv for single-thread verbs tests: real guest memory and (optionally) a real store
 * client; grant and event-channel operations are not part of these tests and throw if touched.
 */

import { SharedArrayGuestMemory } from '../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { EvtchnOps, GrantOps, StoreOps } from '../../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../../protocol/Pci.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import type { DomId } from '../../../../protocol/Types.js';

function unavailable<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get(_t, key) {
      throw new Error(`${what}.${String(key)} is not part of this test`);
    },
  });
}

/** Builds an env for domain `domid` with `pages` of memory. */
export function fakeEnv(
  domid: DomId,
  opts: { pages?: number; store?: StoreOps; devices?: DeviceAttachment[]; memory?: SharedArrayGuestMemory } = {},
): DomainEnv & { memory: SharedArrayGuestMemory } {
  const memory = opts.memory ?? SharedArrayGuestMemory.create(domid, (opts.pages ?? 256) * 4096);
  return {
    domid,
    name: `dom${domid}`,
    memory,
    hypercalls: {
      domid,
      memory,
      grant: unavailable<GrantOps>('grant'),
      evtchn: unavailable<EvtchnOps>('evtchn'),
      store: opts.store ?? unavailable<StoreOps>('store'),
    },
    devices: opts.devices ?? [],
    args: {},
    log: () => {},
  };
}
