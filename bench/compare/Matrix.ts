/**
 * Which cells `pvio compare` runs: transports × ops × {lat, bw} × sizes, with iteration counts
 * chosen so every cell moves enough data to be measured but none dominates the run. The full
 * matrix covers what perftest users look at (small-message latency to large-message bandwidth);
 * `--quick` keeps the headline rows and fits in under two minutes on two cores.
 */

import { pvError } from '../../protocol/errors.js';
import type { CellKey, CompareKind, CompareOp, CompareTransport } from './Results.js';

/** Every transport, in the order tables print them (the references first). */
export const ALL_TRANSPORTS: readonly CompareTransport[] = [
  'native',
  'passthrough',
  'paravirt',
  'paravirt-copy',
  'tcp',
];
/** Every op. */
export const ALL_OPS: readonly CompareOp[] = ['write', 'read', 'send'];

/** One cell to run plus its iteration budget. */
export interface CellPlan extends CellKey {
  readonly iters: number;
  readonly txDepth: number;
}

/** What the user chose (flags of `pvio compare`). */
export interface MatrixOptions {
  readonly quick: boolean;
  readonly transports?: readonly CompareTransport[];
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

/** The cells to run, in table order (op, kind, size, transport). */
export function planMatrix(opts: MatrixOptions): CellPlan[] {
  const transports = opts.transports ?? ALL_TRANSPORTS;
  const ops = opts.ops ?? (opts.quick ? ['write' as const] : ALL_OPS);
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
  if (keys.length === 0 || transports.length === 0) throw pvError('PV_ERR_CONFIG', 'the comparison matrix is empty');
  const plan: CellPlan[] = [];
  for (const k of keys) {
    for (const transport of transports) {
      const iters = k.kind === 'lat' ? latIters(k.size, opts) : bwIters(k.size, opts);
      plan.push({ ...k, transport, iters, txDepth: Math.min(txDepth(k.kind, k.size), iters) });
    }
  }
  return plan;
}

/** The instrumented runs of the per-stage breakdown: 64 B latency and 1 MiB bandwidth per transport. */
export function planBreakdown(transports: readonly CompareTransport[], quick: boolean): CellPlan[] {
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
