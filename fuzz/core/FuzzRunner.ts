/**
 * The fuzz loop behind `pvio fuzz`: sets a target up once, runs cases until the time or case
 * budget is spent (case i gets its own seed, Rng.ts `caseSeed`), counts cases, adversarial and
 * honest requests, and keeps every distinct failure signature with the FIRST case seed that
 * produced it (the reproducer) and how often it recurred. Progress goes to `progress` at most
 * once a second; the final report is plain data (FuzzReport), rendered by `formatReport`.
 *
 * A case that throws is itself a failure (`<target>/fuzzer:case-threw`): the target catches
 * everything the backend may throw, so a throw reaching here is a bug in the target or a throw
 * out of the backend the target did not expect — either way it is reported, and the run goes on.
 */

import type { FuzzTarget, Violation } from './FuzzTarget.js';
import { caseSeed, XorShiftRng } from './Rng.js';

/** Budget and seed of a run. */
export interface FuzzOptions {
  /** Run seed (case 0 uses it as is). */
  readonly seed: number;
  /** Stop after this many seconds (checked between cases). */
  readonly seconds?: number;
  /** Stop after this many cases. */
  readonly cases?: number;
  /** Progress lines (at most one per second); default: none. */
  readonly progress?: (line: string) => void;
  /** Clock in ms (tests); default performance.now. */
  readonly now?: () => number;
}

/** One distinct failure. */
export interface SignatureReport {
  readonly signature: string;
  /** Seed of the first case that showed it: `--seed <it> --cases 1` replays that case. */
  readonly firstSeed: number;
  /** Index of that case in this run (`--seed <run seed> --cases <index + 1>` replays the run). */
  readonly firstCase: number;
  readonly count: number;
  readonly detail: string;
}

/** What a run did. */
export interface FuzzReport {
  readonly target: string;
  readonly seed: number;
  readonly cases: number;
  readonly requests: number;
  readonly honest: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly violations: number;
  readonly signatures: readonly SignatureReport[];
  /** The target's own counters (FuzzTarget.counters), if it has any. */
  readonly counters?: Readonly<Record<string, number>>;
}

interface Sig {
  firstSeed: number;
  firstCase: number;
  count: number;
  detail: string;
}

/** Runs `target`; see the file comment. */
export async function runFuzz(target: FuzzTarget, opts: FuzzOptions): Promise<FuzzReport> {
  const now = opts.now ?? (() => performance.now());
  const maxCases = opts.cases ?? Number.POSITIVE_INFINITY;
  const maxMs = opts.seconds === undefined ? Number.POSITIVE_INFINITY : opts.seconds * 1000;
  if (maxCases === Number.POSITIVE_INFINITY && maxMs === Number.POSITIVE_INFINITY) {
    throw new Error('runFuzz needs a budget: seconds or cases');
  }
  const sigs = new Map<string, Sig>();
  let violations = 0;
  const note = (v: Violation, seed: number, index: number): void => {
    violations++;
    const s = sigs.get(v.signature);
    if (s) s.count++;
    else sigs.set(v.signature, { firstSeed: seed, firstCase: index, count: 1, detail: v.detail });
  };
  const runSeed = opts.seed >>> 0;
  const t0 = now();
  await target.setup(runSeed);
  let cases = 0;
  let requests = 0;
  let honest = 0;
  let lastProgress = t0;
  while (cases < maxCases && now() - t0 < maxMs) {
    const seed = caseSeed(runSeed, cases);
    try {
      const r = await target.runCase(new XorShiftRng(seed), seed);
      requests += r.requests;
      honest += r.honest;
      for (const v of r.violations) note(v, seed, cases);
    } catch (err) {
      note({ signature: `${target.name}/fuzzer:case-threw`, detail: String(err) }, seed, cases);
    }
    cases++;
    const t = now();
    if (opts.progress && t - lastProgress >= 1000) {
      lastProgress = t;
      const secs = (t - t0) / 1000;
      opts.progress(
        `${target.name}: ${secs.toFixed(0)} s, ${cases} cases, ${requests} requests (${Math.round(requests / secs)}/s), ${sigs.size} signatures`,
      );
    }
  }
  let end: readonly Violation[];
  try {
    end = await target.teardown();
  } catch (err) {
    end = [{ signature: `${target.name}/fuzzer:teardown-threw`, detail: String(err) }];
  }
  for (const v of end) note(v, runSeed, cases);
  const seconds = (now() - t0) / 1000;
  return {
    target: target.name,
    seed: runSeed,
    cases,
    requests,
    honest,
    seconds,
    requestsPerSecond: seconds > 0 ? Math.round(requests / seconds) : 0,
    violations,
    signatures: [...sigs].map(([signature, s]) => ({ signature, ...s })),
    counters: target.counters?.(),
  };
}

/** A human-readable report. */
export function formatReport(r: FuzzReport): string {
  const lines = [
    `fuzz ${r.target}: seed ${r.seed}, ${r.cases} cases in ${r.seconds.toFixed(1)} s`,
    `  adversarial requests ${r.requests} (${r.requestsPerSecond}/s), honest requests ${r.honest}`,
    `  invariant violations ${r.violations}, distinct signatures ${r.signatures.length}`,
  ];
  if (r.counters) {
    lines.push(
      `  ${Object.entries(r.counters)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }
  for (const s of r.signatures) {
    lines.push(
      `  ${s.signature}  ×${s.count}  reproduce: pvio fuzz --backend ${r.target} --seed ${s.firstSeed} --cases 1` +
        `  (or --seed ${r.seed} --cases ${s.firstCase + 1})`,
      `      ${s.detail}`,
    );
  }
  return lines.join('\n');
}
