/**
 * Test program: binds to the holder's port and maps its grant, reports `bound`, then waits until
 * its port is woken by the holder's death and checks what a peer of a dead domain sees.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';
import { domId, evtchnPort, grantRef } from '../../../../protocol/Types.js';

async function until(read: () => Promise<string | undefined>): Promise<string> {
  for (;;) {
    const v = await read();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 2));
  }
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const holder = domId(env.args.holder as number);
  const dir = `/local/domain/${holder}/data`;
  await until(() => hc.store.tryRead(`${dir}/ready`));
  const ref = grantRef(Number(await hc.store.read(`${dir}/ref`)));
  const port = hc.evtchn.bindInterdomain(holder, evtchnPort(Number(await hc.store.read(`${dir}/port`))));
  const map = hc.grant.mapGrants(holder, [ref], true);
  const firstBytes = Array.from(map.view.subarray(0, 4));
  hc.evtchn.testAndClearPending(port); // bind leaves the port pending; consume that event
  await hc.store.write(`/local/domain/${hc.domid}/bound`, '1');
  // Wait for the holder's death to wake us.
  for (;;) {
    const snap = hc.evtchn.wakeSnapshot();
    if (hc.evtchn.testAndClearPending(port)) break;
    hc.evtchn.waitForEvent(snap, { spinBudget: 0, timeoutMs: 50 });
    await new Promise((r) => setImmediate(r));
  }
  let notifyAfterDeath = 'ok';
  try {
    hc.evtchn.notify(port);
  } catch (err) {
    notifyAfterDeath = (err as { code: string }).code;
  }
  const stillMapped = hc.grant.liveMappings();
  hc.grant.unmapGrant(map.handle);
  return { firstBytes, notifyAfterDeath, stillMapped, liveAfterUnmap: hc.grant.liveMappings() };
}
