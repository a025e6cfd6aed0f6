/**
 * `pvio reproduce` — re-runs the seed papers' headline experiments and prints, row by row, the
 * published figure, pvio's measured figure from this run, and the SHAPE that can be compared
 * across machines (a ratio between two I/O paths measured the same way). Absolute numbers differ
 * by design — pvio runs on threads, the papers on InfiniBand/10 GbE/PCIe hardware — so a row is
 * judged by its ratio. A row whose published claim is an added latency (lent NVMe: "+<1 µs for two
 * NTB crossings") is judged by the DIFFERENCE of the two medians instead, printed in µs, with the
 * lent path's NTB crossings and modelled fabric time per I/O beside it. Rows whose feature is not
 * built yet say so instead of printing a number.
 *
 * Sources (../shared/reference/rdma-perftest-lending.md §6).
 */

import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { pvError } from '../../protocol/errors.js';
import { runAccelPingPong } from '../accel/PingPong.js';
import { CellRunner } from './CellRunner.js';
import type { CellPlan } from './Matrix.js';
import { Progress } from './Progress.js';
import { type CellResult, type CompareKind, type CompareOp, type CompareTransport, isBlockOp } from './Results.js';

/** One side of a published comparison, and how pvio measures the same thing. */
interface Side {
  readonly label: string;
  readonly published: string;
  readonly transport: CompareTransport;
  readonly op: CompareOp;
  readonly kind: CompareKind;
  readonly size: number;
}

/** A published experiment: ratio `a / b` of two figures, or (shape 'difference') `a − b`. */
export interface ReproRow {
  readonly source: string;
  readonly metric: string;
  readonly a: Side;
  readonly b: Side;
  /** How the two figures compare (default 'ratio'). */
  readonly shape?: 'ratio' | 'difference';
  /** A row measured by its own experiment instead of two compare cells. */
  readonly custom?: 'accel-pingpong';
  /** The published ratio a / b (NaN for a difference row). */
  readonly publishedRatio: number;
  /** Difference rows: the published a − b, µs. */
  readonly publishedDifferenceUs?: number;
  /** Set when pvio cannot run it yet: why, and which issue builds it. */
  readonly notBuilt?: string;
}

const lat = (transport: CompareTransport, op: CompareOp, size = 64) => ({ transport, op, kind: 'lat' as const, size });
const blkLat = (transport: CompareTransport) => ({
  transport,
  op: 'blk-randread' as const,
  kind: 'lat' as const,
  size: 4096,
});
const bw = (transport: CompareTransport, size: number) => ({
  transport,
  op: 'write' as const,
  kind: 'bw' as const,
  size,
});

/** The rows, in the order the reference lists them. */
export const REPRO_ROWS: readonly ReproRow[] = [
  {
    source: 'Nanos & Koziris, "Towards an HPC I/O Framework for Clusters of VMs"',
    metric: 'RDMA message latency: framework (split driver) vs TCP sockets',
    a: { label: 'split driver', published: '28 µs', ...lat('paravirt', 'write') },
    b: { label: 'TCP sockets', published: '77 µs', ...lat('tcp', 'write') },
    publishedRatio: 28 / 77,
  },
  {
    source: 'Xen2MX (cslab), 10 GbE',
    metric: 'throughput: paravirtual vs directly attached',
    a: { label: 'paravirtual', published: '1159 MB/s', ...bw('paravirt', 1 << 20) },
    b: { label: 'direct', published: '1192 MB/s', ...bw('passthrough', 1 << 20) },
    publishedRatio: 1159 / 1192,
  },
  {
    source: 'VMware, "RDMA on vSphere" (DirectPath I/O, QDR IB)',
    metric: 'passthrough: RDMA READ round trip vs SEND half round trip (polling)',
    a: { label: 'RDMA Read', published: '3 µs', ...lat('passthrough', 'read') },
    b: { label: 'Send', published: '1.75 µs', ...lat('passthrough', 'send') },
    publishedRatio: 3 / 1.75,
  },
  {
    source: "Markussen et al., CC'19 §7.2.1 (Device Lending, DMA write bandwidth remote vs local)",
    metric: 'large-transfer DMA bandwidth: lent device vs local (negligible difference from 4 MB)',
    a: { label: 'lent', published: '≈ local', ...bw('lent', 4 << 20) },
    b: { label: 'local', published: '(reference)', ...bw('native', 4 << 20) },
    publishedRatio: 1,
  },
  {
    source: "Markussen et al., CC'19 §7.4 (Device Lending, Optane 900P)",
    metric: 'NVMe 4 KiB read latency: lent vs local (+<1 µs for two NTB crossings)',
    a: { label: 'lent', published: 'local + 0.7 µs', ...blkLat('lent') },
    b: { label: 'local', published: '(reference)', ...blkLat('native') },
    shape: 'difference',
    publishedRatio: Number.NaN,
    publishedDifferenceUs: 0.7,
  },
  {
    source: "Markussen et al., CC'19 §7.2.2 (GPU ping-pong, devices in two lenders vs one)",
    metric: 'accelerator ping-pong RTT: devices in two lenders vs one (+≈ 700 ns, 2 × 350 ns NTB)',
    a: { label: 'two lenders', published: '+≈ 700 ns', ...lat('native', 'write') },
    b: { label: 'one lender', published: '—', ...lat('native', 'write') },
    publishedRatio: Number.NaN,
    shape: 'difference',
    publishedDifferenceUs: 0.7,
    custom: 'accel-pingpong',
  },
];

function figure(c: CellResult | undefined): number | undefined {
  if (c === undefined || c.error) return undefined;
  return c.lat ? c.lat.usec.median : c.bw?.avgMiBps;
}

function unit(s: Side): string {
  return s.kind === 'lat' ? 'µs' : 'MiB/s';
}

/** `+0.70 µs`, `-0.12 µs`. */
export function signedUs(v: number): string {
  return `${v < 0 ? '-' : '+'}${Math.abs(v).toFixed(2)} µs`;
}

/**
 * The two lines of a difference row — published a − b, then pvio's two medians and their
 * difference — and, when side a ran on a lent device, what its NTB path did per timed I/O.
 */
function differenceLines(
  row: ReproRow,
  a: number | undefined,
  b: number | undefined,
  cellA: CellResult | undefined,
  fmt: (v: number | undefined, s: Side) => string,
): string {
  const published = row.publishedDifferenceUs === undefined ? '—' : signedUs(row.publishedDifferenceUs);
  const diff = a !== undefined && b !== undefined ? signedUs(a - b) : '—';
  const lines = [
    `  published: ${row.a.label} ${row.a.published} vs ${row.b.label} ${row.b.published} → difference ${published}`,
    `  pvio:      ${row.a.label} ${fmt(a, row.a)} (${row.a.transport}) vs ${row.b.label} ${fmt(b, row.b)} (${row.b.transport}) → difference ${diff}`,
  ];
  const l = cellA?.lent;
  const ios = cellA?.lat?.iters ?? 0;
  if (l !== undefined && l.scope === 'timed' && ios > 0) {
    lines.push(
      `             ${l.device} per I/O: ${(l.ntbCrossings / ios).toFixed(2)} NTB crossings, ` +
        `${(l.fabricNs / ios / 1000).toFixed(2)} µs modelled fabric time (${l.profile})`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The GPU ping-pong row (CC'19 §7.2.2): two lent accelerators bounce a counter into each other's
 * memory by P2P DMA — both in lender A, or one in A and one in C — on the calibrated fabric; the
 * published shape is the added round-trip time of the two NTB crossings (bench/accel/PingPong.ts).
 */
async function pingPongLines(row: ReproRow, iters: number): Promise<string> {
  const one = await runAccelPingPong({ lenders: 1, profile: 'pcie3-x8-ntb', iters });
  const two = await runAccelPingPong({ lenders: 2, profile: 'pcie3-x8-ntb', iters });
  const us = (ns: number) => ns / 1000;
  const a = us(two.rttNs.summary.median);
  const b = us(one.rttNs.summary.median);
  const published = row.publishedDifferenceUs === undefined ? '—' : signedUs(row.publishedDifferenceUs);
  return [
    `  published: ${row.a.label} ${row.a.published} vs ${row.b.label} → difference ${published}`,
    `  pvio:      ${row.a.label} ${a.toFixed(2)} µs vs ${row.b.label} ${b.toFixed(2)} µs (median round trip) → difference ${signedUs(a - b)}`,
    `             NTB crossings per one-way trip: ${two.ntbCrossingsPerTrip} vs ${one.ntbCrossingsPerTrip}; ` +
      `modelled one-way trip ${two.modelTripNs.toFixed(0)} vs ${one.modelTripNs.toFixed(0)} ns (pcie3-x8-ntb)`,
    '',
  ].join('\n');
}

/** Runs every buildable row's two sides and prints the comparison. */
export async function reproduceMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { 'lat-iters': { type: 'string' } }, strict: true });
  const latIters = values['lat-iters'] === undefined ? 5000 : Number(values['lat-iters']);
  if (!Number.isInteger(latIters) || latIters < 10) throw pvError('PV_ERR_CONFIG', '--lat-iters needs an integer ≥ 10');
  const plans = new Map<string, CellPlan>();
  const key = (s: Side) => `${s.transport}/${s.op}/${s.kind}/${s.size}`;
  for (const row of REPRO_ROWS) {
    if (row.notBuilt || row.custom) continue;
    for (const s of [row.a, row.b]) {
      const iters = s.kind === 'lat' ? latIters : 500;
      // A block side reads a 16 MiB SSD, prefilled before timing.
      const deviceBytes = isBlockOp(s.op) ? 16 << 20 : undefined;
      plans.set(key(s), { ...s, iters, txDepth: s.kind === 'lat' ? 1 : 16, deviceBytes });
    }
  }
  const progress = new Progress(plans.size);
  // Every row runs on the calibrated fabric (NTB hop ≈ 360 ns, Gen3 x8 links, local devices included).
  const runner = new CellRunner(1, 'inline', undefined, progress, 'pcie3-x8-ntb');
  let cells: CellResult[];
  try {
    cells = await runner.cells([...plans.values()]);
  } finally {
    await runner.close();
  }
  progress.finish();
  const byKey = new Map(cells.map((c) => [key({ ...c, label: '', published: '' }), c]));
  const out = process.stdout;
  out.write(`pvio reproduce — ${cpus()[0]?.model.trim() ?? 'cpu'}, ${cpus().length} cores, Node ${process.version}\n`);
  out.write(
    "Published figures beside pvio's, the same shape (a ratio, or an added latency) on both sides; absolute numbers differ by design.\n",
  );
  for (const row of REPRO_ROWS) {
    out.write(`\n${row.metric}\n  source: ${row.source}\n`);
    if (row.notBuilt) {
      out.write(`  published: ${row.a.label} ${row.a.published}; pvio: not built yet — ${row.notBuilt}\n`);
      continue;
    }
    if (row.custom === 'accel-pingpong') {
      out.write(await pingPongLines(row, latIters));
      continue;
    }
    const a = figure(byKey.get(key(row.a)));
    const b = figure(byKey.get(key(row.b)));
    const fmt = (v: number | undefined, s: Side) => (v === undefined ? 'FAILED' : `${v.toFixed(2)} ${unit(s)}`);
    if (row.shape === 'difference') {
      out.write(differenceLines(row, a, b, byKey.get(key(row.a)), fmt));
      continue;
    }
    out.write(
      `  published: ${row.a.label} ${row.a.published} vs ${row.b.label} ${row.b.published} → ratio ${row.publishedRatio.toFixed(2)}\n`,
    );
    const ratio = a !== undefined && b !== undefined ? (a / b).toFixed(2) : '—';
    out.write(
      `  pvio:      ${row.a.label} ${fmt(a, row.a)} (${row.a.transport}) vs ${row.b.label} ${fmt(b, row.b)} (${row.b.transport}) → ratio ${ratio}\n`,
    );
  }
}
