/**
 * Test program: two guests ("opener" and "follower") exercise the host-wide stage window across
 * threads. Each spends a moment in GRANT before the window (setup that must not count); once both
 * have, the opener opens the window, the follower then spends a moment in RING (inside the
 * window), the opener closes it, and the follower spends a moment in FABRIC after it (must not
 * count). The guests meet through the store between the steps, so the order holds whatever the
 * scheduling.
 */

import { exchangeConnInfo } from '../../../../frontend/verbs/Connect.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Stage, stages } from '../../../../protocol/stage/StageLedger.js';

/** Spends at least 1 ms of wall time in `stage`, so the section is never empty. */
function section(stage: Stage): void {
  const prev = stages.enter(stage);
  const end = performance.now() + 1;
  while (performance.now() < end) {
    // spin: a section with a measurable length
  }
  stages.enter(prev);
}

export default async function main(env: DomainEnv): Promise<{ role: string }> {
  const a = env.args as { self: 'opener' | 'follower'; peers: Record<string, number> };
  const opener = a.self === 'opener';
  const peerDomid = a.peers[opener ? 'follower' : 'opener'];
  const meet = (name: string) => exchangeConnInfo(env, { peerDomid, name, info: { step: 1 } });
  section(Stage.GRANT);
  await meet('setup-done');
  if (opener) stages.openWindow();
  await meet('opened');
  if (!opener) section(Stage.RING);
  await meet('ring-done');
  if (opener) stages.closeWindow();
  await meet('closed');
  if (!opener) section(Stage.FABRIC);
  return { role: a.self };
}
