/**
 * Test program: grants one page to the domain named in `args.peer`, allocates an unbound port
 * for it, publishes both under its own `data/` directory, then idles until killed.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';
import { domId, gfnOf } from '../../../../protocol/Types.js';

export default async function main(env: DomainEnv): Promise<never> {
  const hc = env.hypercalls;
  const peer = domId(env.args.peer as number);
  const page = hc.memory.allocPages(1);
  hc.memory.view(page, 4).set([1, 2, 3, 4]);
  const ref = hc.grant.grantAccess(peer, gfnOf(page), false);
  const port = hc.evtchn.allocUnbound(peer);
  const dir = `/local/domain/${hc.domid}/data`;
  // Our subtree is private by default: let the peer read this directory (children inherit).
  await hc.store.mkdir(dir);
  await hc.store.setPerms(dir, [
    { domid: hc.domid, read: true, write: true },
    { domid: peer, read: true, write: false },
  ]);
  await hc.store.write(`${dir}/ref`, String(ref));
  await hc.store.write(`${dir}/port`, String(port));
  await hc.store.write(`${dir}/ready`, '1');
  // Idle forever (the host crashes us); keep the event loop alive.
  return new Promise<never>(() => setInterval(() => {}, 1 << 30));
}
