/**
 * Issue 9's performance targets, each a ratio of two figures measured in ONE `pvio compare` run
 * (cells, the in-run floors, the 16-guest scale cell): what `pvio compare` prints after its
 * tables with ✓/✗, what `targets.json` holds and what `npm run bench:check` compares with its
 * baseline. A ratio whose inputs did not run (a transport left out, a failed cell) is reported as
 * not measured — never guessed.
 */

import { type CellKey, type CompareResults, findCell } from './Results.js';

/** How a ratio is judged. */
export type TargetOp = '<=' | '>=' | 'report';

/** One target of the table. */
export interface TargetRow {
  /** Stable key (baselines refer to it). */
  readonly id: string;
  readonly label: string;
  readonly op: TargetOp;
  /** The bound (absent for 'report'). */
  readonly target?: number;
  /** The measured ratio; undefined when an input is missing from this run. */
  readonly value?: number;
  /** Met (undefined for 'report' rows and unmeasured ones). */
  readonly pass?: boolean;
  /** The two figures the ratio divides, or why it is missing. */
  readonly detail: string;
}

const MiB = 1 << 20;
const w = (transport: CellKey['transport'], kind: CellKey['kind'], size: number): CellKey => ({
  transport,
  op: 'write',
  kind,
  size,
});

function sizeName(n: number): string {
  return n >= MiB ? `${n / MiB} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`;
}

function row(
  id: string,
  label: string,
  op: TargetOp,
  target: number | undefined,
  num: number | undefined,
  den: number | undefined,
  fmt: (num: number, den: number) => string,
  missing: string,
): TargetRow {
  if (num === undefined || den === undefined || !Number.isFinite(num) || !Number.isFinite(den) || den <= 0) {
    return { id, label, op, target, detail: `not measured: ${missing}` };
  }
  const value = num / den;
  const pass = op === 'report' || target === undefined ? undefined : op === '<=' ? value <= target : value >= target;
  return { id, label, op, target, value, pass, detail: fmt(num, den) };
}

/** Every target of issue 9 for the run `r`. */
export function computeTargets(r: CompareResults): TargetRow[] {
  const lat = (k: CellKey) => {
    const c = findCell(r, k);
    return c?.error === undefined ? c?.lat : undefined;
  };
  const bw = (k: CellKey) => {
    const c = findCell(r, k);
    return c?.error === undefined ? c?.bw : undefined;
  };
  const us = (a: number, b: number) => `${a.toFixed(2)} µs / ${b.toFixed(2)} µs`;
  const mibs = (a: number, b: number) => `${a.toFixed(0)} MiB/s / ${b.toFixed(0)} MiB/s`;
  const pv64 = lat(w('paravirt', 'lat', 64));
  const pt64 = lat(w('passthrough', 'lat', 64));
  const tcp64 = lat(w('tcp', 'lat', 64));
  const out: TargetRow[] = [
    row(
      'pv/tcp-lat-64',
      'paravirt / tcp, 64 B WRITE latency (t_typical)',
      '<=',
      0.1,
      pv64?.tTypical,
      tcp64?.tTypical,
      us,
      'paravirt and tcp write_lat 64 B',
    ),
    row(
      'pv/pt-lat-64',
      'paravirt / passthrough, 64 B WRITE latency',
      '<=',
      2,
      pv64?.tTypical,
      pt64?.tTypical,
      us,
      'paravirt and passthrough write_lat 64 B',
    ),
    row(
      'pt/floor-lat-64',
      'passthrough 64 B latency / in-run spinning half round trip',
      '<=',
      3,
      pt64?.tTypical,
      r.floors.handoffSpinRttUs.median / 2,
      us,
      'passthrough write_lat 64 B',
    ),
  ];
  // Bandwidth at every size ≥ 1 MiB the run has for both transports.
  const big = [
    ...new Set(r.cells.filter((c) => c.op === 'write' && c.kind === 'bw' && c.size >= MiB).map((c) => c.size)),
  ].sort((a, b) => a - b);
  for (const size of big.length > 0 ? big : [MiB]) {
    out.push(
      row(
        `pv/pt-bw-${size}`,
        `paravirt / passthrough, WRITE bandwidth ${sizeName(size)}`,
        '>=',
        0.95,
        bw(w('paravirt', 'bw', size))?.avgMiBps,
        bw(w('passthrough', 'bw', size))?.avgMiBps,
        mibs,
        `paravirt and passthrough write_bw ${sizeName(size)}`,
      ),
    );
  }
  const pv4m = bw(w('paravirt', 'bw', 4 * MiB));
  const pvBw64 = bw(w('paravirt', 'bw', 64));
  const pvLat = pv64?.usec;
  out.push(
    row(
      'pv/memcpy-bw-4MiB',
      'paravirt 4 MiB bandwidth / in-run memcpy bandwidth',
      '>=',
      0.8,
      pv4m?.avgMiBps,
      r.floors.memcpyMiBps,
      mibs,
      'paravirt write_bw 4 MiB',
    ),
    row(
      'pv/ring-rate-64',
      `paravirt 64 B message rate (tx depth ${pvBw64?.txDepth ?? 128}) / in-run raw ring rate`,
      '>=',
      0.5,
      pvBw64?.mpps,
      r.floors.ringMps,
      (a, b) => `${a.toFixed(3)} M msg/s / ${b.toFixed(2)} M msg/s`,
      r.floors.ringMps === undefined ? 'the raw ring floor' : 'paravirt write_bw 64 B',
    ),
    row(
      'pv/tail-lat-64',
      'paravirt 64 B latency, p99.9 / median',
      '<=',
      5,
      pvLat?.p999,
      pvLat?.median,
      us,
      'paravirt write_lat 64 B',
    ),
    row(
      'scale/aggregate',
      `${r.scale?.guests ?? 16} guests on one backend: aggregate rate / one guest's`,
      '>=',
      0.8,
      r.scale?.aggregateOpsPerSec,
      r.scale?.oneGuestOpsPerSec,
      (a, b) => `${a.toFixed(0)} ops/s / ${b.toFixed(0)} ops/s`,
      'the scale cell (needs paravirt write)',
    ),
    row(
      'scale/jain',
      `${r.scale?.guests ?? 16} guests on one backend: Jain fairness index`,
      '>=',
      0.95,
      r.scale?.jain,
      r.scale === undefined ? undefined : 1,
      (a) => `over ${r.scale?.perGuestOpsPerSec.length ?? 0} guests' rates: ${a.toFixed(3)}`,
      'the scale cell (needs paravirt write)',
    ),
    row(
      'copy/pv-bw-4MiB',
      'paravirt-copy / paravirt, 4 MiB bandwidth (expected ≈ 0.5: the copy)',
      'report',
      undefined,
      bw(w('paravirt-copy', 'bw', 4 * MiB))?.avgMiBps,
      pv4m?.avgMiBps,
      mibs,
      'paravirt-copy and paravirt write_bw 4 MiB',
    ),
  );
  return out;
}

/** The section `pvio compare` prints. */
export function formatTargets(rows: readonly TargetRow[]): string {
  const lines = ['', 'targets (issue 9: ratios of figures measured in this run)'];
  const w0 = Math.max(...rows.map((t) => t.label.length));
  for (const t of rows) {
    const bound = t.op === 'report' ? 'report' : `${t.op === '<=' ? '≤' : '≥'} ${t.target}`;
    const mark = t.value === undefined ? '·' : t.pass === undefined ? ' ' : t.pass ? '✓' : '✗';
    const value = t.value === undefined ? '—' : t.value.toFixed(t.value >= 10 ? 1 : 3);
    lines.push(`  ${mark} ${t.label.padEnd(w0)}  ${value.padStart(7)}  ${bound.padEnd(8)}  ${t.detail}`);
  }
  const measured = rows.filter((t) => t.pass !== undefined);
  lines.push(
    `  ${measured.filter((t) => t.pass).length} of ${measured.length} targets met (✓ met, ✗ missed, · not measured)`,
  );
  return `${lines.join('\n')}\n`;
}
