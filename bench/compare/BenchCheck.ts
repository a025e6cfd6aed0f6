/**
 * `npm run bench:check` (`pvio bench-check [--update] [--runs N] [--tolerance F] [--baseline FILE]`): a
 * regression check of the performance targets, not part of `npm test` (it measures). It runs a
 * small `pvio compare` — write latency and bandwidth at the sizes the targets use, over
 * paravirt, passthrough, paravirt-copy and tcp, with the in-run floors and the 16-guest scale cell
 * — `--runs` times (default 3), takes each target ratio's median over the runs (Targets.ts; one run
 * on 2 cores moves some ratios by half) and compares each with the stored baseline: a ratio
 * that moved the wrong way by more than the tolerance (relative; default 0.3 — single runs on 2
 * cores move that much) is a regression, named, and the command exits 1. `--update` stores this
 * run as the new baseline instead. Report-only ratios are shown, never judged.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { pvError } from '../../protocol/errors.js';
import { parseCompareFlags, runCompare } from './Compare.js';
import { computeTargets, formatTargets, type TargetRow } from './Targets.js';

const DEFAULT_BASELINE = new URL('../../../bench/baseline/targets.json', import.meta.url);
const MiB = 1 << 20;

/** What the baseline file holds. */
export interface TargetBaseline {
  readonly createdAt: string;
  readonly machine: string;
  /** Target id → ratio. */
  readonly values: Readonly<Record<string, number>>;
}

/** One line of the check. */
export interface CheckLine {
  readonly id: string;
  readonly baseline?: number;
  readonly now?: number;
  /** Relative change in the direction that matters (positive = better). */
  readonly better?: number;
  readonly verdict: 'ok' | 'regressed' | 'improved' | 'new' | 'missing' | 'report';
}

/**
 * Compares a run's targets with a baseline: a `≤` ratio regressed when it grew by more than
 * `tolerance` of its baseline, a `≥` ratio when it shrank by more; 'improved' the other way.
 */
export function checkTargets(rows: readonly TargetRow[], base: TargetBaseline, tolerance: number): CheckLine[] {
  return rows.map((t) => {
    const b = base.values[t.id];
    if (t.value === undefined) return { id: t.id, baseline: b, verdict: 'missing' };
    if (b === undefined) return { id: t.id, now: t.value, verdict: 'new' };
    if (t.op === 'report') return { id: t.id, baseline: b, now: t.value, verdict: 'report' };
    const better = t.op === '<=' ? (b - t.value) / b : (t.value - b) / b;
    const verdict = better < -tolerance ? 'regressed' : better > tolerance ? 'improved' : 'ok';
    return { id: t.id, baseline: b, now: t.value, better, verdict };
  });
}

/** Each target's median value over several runs' rows (same ids in the same order), judged again. */
export function medianTargets(runs: readonly (readonly TargetRow[])[]): TargetRow[] {
  return runs[0].map((first, k) => {
    const vs = runs
      .map((rows) => rows[k]?.value)
      .filter((v): v is number => v !== undefined)
      .sort((a, b) => a - b);
    if (vs.length === 0) return first;
    const m = vs.length % 2 === 1 ? vs[vs.length >> 1] : (vs[vs.length / 2 - 1] + vs[vs.length / 2]) / 2;
    const pass =
      first.op === 'report' || first.target === undefined
        ? undefined
        : first.op === '<='
          ? m <= first.target
          : m >= first.target;
    return {
      ...first,
      value: m,
      pass,
      detail: `median of ${vs.length} runs (${vs.map((v) => v.toPrecision(3)).join(', ')})`,
    };
  });
}

/** The check as printed. */
export function formatCheck(lines: readonly CheckLine[], tolerance: number): string {
  const f = (x: number | undefined) => (x === undefined ? '—' : x.toFixed(3));
  const out = [`bench:check against the baseline (tolerance ${(tolerance * 100).toFixed(0)} %)`];
  const w0 = Math.max(...lines.map((l) => l.id.length));
  for (const l of lines) {
    const change =
      l.better === undefined ? '' : `${(Math.abs(l.better) * 100).toFixed(1)} % ${l.better >= 0 ? 'better' : 'worse'}`;
    out.push(
      `  ${l.id.padEnd(w0)}  ${f(l.baseline).padStart(8)} → ${f(l.now).padEnd(8)}  ${l.verdict.padEnd(9)}  ${change}`,
    );
  }
  const bad = lines.filter((l) => l.verdict === 'regressed');
  out.push(bad.length === 0 ? 'no ratio regressed' : `REGRESSED: ${bad.map((l) => l.id).join(', ')}`);
  return `${out.join('\n')}\n`;
}

/** The command. */
export async function benchCheckMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      update: { type: 'boolean', default: false },
      tolerance: { type: 'string', default: '0.3' },
      runs: { type: 'string', default: '3' },
      baseline: { type: 'string' },
    },
    strict: true,
  });
  const tolerance = Number(values.tolerance);
  if (!(tolerance > 0 && tolerance < 10))
    throw pvError('PV_ERR_CONFIG', `--tolerance: a fraction > 0, got '${values.tolerance}'`);
  const file = values.baseline ?? DEFAULT_BASELINE;
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw pvError('PV_ERR_CONFIG', '--runs: an integer in [1, 20]');
  const all: TargetRow[][] = [];
  for (let i = 0; i < runs; i++) {
    process.stderr.write(`bench:check run ${i + 1} of ${runs}\n`);
    const r = await runCompare(
      parseCompareFlags([
        '--quick',
        '--transports',
        'paravirt,passthrough,paravirt-copy,tcp',
        '--ops',
        'write',
        '--kinds',
        'lat,bw',
        '--sizes',
        `64,${MiB},${4 * MiB}`,
        '--no-breakdown',
        '--no-report',
      ]),
    );
    all.push(computeTargets(r));
  }
  const rows = medianTargets(all);
  process.stdout.write(formatTargets(rows));
  const now: TargetBaseline = {
    createdAt: new Date().toISOString(),
    machine: `${cpus()[0]?.model.trim() ?? 'unknown CPU'} × ${cpus().length}, node ${process.version}`,
    values: Object.fromEntries(rows.filter((t) => t.value !== undefined).map((t) => [t.id, t.value as number])),
  };
  if (values.update) {
    writeFileSync(file, `${JSON.stringify(now, null, 2)}\n`);
    process.stdout.write(`\nbaseline written: ${file instanceof URL ? file.pathname : file}\n`);
    return;
  }
  let base: TargetBaseline;
  try {
    base = JSON.parse(readFileSync(file, 'utf8')) as TargetBaseline;
  } catch (err) {
    throw pvError(
      'PV_ERR_CONFIG',
      `no baseline at ${file instanceof URL ? file.pathname : file} (${err instanceof Error ? err.message : String(err)}): run \`npm run bench:check -- --update\` first`,
    );
  }
  const lines = checkTargets(rows, base, tolerance);
  process.stdout.write(`\nbaseline from ${base.createdAt} on ${base.machine}\n${formatCheck(lines, tolerance)}`);
  if (lines.some((l) => l.verdict === 'regressed')) process.exitCode = 1;
}
