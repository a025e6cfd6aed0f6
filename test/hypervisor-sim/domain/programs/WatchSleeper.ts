/**
 * Test program: watches `data/poke` under its own directory, says `ready`, then sleeps in
 * `Atomics.wait` (waitForEvent, 20 s bound) with no event channel bound. Only a kick of its wake
 * word can end that sleep early; it returns whether the last sleep was woken (not timed out) and
 * what the watch then saw.
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
  // The store posts a message, then kicks: the reply to that write can be delivered before its
  // kick lands (a loaded machine deschedules the store thread in between), and a late kick ends
  // the first sleep. So sleep again until the watch event has arrived — each round a fresh
  // snapshot — bounded by rounds; a sleep that times out (20 s) means no kick came at all.
  let woken = false;
  for (let round = 0; round < 5 && fired.length === 0; round++) {
    const snap = hc.evtchn.wakeSnapshot();
    woken = hc.evtchn.waitForEvent(snap, { spinBudget: 0, timeoutMs: 20_000 });
    if (!woken) break;
    // Back in the event loop: the message whose kick ended the sleep is delivered now.
    for (let i = 0; i < 100 && fired.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
  }
  return { woken, fired };
}
