/**
 * One cell of `pvio compare`, run inside a piscina worker so that the main thread (progress,
 * printing) never shares a thread with a measurement, and cells run one after another by default
 * (pool concurrency 1) so they do not disturb each other. A cell is a fresh two-guest scenario —
 * its own host, NICs, driver domain and guests — running the perftest guest program; the worker
 * turns the raw samples into perftest's statistics and returns plain JSON.
 *
 * The same task, with `instrument` set, runs the per-stage breakdown: the scenario's stage ledgers
 * are on (every thread attributes its wall time to frontend / ring+notify / backend / grant /
 * device / fabric / idle), which costs a clock read per switch — so those runs are separate from
 * the measuring runs and their latencies are never reported.
 */

import { availableParallelism } from 'node:os';
import type { FabricProfileName } from '../../hypervisor-sim/pcie/Profiles.js';
import { type DomainOutcome, runScenario, type ScenarioResult } from '../../hypervisor-sim/scenario/Scenario.js';
import type { Transport } from '../../protocol/Pci.js';
import { Stage } from '../../protocol/stage/StageLedger.js';
import { type BlkJobResult, runBlkJob } from '../blk/BlkJob.js';
import { type SpinBudgets, spinBudgets } from '../perftest/SpinPolicy.js';
import { bandwidthFromCompletions, latencyFromSamples, rttFactor } from '../perftest/Stats.js';
import type { PerftestArgs, PerftestResult } from '../programs/PerftestGuest.js';
import { summarize } from '../stats/Summary.js';
import { runLentCell } from './LentCell.js';
import { type CellPlan, cellMemoryMiB, perftestCqMod } from './Matrix.js';
import {
  type CellResult,
  type DomainCpu,
  isBlockOp,
  LENT_TRANSPORTS,
  type LentFabricCounts,
  type StageBreakdown,
  type StageName,
} from './Results.js';

const PROGRAM = new URL('../programs/PerftestGuest.js', import.meta.url);

/** What the main thread sends for one cell. */
export interface CellTask {
  readonly plan: CellPlan;
  readonly deviceEngine: 'inline' | 'dedicated';
  /** Polls before a waiter sleeps (perftest guest and backend); undefined = their defaults. */
  readonly spinBudget?: number;
  /** Run with stage ledgers on and return a StageBreakdown instead of a CellResult. */
  readonly instrument: boolean;
  /** Fabric timing profile of the NTB path (lent cells). */
  readonly fabric: FabricProfileName;
}

/** What comes back: a measured cell or an instrumented breakdown. */
export type CellOutcome = { readonly cell: CellResult } | { readonly breakdown: StageBreakdown };

function cqModOf(plan: CellPlan): number {
  return perftestCqMod(plan.kind, plan.size, plan.txDepth);
}

/** The spin budgets of a cell's guests and dom0 (SpinPolicy.ts). */
export function cellSpinBudgets(task: CellTask, cores = availableParallelism()): SpinBudgets {
  return spinBudgets(
    { transport: task.plan.transport, deviceEngine: task.deviceEngine, spinBudget: task.spinBudget },
    cores,
  );
}

/** The perftest guest's arguments for a cell, spinning `spinBudget` polls before sleeping. */
function perftestArgs(task: CellTask, spinBudget: number | undefined): PerftestArgs {
  const { plan } = task;
  return {
    test: `${plan.op}_${plan.kind}` as PerftestArgs['test'],
    size: plan.size,
    iters: plan.iters,
    txDepth: plan.txDepth,
    cqMod: cqModOf(plan),
    inlineSize: 0,
    spinBudget,
    tag: `${plan.transport}-${plan.op}-${plan.kind}-${plan.size}`,
  };
}

function memoryMiBOf(plan: CellPlan): number {
  return cellMemoryMiB(plan.size);
}

async function runCell(task: CellTask): Promise<{ scenario: ScenarioResult; client: PerftestResult }> {
  const { plan } = task;
  const spin = cellSpinBudgets(task);
  const args = perftestArgs(task, spin.guest);
  const memoryMiB = memoryMiBOf(plan);
  const dev = (i: number) => (plan.transport === 'tcp' ? 'tcp0' : `nic${i}`);
  const guest = (name: string, i: number) => ({
    name,
    program: PROGRAM,
    memoryMiB,
    args: args as unknown as Record<string, unknown>,
    // INVARIANT: cellTask sends the lent transports to lentCell; the rest are scenario transports.
    devices: [{ device: dev(i), transport: plan.transport as Transport }],
  });
  const scenario = await runScenario({
    host: { deviceEngine: task.deviceEngine, instrumentStages: task.instrument, fabric: task.fabric },
    backend: spin.dom0 === undefined ? undefined : { spinBudget: spin.dom0 },
    guests: [guest('server', 0), guest('client', 1)],
  });
  return { scenario, client: scenario.guests.client.value as PerftestResult };
}

/** Per-domain CPU of a scenario, divided by the cell's messages. */
function domainCpu(s: ScenarioResult, messages: number): DomainCpu[] {
  const domains: Array<[string, DomainOutcome]> = [
    ['client', s.guests.client],
    ['server', s.guests.server],
    ['dom0', s.backend],
  ];
  const rows: DomainCpu[] = domains.map(([domain, o]) => ({
    domain,
    cpuNs: o.cpuNs,
    nsPerMsg: o.cpuNs / messages,
    ...(o.events === undefined ? {} : { events: o.events }),
  }));
  for (const d of s.deviceThreads ?? []) rows.push({ domain: d.name, cpuNs: d.cpuNs, nsPerMsg: d.cpuNs / messages });
  return rows;
}

/** A thread's HOME time belongs to the component the thread is: guest, driver domain or device. */
function addLedger(into: Record<StageName, number>, home: StageName, ns: readonly number[] | undefined): void {
  if (ns === undefined) return;
  into[home] += ns[Stage.HOME];
  into['ring+notify'] += ns[Stage.RING];
  into['grant map/copy'] += ns[Stage.GRANT];
  into.device += ns[Stage.DEVICE];
  into.fabric += ns[Stage.FABRIC];
}

function breakdownOf(task: CellTask, s: ScenarioResult, messages: number): StageBreakdown {
  const total: Record<StageName, number> = {
    frontend: 0,
    'ring+notify': 0,
    backend: 0,
    'grant map/copy': 0,
    device: 0,
    fabric: 0,
  };
  addLedger(total, 'frontend', s.guests.client.stagesNs);
  addLedger(total, 'frontend', s.guests.server.stagesNs);
  addLedger(total, 'backend', s.backend.stagesNs);
  for (const d of s.deviceThreads ?? []) addLedger(total, 'device', d.stagesNs);
  const nsPerMsg = Object.fromEntries(Object.entries(total).map(([k, v]) => [k, v / messages])) as Record<
    StageName,
    number
  >;
  const { transport, op, kind, size } = task.plan;
  return { transport, op, kind, size, messages, nsPerMsg, cpu: domainCpu(s, messages) };
}

function cellOf(task: CellTask, run: { cpu: DomainCpu[]; elapsedMs: number }, r: PerftestResult): CellResult {
  const { plan } = task;
  const base = { transport: plan.transport, op: plan.op, kind: plan.kind, size: plan.size };
  const { cpu, elapsedMs } = run;
  if (plan.kind === 'lat') {
    // INVARIANT: block ops never reach here (cellTask sends them to blockCell).
    const factor = rttFactor(plan.op as 'write' | 'read' | 'send');
    const samples = r.rttUs ?? [];
    const stats = latencyFromSamples(samples, { ticksPerUsec: 1, rttFactor: factor });
    const usec = summarize(samples.map((x) => x / factor));
    return { ...base, lat: { iters: plan.iters, usec, tTypical: stats.tTypical }, cpu, elapsedMs };
  }
  const stats = bandwidthFromCompletions({
    size: plan.size,
    ticksPerSec: 1000, // performance.now() milliseconds
    tposted: r.tposted ?? [],
    tcompleted: r.tcompleted ?? [],
    cqMod: cqModOf(plan),
  });
  return {
    ...base,
    bw: {
      iters: plan.iters,
      txDepth: plan.txDepth,
      avgMiBps: stats.bwAvg,
      peakMiBps: stats.bwPeak,
      mpps: stats.msgRateMpps,
      seconds: r.seconds ?? 0,
    },
    cpu,
    elapsedMs,
  };
}

/** The lent SSD's counts of the timed I/Os, in the cell's shape. */
function blockLentCounts(r: BlkJobResult): LentFabricCounts | undefined {
  const l = r.lent;
  if (l === undefined) return undefined;
  return {
    device: l.device,
    profile: l.profile,
    scope: 'timed',
    ntbCrossings: l.timed.mmioNtbCrossings + l.timed.dmaNtbCrossings,
    fabricNs: l.timed.fabricNs,
    dmaBytes: l.timed.dmaBytes,
    faults: l.timed.dmaFaults + l.timed.mmioRefused,
  };
}

/**
 * A block cell: the fio-like job (one guest, nvme0 through the cell's transport) in the cell's
 * shape — completion latency as `lat` (t_typical = the median), bandwidth as `bw` with the
 * iodepth as tx depth and IOPS / 10^6 as Mpps; the guest's CPU is the `client` row. `lent` and
 * `lent-passthrough` run the job on host B against host A's nvme0 over an NTB, natively or
 * passed through (bench/blk/LentBlkJob.ts); every block cell's PCIe path is timed by the task's
 * fabric profile (a local SSD pays its rc–sw–device path, a lent one the whole NTB route).
 */
async function blockCell(task: CellTask): Promise<CellResult> {
  const { plan } = task;
  const lent = LENT_TRANSPORTS.includes(plan.transport);
  const mode =
    plan.transport === 'lent' ? 'native' : plan.transport === 'lent-passthrough' ? 'passthrough' : plan.transport;
  const r = await runBlkJob({
    // INVARIANT: planMatrix gives block ops only the block transports.
    mode: mode as 'paravirt' | 'passthrough' | 'native',
    placement: lent ? 'lent' : 'local',
    fabric: task.fabric,
    rw: plan.op === 'blk-randread' ? 'randread' : 'read',
    bs: plan.size,
    iodepth: plan.txDepth,
    iters: plan.iters,
    sizeBytes: plan.deviceBytes ?? 16 << 20,
    prefill: true,
    spinBudget: task.spinBudget,
  });
  const counts = blockLentCounts(r);
  const base = {
    transport: plan.transport,
    op: plan.op,
    kind: plan.kind,
    size: plan.size,
    ...(counts === undefined ? {} : { lent: counts }),
  };
  // A lent SSD owned by the guest has no driver domain on B: no dom0 row.
  const cpu: DomainCpu[] = [{ domain: 'client', cpuNs: r.cpuNsPerIo.guest * r.ios, nsPerMsg: r.cpuNsPerIo.guest }];
  if (!lent) cpu.push({ domain: 'dom0', cpuNs: r.cpuNsPerIo.dom0 * r.ios, nsPerMsg: r.cpuNsPerIo.dom0 });
  if (plan.kind === 'lat') {
    return { ...base, lat: { iters: r.ios, usec: r.clatUs, tTypical: r.clatUs.median }, cpu, elapsedMs: r.elapsedMs };
  }
  const bw = {
    iters: r.ios,
    txDepth: plan.txDepth,
    avgMiBps: r.bwMiBps,
    peakMiBps: r.bwMiBps,
    mpps: r.iops / 1e6,
    seconds: r.seconds,
  };
  return { ...base, bw, cpu, elapsedMs: r.elapsedMs };
}

/**
 * A Device Lending cell: the same perftest pair in a two-host cluster, the client on a NIC lent
 * by the other host over an NTB (LentCell.ts), the fabric timed by the task's profile.
 */
async function lentCell(task: CellTask): Promise<CellResult> {
  const { plan } = task;
  const out = await runLentCell({
    placement: 'lent',
    iommu: plan.transport === 'lent-passthrough' ? 'translate' : 'bypass',
    profile: task.fabric,
    args: perftestArgs(task, cellSpinBudgets(task).guest),
    memoryMiB: memoryMiBOf(plan),
  });
  const cpu = out.cpu.map((c) => ({ ...c, nsPerMsg: c.cpuNs / plan.iters }));
  const cell = cellOf(task, { cpu, elapsedMs: out.elapsedMs }, out.client);
  const s = out.lent;
  if (s === undefined) return cell;
  const lent: LentFabricCounts = {
    device: out.device,
    profile: task.fabric,
    scope: 'run',
    ntbCrossings: s.mmioNtbCrossings + s.dmaNtbCrossings,
    fabricNs: s.fabricNs,
    dmaBytes: s.dmaBytes,
    faults: s.dmaFaults + s.mmioRefused,
  };
  return { ...cell, lent };
}

/** The piscina task: runs one cell and never throws — a failure becomes the cell's `error`. */
export default async function cellTask(task: CellTask): Promise<CellOutcome> {
  const { transport, op, kind, size } = task.plan;
  try {
    if (isBlockOp(op) && !task.instrument) return { cell: await blockCell(task) };
    if (LENT_TRANSPORTS.includes(transport)) return { cell: await lentCell(task) };
    const { scenario, client } = await runCell(task);
    if (task.instrument) return { breakdown: breakdownOf(task, scenario, task.plan.iters) };
    const cell = cellOf(task, { cpu: domainCpu(scenario, task.plan.iters), elapsedMs: scenario.elapsedMs }, client);
    const consoles = consolesOf(scenario);
    return { cell: consoles === undefined ? cell : { ...cell, consoles } };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const error = { code: e.code ?? 'PV_ERR_UNKNOWN', message: e.message ?? String(err) };
    if (task.instrument) {
      return { breakdown: { transport, op, kind, size, messages: 0, nsPerMsg: zeroStages(), cpu: [], error } };
    }
    return { cell: { transport, op, kind, size, cpu: [], elapsedMs: 0, error } };
  }
}

/** The final console screens of a scenario's domains that wrote anything (cheap: ≤ 30 lines each). */
function consolesOf(s: ScenarioResult): Record<string, readonly string[]> | undefined {
  const all: Array<[string, readonly string[]]> = [
    ...Object.entries(s.guests).map(([name, o]): [string, readonly string[]] => [name, o.screen]),
    ['dom0', s.backend.screen],
  ];
  const written = all.filter(([, screen]) => screen.length > 0);
  return written.length > 0 ? Object.fromEntries(written) : undefined;
}

function zeroStages(): Record<StageName, number> {
  return { frontend: 0, 'ring+notify': 0, backend: 0, 'grant map/copy': 0, device: 0, fabric: 0 };
}
