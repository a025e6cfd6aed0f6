/**
 * One fio-like job over one block path: a fresh scenario whose host has nvme0 (a sparse
 * temporary file, or `backingFile`), and one guest running bench/programs/BlkBenchGuest.ts
 * through `mode` — `paravirt` (a vbd served by dom0's blkback from nvme0), `passthrough` (the
 * guest owns nvme0, IOMMU translating) or `native` (no VM, IOMMU bypass). The raw completion
 * latencies become fio's figures here: IOPS, bandwidth, clat min/max/avg/stdev and percentiles.
 * With `placement: 'lent'` the SSD is host A's nvme0 and the guest runs on host B over an NTB
 * (LentBlkJob.ts), the fabric timed by `fabric`; the result then carries the lease's counters.
 * Shared by `pvio blk_lat` / `pvio blk_bw` and the block cells of `pvio compare`.
 */

import type { FabricProfileName } from '../../hypervisor-sim/pcie/Profiles.js';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import type { BlkBenchArgs, BlkBenchResult, BlkRw } from '../programs/BlkBenchGuest.js';
import { percentile, type Summary, summarize } from '../stats/Summary.js';
import { type LentBlkCounters, runLentBlk } from './LentBlkJob.js';

const PROGRAM = new URL('../programs/BlkBenchGuest.js', import.meta.url);

/** The block paths. */
export type BlkMode = 'paravirt' | 'passthrough' | 'native';
/** Every block path, in the order results print. */
export const BLK_MODES: readonly BlkMode[] = ['paravirt', 'passthrough', 'native'];
/** Where the SSD sits: on the guest's host, or lent by another host over an NTB. */
export type BlkPlacement = 'local' | 'lent';

/** What to run. */
export interface BlkJob {
  readonly mode: BlkMode;
  readonly rw: BlkRw;
  readonly bs: number;
  readonly iodepth: number;
  readonly iters: number;
  readonly runtimeMs?: number;
  /** Device size, bytes. */
  readonly sizeBytes: number;
  readonly backingFile?: string;
  readonly prefill: boolean;
  /** Guest and backend polls before sleeping (undefined: their defaults). */
  readonly spinBudget?: number;
  /** Default 'local'. */
  readonly placement?: BlkPlacement;
  /** PCIe timing (default 'ideal'): the local rc–sw–device path, or a lent SSD's whole NTB route. */
  readonly fabric?: FabricProfileName;
}

/** fio's completion-latency percentiles pvio prints, as fractions. */
export const CLAT_PERCENTILES = [0.01, 0.05, 0.1, 0.5, 0.9, 0.99, 0.995, 0.999] as const;

/** fio's figures of one job. */
export interface BlkJobResult {
  readonly mode: BlkMode;
  readonly placement: BlkPlacement;
  readonly rw: BlkRw;
  readonly bs: number;
  readonly iodepth: number;
  readonly sizeBytes: number;
  readonly ios: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly iops: number;
  /** Bandwidth, MiB/s (2^20 bytes). */
  readonly bwMiBps: number;
  /** Completion latency, µs. */
  readonly clatUs: Summary;
  /** `"50.00"` → µs, for each of CLAT_PERCENTILES. */
  readonly percentilesUs: Readonly<Record<string, number>>;
  /**
   * CPU time of the whole run (domain start-up and prefill included) per timed I/O, ns: the
   * guest, and dom0 (its backend work for paravirt). An upper bound, not a per-I/O cost.
   */
  readonly cpuNsPerIo: { readonly guest: number; readonly dom0: number };
  readonly elapsedMs: number;
  /** Lent placement: the lease's fabric counters (NTB crossings, modelled ns), whole run and timed. */
  readonly lent?: LentBlkCounters;
}

/** Runs one job (see the file comment). */
export async function runBlkJob(job: BlkJob): Promise<BlkJobResult> {
  const args: BlkBenchArgs = {
    rw: job.rw,
    bs: job.bs,
    iodepth: job.iodepth,
    iters: job.iters,
    runtimeMs: job.runtimeMs,
    prefill: job.prefill,
  };
  const memoryMiB = Math.max(16, Math.ceil((job.iodepth * job.bs) / (1 << 20)) + 8);
  if (job.placement === 'lent') {
    const raw = await runLentBlk({
      mode: job.mode,
      args,
      memoryMiB,
      sizeBytes: job.sizeBytes,
      backingFile: job.backingFile,
      profile: job.fabric ?? 'ideal',
      spinBudget: job.spinBudget,
    });
    const figures = blkFigures(job, raw.result, raw.guestCpuNs, raw.dom0CpuNs, raw.elapsedMs);
    return { ...figures, placement: 'lent', lent: raw.lent };
  }
  const s = await runScenario({
    host: { nics: 0, nvmes: [{ sizeBytes: job.sizeBytes, backingFile: job.backingFile }], fabric: job.fabric },
    backend: job.spinBudget === undefined ? undefined : { spinBudget: job.spinBudget },
    guests: [
      {
        name: 'fio',
        program: PROGRAM,
        memoryMiB,
        args: args as unknown as Record<string, unknown>,
        devices: [{ device: 'nvme0', transport: job.mode }],
      },
    ],
  });
  const r = s.guests.fio.value as BlkBenchResult;
  return blkFigures(job, r, s.guests.fio.cpuNs, s.backend.cpuNs, s.elapsedMs);
}

/** fio's figures from the raw result (pure). */
export function blkFigures(
  job: Pick<BlkJob, 'mode' | 'rw' | 'bs' | 'iodepth' | 'sizeBytes' | 'placement'>,
  r: BlkBenchResult,
  guestCpuNs: number,
  dom0CpuNs: number,
  elapsedMs: number,
): BlkJobResult {
  const sorted = Float64Array.from(r.clatUs).sort();
  const percentilesUs: Record<string, number> = {};
  for (const p of CLAT_PERCENTILES) percentilesUs[(p * 100).toFixed(2)] = percentile(sorted, p);
  const seconds = r.seconds > 0 ? r.seconds : Number.NaN;
  const ios = Math.max(r.ios, 1);
  return {
    mode: job.mode,
    placement: job.placement ?? 'local',
    rw: job.rw,
    bs: job.bs,
    iodepth: job.iodepth,
    sizeBytes: job.sizeBytes,
    ios: r.ios,
    bytes: r.bytes,
    seconds: r.seconds,
    iops: r.ios / seconds,
    bwMiBps: r.bytes / (1 << 20) / seconds,
    clatUs: summarize(r.clatUs),
    percentilesUs,
    cpuNsPerIo: { guest: guestCpuNs / ios, dom0: dom0CpuNs / ios },
    elapsedMs,
  };
}
