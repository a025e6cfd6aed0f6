/**
 * Which cells `pvio compare` runs: transports × ops × {lat, bw} × sizes, with iteration counts
 * chosen so every cell moves enough data to be measured but none dominates the run. The full
 * matrix covers what perftest users look at (small-message latency to large-message bandwidth);
 * `--quick` keeps the headline rows and fits in under two minutes on two cores.
 */

import { pvError } from '../../protocol/errors.js';
import {
  type BlockCompareOp,
  type CellKey,
  type CompareKind,
  type CompareOp,
  type CompareTransport,
  isBlockOp,
  LENT_TRANSPORTS,
} from './Results.js';

/** Every transport, in the order tables print them (the references first). */
export const ALL_TRANSPORTS: readonly CompareTransport[] = [
  'native',
  'passthrough',
  'paravirt',
  'paravirt-copy',
  'virtio',
  'virtio-packed',
  'tcp',
  'lent',
  'lent-passthrough',
];
/** Every RDMA op. */
export const ALL_OPS: readonly CompareOp[] = ['write', 'read', 'send'];
/** Every block op (fio jobs over nvme0). */
export const BLOCK_OPS: readonly BlockCompareOp[] = ['blk-randread', 'blk-seqread'];
/**
 * The transports a block cell runs over (an NVMe SSD has no paravirt-copy or tcp path): the local
 * SSD's three paths, and an SSD lent by another host over an NTB, owned natively or passed through.
 */
export const BLOCK_TRANSPORTS: readonly CompareTransport[] = [
  'native',
  'passthrough',
  'paravirt',
  'lent',
  'lent-passthrough',
];

/**
 * The fixed job of each block op: fio's 4 KiB randread latency (iodepth 1) and 128 KiB
 * sequential read bandwidth (iodepth 16), on a device of `deviceBytes` prefilled before timing.
 */
export const BLOCK_JOBS: Readonly<Record<BlockCompareOp, { kind: CompareKind; size: number; iodepth: number }>> = {
  'blk-randread': { kind: 'lat', size: 4096, iodepth: 1 },
  'blk-seqread': { kind: 'bw', size: 128 * 1024, iodepth: 16 },
};

/** One cell to run plus its iteration budget. */
export interface CellPlan extends CellKey {
  readonly iters: number;
  /** perftest's tx depth, or a block job's iodepth. */
  readonly txDepth: number;
  /** Block cells: the device size (the bandwidth job reads it once per 'pass'). */
  readonly deviceBytes?: number;
}

/** What the user chose (flags of `pvio compare`). */
export interface MatrixOptions {
  readonly quick: boolean;
  readonly transports?: readonly CompareTransport[];
  /** The user named the transports (`--transports`), rather than taking every one. */
  readonly transportsNamed?: boolean;
  readonly ops?: readonly CompareOp[];
  readonly kinds?: readonly CompareKind[];
  /** Overrides both size lists. */
  readonly sizes?: readonly number[];
  /** Overrides the latency iteration count. */
  readonly latIters?: number;
  /** Overrides the bytes each bandwidth cell moves. */
  readonly bwBytes?: number;
}

const KiB = 1024;
const MiB = 1024 * 1024;

/** Sizes per kind and matrix. Latency stops at 1 MiB, bandwidth starts at 64 B (message rate). */
const SIZES = {
  full: { lat: [2, 64, 512, 4 * KiB, 64 * KiB, MiB], bw: [64, 4 * KiB, 64 * KiB, MiB, 4 * MiB] },
  quick: { lat: [64, 4 * KiB, 64 * KiB], bw: [64, 64 * KiB, MiB, 4 * MiB] },
} as const;

/** The ops of the quick matrix beyond write: one latency row each, at 64 B. */
const QUICK_EXTRA: ReadonlyArray<Pick<CellKey, 'op' | 'kind' | 'size'>> = [
  { op: 'read', kind: 'lat', size: 64 },
  { op: 'send', kind: 'lat', size: 64 },
];

/** Latency iterations: enough for a stable p99, fewer for large messages that take longer each. */
function latIters(size: number, opts: MatrixOptions): number {
  if (opts.latIters !== undefined) return opts.latIters;
  const base = opts.quick ? 3000 : 10000;
  return size >= 64 * KiB ? Math.max(200, base / 10) : base;
}

/** Bandwidth iterations: a byte budget per cell, at least 200 messages, at most 20000. */
function bwIters(size: number, opts: MatrixOptions): number {
  const budget = opts.bwBytes ?? (opts.quick ? 256 * MiB : 1024 * MiB);
  return Math.min(20_000, Math.max(200, Math.floor(budget / size)));
}

/** perftest's default tx depth for bandwidth (128), lowered for huge messages so buffers fit. */
function txDepth(kind: CompareKind, size: number): number {
  if (kind === 'lat') return 1;
  return size >= MiB ? 16 : 128;
}

/**
 * The rows a lent NIC runs in: RDMA WRITE at every size of the full matrix; in the quick matrix
 * only the headline rows (64 B latency and 4 MiB bandwidth), so `--quick` stays under 2 minutes.
 * A user who names sizes gets every write row they named.
 */
function lentRow(k: Pick<CellKey, 'op' | 'kind' | 'size'>, opts: MatrixOptions): boolean {
  if (k.op !== 'write') return false;
  if (!opts.quick || opts.sizes !== undefined) return true;
  return (k.kind === 'lat' && k.size === 64) || (k.kind === 'bw' && k.size === 4 * MiB);
}

/** The cells to run, in table order (op, kind, size, transport). */
export function planMatrix(opts: MatrixOptions): CellPlan[] {
  const transports = opts.transports ?? ALL_TRANSPORTS;
  // Block cells come by default unless the user picked sizes (they have one fixed size each).
  const blockByDefault = opts.sizes === undefined ? BLOCK_OPS : [];
  const chosen = opts.ops ?? (opts.quick ? ['write' as const, ...blockByDefault] : [...ALL_OPS, ...blockByDefault]);
  const ops = chosen.filter((op) => !isBlockOp(op));
  const kinds = opts.kinds ?? (['lat', 'bw'] as const);
  const sizes = SIZES[opts.quick ? 'quick' : 'full'];
  const keys: Array<Pick<CellKey, 'op' | 'kind' | 'size'>> = [];
  for (const op of ops) {
    for (const kind of kinds) {
      for (const size of opts.sizes ?? sizes[kind]) keys.push({ op, kind, size });
    }
  }
  if (opts.quick && opts.ops === undefined && opts.sizes === undefined) {
    for (const k of QUICK_EXTRA) if (kinds.includes(k.kind)) keys.push(k);
  }
  const plan: CellPlan[] = [];
  for (const k of keys) {
    for (const transport of transports) {
      if (LENT_TRANSPORTS.includes(transport) && !lentRow(k, opts)) continue;
      const iters = k.kind === 'lat' ? latIters(k.size, opts) : bwIters(k.size, opts);
      plan.push({ ...k, transport, iters, txDepth: Math.min(txDepth(k.kind, k.size), iters) });
    }
  }
  plan.push(...planBlock(chosen, transports, opts));
  if (plan.length === 0) throw pvError('PV_ERR_CONFIG', 'the comparison matrix is empty');
  return plan;
}

/**
 * The block cells: each chosen block op whose kind was chosen, over the block transports the
 * user kept (`--sizes` does not apply: a block job has one fixed size). Latency takes
 * `--lat-iters`; bandwidth reads a device of `--bw-mib` (default 16 MiB quick, 64 MiB full) once.
 * The quick matrix runs a lent SSD natively only (`lent`; its passthrough row when the user names
 * the transports), so `--quick` stays under 2 minutes.
 */
function planBlock(
  ops: readonly CompareOp[],
  transports: readonly CompareTransport[],
  opts: MatrixOptions,
): CellPlan[] {
  const kinds = opts.kinds ?? (['lat', 'bw'] as const);
  const plan: CellPlan[] = [];
  const deviceBytes = opts.bwBytes ?? (opts.quick ? 16 : 64) * MiB;
  for (const op of BLOCK_OPS) {
    const job = BLOCK_JOBS[op];
    if (!ops.includes(op) || !kinds.includes(job.kind)) continue;
    for (const transport of BLOCK_TRANSPORTS) {
      if (!transports.includes(transport)) continue;
      if (transport === 'lent-passthrough' && opts.quick && opts.transportsNamed !== true) continue;
      const iters =
        job.kind === 'lat'
          ? (opts.latIters ?? (opts.quick ? 2000 : 10000))
          : Math.max(1, Math.floor(deviceBytes / job.size));
      plan.push({
        transport,
        op,
        kind: job.kind,
        size: job.size,
        iters,
        txDepth: Math.min(job.iodepth, iters),
        deviceBytes: Math.max(deviceBytes, job.size),
      });
    }
  }
  return plan;
}

/** The instrumented runs of the per-stage breakdown: 64 B latency and 1 MiB bandwidth per transport. */
export function planBreakdown(all: readonly CompareTransport[], quick: boolean): CellPlan[] {
  // The stage ledgers are per scenario; lent cells run in a cluster and report fabric counts instead.
  const transports = all.filter((t) => !LENT_TRANSPORTS.includes(t));
  const lat = transports.map((transport): CellPlan => {
    return { transport, op: 'write', kind: 'lat', size: 64, iters: quick ? 2000 : 5000, txDepth: 1 };
  });
  const bw = transports.map((transport): CellPlan => {
    return { transport, op: 'write', kind: 'bw', size: MiB, iters: quick ? 200 : 500, txDepth: 16 };
  });
  return [...lat, ...bw];
}

/** `64 B`, `4 KiB`, `1 MiB`: sizes as tables print them. */
export function formatSize(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} B`;
}

/** perftest's CQ moderation: every 100th WR signaled, 1 above 8 KiB (force_dependencies). */
export function perftestCqMod(kind: CompareKind, size: number, txDepth: number): number {
  return kind === 'bw' && size <= 8192 ? Math.min(100, txDepth) : 1;
}

/** Guest memory for a cell: two halves of the message buffer plus room for rings and the program. */
export function cellMemoryMiB(size: number): number {
  return Math.max(32, Math.ceil((4 * size) / (1 << 20)) + 16);
}
