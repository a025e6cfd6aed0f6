/**
 * Measures the blk target alone: `node dist/fuzz/blk/BlkRate.js [seconds=10] [seed=1]` runs
 * cases back to back (case i seeded `caseSeed(seed, i)`, as the runner does) and prints cases,
 * adversarial requests per second, honest requests, reconnects and each distinct signature
 * with the first case seed that showed it. The `pvio fuzz` command is the real front end;
 * this is the small measuring loop the brief asks for.
 */

import type { Violation } from '../core/FuzzTarget.js';
import { caseSeed, XorShiftRng } from '../core/Rng.js';
import { BlkTarget } from './BlkTarget.js';

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 10);
  const seed = Number(process.argv[3] ?? 1) >>> 0;
  const target = new BlkTarget();
  await target.setup(seed);
  const first = new Map<string, { seed: number; detail: string; count: number }>();
  const note = (v: Violation, s: number): void => {
    const f = first.get(v.signature);
    if (f === undefined) first.set(v.signature, { seed: s, detail: v.detail, count: 1 });
    else f.count++;
  };
  const t0 = performance.now();
  let cases = 0;
  let requests = 0;
  let honest = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const s = caseSeed(seed, cases);
    const r = await target.runCase(new XorShiftRng(s), s);
    cases++;
    requests += r.requests;
    honest += r.honest;
    for (const v of r.violations) note(v, s);
  }
  const secs = (performance.now() - t0) / 1000;
  const { stats, refusals } = target.world.backend.totals();
  for (const v of await target.teardown()) note(v, seed);
  console.log(
    `blk: ${cases} cases, ${requests} adversarial requests (${Math.round(requests / secs)}/s), ` +
      `${honest} honest, ${target.reconnects} reconnects in ${secs.toFixed(1)} s`,
  );
  console.log(`  actions: ${JSON.stringify(target.actions)}, mutator writes ${target.mutatorWrites}`);
  console.log(`  backend: ${JSON.stringify(stats)}`);
  console.log(`  refusals: ${JSON.stringify(refusals)}`);
  for (const [sig, f] of first) console.log(`  ${sig} ×${f.count} first seed ${f.seed}: ${f.detail}`);
  process.exitCode = first.size > 0 ? 1 : 0;
}

await main();
