/**
 * `pvio blk_lat` and `pvio blk_bw` — fio-like block benchmarks over every path:
 *
 *   pvio blk_lat [--rw randread|randwrite] [--bs 4k] [-n N | --runtime SECS] [--mode paravirt,passthrough,native]
 *                [--size 64m] [--backing-file PATH] [--placement local|lent] [--fabric ideal|pcie3-x8-ntb]
 *                [--no-prefill] [--spin-us N] [--json]
 *   pvio blk_bw  [--rw read|write] [--bs 128k] [--iodepth 16] [-n N | --runtime SECS] [...the same]
 *
 * blk_lat is fio's `--rw=randread --bs=4k --iodepth=1` latency job (clat percentiles); blk_bw is
 * `--rw=read --bs=128k --iodepth=16` (one pass over the device unless -n / --runtime). Each mode
 * is a fresh scenario (BlkJob.ts); the output is a compact fio block per mode, or with `--json`
 * one JSON document on stdout (`{ "jobs": [...] }`).
 *
 * `--placement lent`: the SSD is host A's nvme0, lent over an NTB; the guest runs on host B
 * owning `nvme0@A` (native: IOMMU bypass, passthrough: translate) or, paravirt, B's dom0 owns it
 * and serves the guest a vbd (LentBlkJob.ts). Each job then also prints and returns the lease's
 * fabric counters. `--fabric` times the PCIe path (a lent SSD's NTB route, or the local one).
 */

import { parseArgs } from 'node:util';
import {
  FABRIC_PROFILE_NAMES,
  type FabricProfileName,
  isFabricProfileName,
} from '../../hypervisor-sim/pcie/Profiles.js';
import { pvError } from '../../protocol/errors.js';
import { SPIN_POLLS_PER_US } from '../perftest/PerftestCommand.js';
import { BLK_RW, type BlkRw } from '../programs/BlkBenchGuest.js';
import { BLK_MODES, type BlkJobResult, type BlkMode, type BlkPlacement, runBlkJob } from './BlkJob.js';
import { formatBlkJob } from './BlkReport.js';

/** The two commands. */
export type BlkVerb = 'blk_lat' | 'blk_bw';

/** Parsed flags. */
export interface BlkConfig {
  readonly verb: BlkVerb;
  readonly rw: BlkRw;
  readonly bs: number;
  readonly iodepth: number;
  readonly iters: number;
  readonly runtimeMs?: number;
  readonly modes: readonly BlkMode[];
  readonly sizeBytes: number;
  readonly backingFile?: string;
  readonly placement: BlkPlacement;
  readonly fabric: FabricProfileName;
  readonly prefill: boolean;
  readonly spinUs?: number;
  readonly json: boolean;
}

const UNITS: Record<string, number> = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 };

/** `4k`, `128K`, `64m`, `1g`, `4096`: fio's size syntax (binary units). */
export function parseBytes(text: string, flag: string): number {
  const m = /^(\d+)([kmg]?)(i?b)?$/i.exec(text.trim());
  const v = m ? Number(m[1]) * (UNITS[m[2].toLowerCase()] ?? 1) : Number.NaN;
  if (!Number.isSafeInteger(v) || v < 1)
    throw pvError('PV_ERR_CONFIG', `${flag}: '${text}' is not a size (4k, 128k, 64m)`);
  return v;
}

function positive(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1)
    throw pvError('PV_ERR_CONFIG', `${flag} needs a positive integer, got '${text}'`);
  return Number(text);
}

/** Parses the flags of `verb` (without node, script and command). */
export function parseBlkFlags(verb: BlkVerb, argv: readonly string[]): BlkConfig {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      rw: { type: 'string' },
      bs: { type: 'string' },
      iodepth: { type: 'string' },
      iters: { type: 'string', short: 'n' },
      runtime: { type: 'string' },
      mode: { type: 'string' },
      size: { type: 'string' },
      'backing-file': { type: 'string' },
      placement: { type: 'string' },
      fabric: { type: 'string' },
      'no-prefill': { type: 'boolean' },
      'spin-us': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const lat = verb === 'blk_lat';
  const rw = (values.rw ?? (lat ? 'randread' : 'read')) as BlkRw;
  const allowed: readonly BlkRw[] = lat ? ['randread', 'randwrite'] : ['read', 'write', 'randread', 'randwrite'];
  if (!BLK_RW.includes(rw) || !allowed.includes(rw)) {
    throw pvError('PV_ERR_CONFIG', `--rw: '${values.rw}' (expected ${allowed.join('|')})`);
  }
  const modes = (values.mode ?? BLK_MODES.join(',')).split(',').map((s) => s.trim()) as BlkMode[];
  for (const m of modes) {
    if (!BLK_MODES.includes(m)) throw pvError('PV_ERR_CONFIG', `--mode: unknown mode '${m}' (${BLK_MODES.join(', ')})`);
  }
  const placement = values.placement ?? 'local';
  if (placement !== 'local' && placement !== 'lent') {
    throw pvError('PV_ERR_CONFIG', `--placement: '${placement}' (expected local or lent)`);
  }
  const fabric = values.fabric ?? 'ideal';
  if (!isFabricProfileName(fabric)) {
    throw pvError('PV_ERR_CONFIG', `--fabric: unknown profile '${fabric}' (${FABRIC_PROFILE_NAMES.join('|')})`);
  }
  const bs = parseBytes(values.bs ?? (lat ? '4k' : '128k'), '--bs');
  if (bs % 512 !== 0) throw pvError('PV_ERR_CONFIG', `--bs: ${bs} is not a multiple of 512`);
  const sizeBytes = parseBytes(values.size ?? '64m', '--size');
  if (sizeBytes % 512 !== 0 || sizeBytes < bs) {
    throw pvError('PV_ERR_CONFIG', `--size: ${sizeBytes} must be a multiple of 512 and hold one --bs`);
  }
  const iodepth = positive(values.iodepth, '--iodepth') ?? (lat ? 1 : 16);
  if (lat && iodepth !== 1)
    throw pvError('PV_ERR_CONFIG', '--iodepth: blk_lat measures one I/O at a time (use blk_bw)');
  if (iodepth > 1024) throw pvError('PV_ERR_CONFIG', `--iodepth ${iodepth} > 1024`);
  const runtime = values.runtime === undefined ? undefined : Number(values.runtime);
  if (runtime !== undefined && !(Number.isFinite(runtime) && runtime > 0)) {
    throw pvError('PV_ERR_CONFIG', `--runtime needs a positive number of seconds, got '${values.runtime}'`);
  }
  const n = positive(values.iters, '-n/--iters');
  if (n !== undefined && runtime !== undefined) throw pvError('PV_ERR_CONFIG', '-n and --runtime exclude each other');
  // Without -n: blk_lat times 5000 I/Os, blk_bw one pass over the device; --runtime caps at 10^7.
  const iters = n ?? (runtime !== undefined ? 10_000_000 : lat ? 5000 : Math.max(1, Math.floor(sizeBytes / bs)));
  return {
    verb,
    rw,
    bs,
    iodepth,
    iters,
    runtimeMs: runtime === undefined ? undefined : runtime * 1000,
    modes,
    sizeBytes,
    backingFile: values['backing-file'],
    placement,
    fabric,
    prefill: values['no-prefill'] !== true,
    spinUs: positive(values['spin-us'], '--spin-us'),
    json: values.json === true,
  };
}

/** Runs every mode of a parsed configuration. */
export async function runBlk(cfg: BlkConfig, onJob?: (r: BlkJobResult) => void): Promise<BlkJobResult[]> {
  const out: BlkJobResult[] = [];
  for (const mode of cfg.modes) {
    const r = await runBlkJob({
      mode,
      rw: cfg.rw,
      bs: cfg.bs,
      iodepth: cfg.iodepth,
      iters: cfg.iters,
      runtimeMs: cfg.runtimeMs,
      sizeBytes: cfg.sizeBytes,
      backingFile: cfg.backingFile,
      prefill: cfg.prefill,
      spinBudget: cfg.spinUs === undefined ? undefined : cfg.spinUs * SPIN_POLLS_PER_US,
      placement: cfg.placement,
      fabric: cfg.fabric,
    });
    onJob?.(r);
    out.push(r);
  }
  return out;
}

/** The command. */
export async function blkMain(verb: BlkVerb, argv: string[]): Promise<void> {
  const cfg = parseBlkFlags(verb, argv);
  const jobs = await runBlk(cfg, (r) => {
    if (!cfg.json) process.stdout.write(formatBlkJob(r));
  });
  if (cfg.json) process.stdout.write(`${JSON.stringify({ command: `pvio ${verb}`, jobs }, null, 2)}\n`);
}
