/**
 * Test program: watches `data/poke` under its own directory, says `ready`, then sleeps in
 * `Atomics.wait` (waitForEvent, 20 s bound) with no event channel bound. Only a kick of its wake
 * word can end that sleep early; it returns whether it was woken and what the watch then saw.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';

export default async function main(env: DomainEnv): Promise<{ woken: boolean; fired: string[] }> {
  const hc = env.hypercalls;
  const dir = `/local/domain/${env.domid}/data`;
  const fired: string[] = [];
  let registered!: () => void;
  const first = new Promise<void>((resolve) => {
    registered = resolve;
  });
  await hc.store.watch(`${dir}/poke`, (path) => {
    fired.push(path);
    registered();
  });
  await first; // the watch fires once on registration
  fired.length = 0;
  await hc.store.write(`${dir}/ready`, '1');
  // The reply to that write was posted (and kicked) before we take the snapshot.
  const snap = hc.evtchn.wakeSnapshot();
  const woken = hc.evtchn.waitForEvent(snap, { spinBudget: 0, timeoutMs: 20_000 });
  // Back in the event loop: the watch event that caused the kick is delivered now.
  for (let i = 0; i < 100 && fired.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
  return { woken, fired };
}
