/**
 * `pvio compare` — the headline: runs the matrix (transports × ops × {lat, bw} × sizes), each
 * cell a fresh two-guest scenario in a piscina worker (block cells: one guest doing fio-like
 * 4 KiB randread latency / 128 KiB sequential read bandwidth on nvme0, bench/blk/BlkJob.ts); measures the floors (thread hand-off round
 * trip spinning and with wait/notify, memcpy bandwidth) in the same run; prints one side-by-side
 * table with ratios to native, passthrough and the floors, the per-domain CPU and the per-stage
 * breakdown; writes results/<timestamp>/ (JSON, SVG and PNG plots, Markdown report).
 *
 *   pvio compare [--quick] [--transports a,b] [--ops write,read,send] [--kinds lat,bw] [--sizes 64,4096]
 *                [--concurrency N] [--device-engine inline|dedicated] [--fabric ideal|pcie3-x8-ntb] [--spin-us N]
 *                [--out DIR] [--no-breakdown] [--no-report] [--no-scale] [--no-reg-mr]
 */

import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  FABRIC_PROFILE_NAMES,
  type FabricProfileName,
  isFabricProfileName,
} from '../../hypervisor-sim/pcie/Profiles.js';
import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';
import { measureHandoff, measureMemcpy, measureRing } from '../floor/Floor.js';
import { SPIN_POLLS_PER_US } from '../perftest/PerftestCommand.js';
import { formatRegMr, REGMR_TRANSPORTS, runRegMrBench } from '../regmr/RegMrBench.js';
import { writeReport } from '../report/WriteReport.js';
import { CellRunner } from './CellRunner.js';
import { ALL_OPS, ALL_TRANSPORTS, BLOCK_OPS, planBreakdown, planMatrix } from './Matrix.js';
import { Progress } from './Progress.js';
import {
  type CompareKind,
  type CompareOp,
  type CompareResults,
  type CompareTransport,
  isBlockOp,
  RESULTS_SCHEMA,
} from './Results.js';
import { runScaleCell, SCALE_GUESTS } from './ScaleCell.js';
import { formatBreakdown, formatCells, formatCpu, formatEvents, formatPreamble } from './Table.js';
import { computeTargets, formatTargets } from './Targets.js';

/** Options of a comparison, as parsed from the command line. */
export interface CompareOptions {
  readonly quick: boolean;
  readonly transports: readonly CompareTransport[];
  /** `--transports` was given (else every transport). */
  readonly transportsNamed: boolean;
  readonly ops?: readonly CompareOp[];
  readonly kinds?: readonly CompareKind[];
  readonly sizes?: readonly number[];
  readonly latIters?: number;
  readonly bwBytes?: number;
  readonly concurrency: number;
  readonly deviceEngine: 'inline' | 'dedicated';
  /**
   * PCIe timing of every cell: the NTB route of the lent rows (NIC, SSD) and the local rc–sw–device
   * path of local devices (hypervisor-sim/pcie/LocalFabric.ts).
   */
  readonly fabric: FabricProfileName;
  readonly spinUs: number;
  readonly out?: string;
  readonly breakdown: boolean;
  readonly report: boolean;
  /** Run the 16-guest scale cell (when the run has paravirt RDMA WRITE); `--no-scale` skips it. */
  readonly scale?: boolean;
  /** Time memory registration per transport (RegMrBench.ts); `--no-reg-mr` skips it. */
  readonly regMr?: boolean;
}

function list<T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim());
  for (const it of items) {
    if (!(allowed as readonly string[]).includes(it)) {
      throw pvError('PV_ERR_CONFIG', `${flag}: unknown value '${it}' (expected ${allowed.join(', ')})`);
    }
  }
  return items as T[];
}

function positive(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw pvError('PV_ERR_CONFIG', `${flag} needs a positive integer, got '${value}'`);
  }
  return Number(value);
}

/** Parses `pvio compare` flags (without node, script and command). */
export function parseCompareFlags(argv: readonly string[]): CompareOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean' },
      transports: { type: 'string' },
      ops: { type: 'string' },
      kinds: { type: 'string' },
      sizes: { type: 'string' },
      'lat-iters': { type: 'string' },
      'bw-mib': { type: 'string' },
      concurrency: { type: 'string' },
      'device-engine': { type: 'string' },
      fabric: { type: 'string' },
      'spin-us': { type: 'string' },
      out: { type: 'string' },
      'no-breakdown': { type: 'boolean' },
      'no-scale': { type: 'boolean' },
      'no-reg-mr': { type: 'boolean' },
      'no-report': { type: 'boolean' },
    },
  });
  const fabric = values.fabric ?? 'ideal';
  if (!isFabricProfileName(fabric)) {
    throw pvError('PV_ERR_CONFIG', `--fabric: unknown profile '${fabric}' (${FABRIC_PROFILE_NAMES.join('|')})`);
  }
  const engine = values['device-engine'] ?? 'inline';
  if (engine !== 'inline' && engine !== 'dedicated') {
    throw pvError('PV_ERR_CONFIG', `--device-engine: '${engine}' (expected inline or dedicated)`);
  }
  const sizes = values.sizes?.split(',').map((s) => positive(s.trim(), '--sizes') as number);
  const bwMiB = positive(values['bw-mib'], '--bw-mib');
  return {
    quick: values.quick === true,
    transports: list(values.transports, ALL_TRANSPORTS, '--transports') ?? ALL_TRANSPORTS,
    transportsNamed: values.transports !== undefined,
    ops: list(values.ops, [...ALL_OPS, ...BLOCK_OPS], '--ops'),
    kinds: list(values.kinds, ['lat', 'bw'] as const, '--kinds'),
    sizes,
    latIters: positive(values['lat-iters'], '--lat-iters'),
    bwBytes: bwMiB === undefined ? undefined : bwMiB << 20,
    concurrency: positive(values.concurrency, '--concurrency') ?? 1,
    deviceEngine: engine,
    fabric,
    spinUs: values['spin-us'] === undefined ? 0 : (positive(values['spin-us'], '--spin-us') ?? 0),
    out: values.out,
    breakdown: values['no-breakdown'] !== true,
    scale: values['no-scale'] !== true,
    regMr: values['no-reg-mr'] !== true,
    report: values['no-report'] !== true,
  };
}

/** Spin budget in polls for the guests and the backend (the perftest commands' conversion). */
function spinBudgetOf(spinUs: number): number | undefined {
  return spinUs > 0 ? spinUs * SPIN_POLLS_PER_US : undefined;
}

function version(): string {
  const url = new URL('../../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

/**
 * Runs a comparison and returns its results (no printing of the tables, no files): the floors
 * (hand-off, memcpy, raw SPSC ring rate), the cells, the stage breakdowns and — when the run has
 * paravirt RDMA WRITE — the scale cell (16 guests on one backend, ScaleCell.ts).
 */
export async function runCompare(opts: CompareOptions, progressSink = process.stderr): Promise<CompareResults> {
  const startedAt = new Date();
  const plan = planMatrix(opts);
  // The stage breakdown instruments the RDMA paths only (block cells have no stage ledger rows yet).
  const rdmaChosen = opts.ops === undefined || opts.ops.some((op) => !isBlockOp(op));
  const stagePlan = opts.breakdown && rdmaChosen ? planBreakdown(opts.transports, opts.quick) : [];
  // The scale cell (16 paravirt guests on one backend) runs the RDMA WRITE neighbour: only when
  // the run has RDMA WRITE and paravirt in it.
  const scaleChosen =
    opts.scale !== false &&
    (opts.ops === undefined || opts.ops.includes('write')) &&
    opts.transports.includes('paravirt');
  // Memory registration: every chosen transport that registers memory with a device (not tcp, not lent).
  const regMrTransports =
    opts.regMr !== false && rdmaChosen
      ? opts.transports.filter((t): t is Transport => REGMR_TRANSPORTS.includes(t as Transport))
      : [];
  const progress = new Progress(
    plan.length + stagePlan.length + 1 + (scaleChosen ? 1 : 0) + regMrTransports.length,
    progressSink,
  );

  progress.start('floors: thread hand-off, memcpy and raw ring');
  const handoffSpinRttUs = await measureHandoff('spin');
  const handoffWaitRttUs = await measureHandoff('wait', 500, 4);
  const memcpyMiBps = measureMemcpy(4 << 20);
  const ringMps = (await measureRing()).mps;
  progress.done(
    'floors',
    `hand-off ${handoffSpinRttUs.median.toFixed(2)} µs, memcpy ${memcpyMiBps.toFixed(0)} MiB/s, ` +
      `ring ${ringMps.toFixed(1)} M msg/s`,
  );

  const runner = new CellRunner(opts.concurrency, opts.deviceEngine, spinBudgetOf(opts.spinUs), progress, opts.fabric);
  try {
    const cells = await runner.cells(plan);
    const breakdown = await runner.breakdowns(stagePlan);
    let scale: CompareResults['scale'];
    if (scaleChosen) {
      progress.start(`scale: ${SCALE_GUESTS} guests on one backend`);
      scale = await runScaleCell({ guests: SCALE_GUESTS, seconds: opts.quick ? 1 : 2 });
      progress.done(
        'scale',
        `aggregate ${scale.aggregateOpsPerSec.toFixed(0)} ops/s (${scale.aggregateOverOne.toFixed(2)} × one guest), ` +
          `Jain ${scale.jain.toFixed(3)}`,
      );
    }
    const regMr =
      regMrTransports.length === 0
        ? undefined
        : await runRegMrBench({
            transports: regMrTransports,
            sizes: [4096, 1 << 20, 16 << 20],
            iters: opts.quick ? 20 : 50,
            progress,
          });
    progress.finish();
    const cpu = cpus();
    return {
      schema: RESULTS_SCHEMA,
      command: `pvio compare ${process.argv.slice(3).join(' ')}`.trim(),
      startedAt: startedAt.toISOString(),
      durationS: progress.elapsedS,
      environment: {
        cpuModel: cpu[0]?.model.trim() ?? 'unknown CPU',
        cores: cpu.length,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        pvioVersion: version(),
        fabric: opts.fabric,
        spinUs: opts.spinUs,
        deviceEngine: opts.deviceEngine,
        concurrency: opts.concurrency,
        quick: opts.quick,
      },
      floors: { handoffSpinRttUs, handoffWaitRttUs, memcpyMiBps, ringMps },
      cells,
      breakdown,
      ...(scale === undefined ? {} : { scale }),
      ...(regMr === undefined ? {} : { regMr }),
    };
  } finally {
    await runner.close();
  }
}

/** `results/2026-11-22T18-40-01Z`: a directory name that sorts by time and is valid everywhere. */
export function resultsDirName(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replaceAll(':', '-');
}

/** The command: runs, prints the tables, writes the results directory. */
export async function compareMain(argv: string[]): Promise<void> {
  if (argv.includes('--cluster')) {
    await (await import('../cluster/ClusterCompare.js')).clusterCompareMain(argv);
    return;
  }
  const opts = parseCompareFlags(argv);
  const r = await runCompare(opts);
  const out = process.stdout;
  out.write(formatPreamble(r));
  out.write(formatCells(r));
  out.write(formatCpu(r));
  out.write(formatEvents(r));
  out.write(formatBreakdown(r));
  if (r.regMr !== undefined) out.write(formatRegMr(r.regMr));
  const targets = computeTargets(r);
  out.write(formatTargets(targets));
  const failed = r.cells.filter((c) => c.error).length + r.breakdown.filter((b) => b.error).length;
  if (opts.report) {
    const dir = resolve(opts.out ?? join('results', resultsDirName(new Date(r.startedAt))));
    const files = await writeReport(dir, r);
    await writeFile(join(dir, 'targets.json'), `${JSON.stringify(targets, null, 2)}\n`);
    files.push(join(dir, 'targets.json'));
    out.write(`\nwrote ${files.length} files to ${dir} (report: ${join(dir, 'report.md')})\n`);
  }
  out.write(`${r.cells.length} cells in ${r.durationS.toFixed(0)} s${failed > 0 ? `, ${failed} FAILED` : ''}\n`);
  if (failed > 0) process.exitCode = 1;
}
