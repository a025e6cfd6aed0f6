/**
 * The fio-like block benchmark as one guest program, unchanged across paths (paravirt vbd,
 * passthrough, native — `openBlock` picks the transport): `bs`-byte I/Os, random (`randread`,
 * `randwrite`: block-aligned offsets drawn uniformly over the device, fio's default random map
 * off) or sequential (`read`, `write`: wrapping at the end), `iodepth` in flight, for `iters`
 * I/Os or `runtimeMs`. Reads of a region nobody wrote read holes of a sparse file; `prefill`
 * first writes the whole span sequentially (fio lays its file out before a read job too).
 *
 * Returns raw samples — each I/O's completion latency (submit → completion seen, µs, fio's clat)
 * — and totals; statistics are computed by the caller (bench/stats/Summary.ts).
 *
 * `probe`: a counter record the harness hands in like a clock (the lease record of a lent SSD,
 * bench/blk/LentBlkJob.ts). The program never interprets it: it copies its words when the timed
 * phase starts and when it ends, so the caller can count what the timed I/Os alone did.
 */

import { type Block, openBlock } from '../../frontend/blk/Block.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';

/** Bytes per prefill write. */
const PREFILL_BYTES = 1 << 20;

/** fio's `rw` values pvio runs. */
export type BlkRw = 'randread' | 'randwrite' | 'read' | 'write';
/** Every accepted `rw`. */
export const BLK_RW: readonly BlkRw[] = ['randread', 'randwrite', 'read', 'write'];

/** Arguments of the program. */
export interface BlkBenchArgs {
  readonly rw: BlkRw;
  /** Bytes per I/O: a multiple of the device sector size. */
  readonly bs: number;
  readonly iodepth: number;
  /** I/Os to time (an upper bound under `runtimeMs`). */
  readonly iters: number;
  /** Run for this long instead (still at most `iters` I/Os). */
  readonly runtimeMs?: number;
  /** Untimed I/Os first (warm the path). Default min(iters / 10, 100). */
  readonly warmup?: number;
  /** Write the span before a read job. */
  readonly prefill?: boolean;
  /** Seed of the random offsets. */
  readonly seed?: number;
  /** A counter record to copy at the start and the end of the timed phase (see the file comment). */
  readonly probe?: SharedArrayBuffer;
}

/** What the program returns. */
export interface BlkBenchResult {
  readonly transport: string;
  /** Completion latency of every timed I/O, µs. */
  readonly clatUs: number[];
  readonly ios: number;
  readonly bytes: number;
  /** Wall time of the timed phase, seconds. */
  readonly seconds: number;
  readonly sectorSize: number;
  readonly deviceBytes: number;
  /** `probe`'s 32-bit words at the start and at the end of the timed phase. */
  readonly probeWords?: { readonly start: number[]; readonly end: number[] };
}

/**
 * The words of `probe` now. No I/O of this program is in flight when it is called, so the
 * record is quiescent and a word-by-word copy is a consistent one, 64-bit counters included (over
 * paravirt the backend may still be finishing the last completion: a count may be one doorbell off).
 */
function probeWords(probe: SharedArrayBuffer | undefined): number[] | undefined {
  if (probe === undefined) return undefined;
  const w = new Int32Array(probe);
  // ORDERING: seq-cst loads; they see every counter update of the I/Os completed before.
  return Array.from({ length: w.length }, (_, i) => Atomics.load(w, i));
}

function check(a: BlkBenchArgs, blk: Block): void {
  if (!BLK_RW.includes(a.rw)) throw pvError('PV_ERR_INVALID_ARG', `rw '${String(a.rw)}' (one of ${BLK_RW.join(', ')})`);
  if (!Number.isInteger(a.bs) || a.bs < blk.sectorSize || a.bs % blk.sectorSize !== 0) {
    throw pvError('PV_ERR_INVALID_ARG', `bs ${a.bs} must be a multiple of the sector size ${blk.sectorSize}`);
  }
  if (a.bs > blk.sectors * blk.sectorSize) throw pvError('PV_ERR_INVALID_ARG', `bs ${a.bs} exceeds the device`);
  if (!Number.isInteger(a.iodepth) || a.iodepth < 1 || a.iodepth > 1024) {
    throw pvError('PV_ERR_INVALID_ARG', `iodepth ${a.iodepth} must be an integer in [1, 1024]`);
  }
  if (!Number.isInteger(a.iters) || a.iters < 1) throw pvError('PV_ERR_INVALID_ARG', `iters ${a.iters} must be ≥ 1`);
}

export default async function main(env: DomainEnv): Promise<BlkBenchResult> {
  const a = env.args as unknown as BlkBenchArgs;
  const blk = await openBlock(env);
  try {
    check(a, blk);
    const mem = env.hypercalls.memory;
    const per = a.bs / blk.sectorSize;
    const slots = Math.floor(blk.sectors / per);
    const pages = Math.ceil(a.bs / PAGE_SIZE);
    const bufs: GuestPhysAddr[] = [];
    for (let i = 0; i < a.iodepth; i++) {
      const b = mem.allocPages(pages);
      const v = mem.view(b, a.bs);
      for (let j = 0; j < a.bs; j++) v[j] = (j * 31 + i) & 0xff;
      bufs.push(b);
    }
    const write = a.rw === 'write' || a.rw === 'randwrite';
    if (a.prefill && !write) {
      // Lay the span out in 1 MiB writes (untimed), as fio does before a read job.
      const chunk = Math.min(PREFILL_BYTES / blk.sectorSize, blk.sectors);
      const buf = mem.allocPages(Math.ceil((chunk * blk.sectorSize) / PAGE_SIZE));
      for (let s = 0; s < blk.sectors; s += chunk) {
        await blk.wait(blk.write(s, Math.min(chunk, blk.sectors - s), buf));
      }
      mem.freePages(buf, Math.ceil((chunk * blk.sectorSize) / PAGE_SIZE));
    }
    // xorshift32: cheap, reproducible offsets.
    let x = (a.seed ?? 0x9e3779b9) >>> 0 || 1;
    let seq = 0;
    const nextSector = (): number => {
      if (a.rw === 'read' || a.rw === 'write') return (seq++ % slots) * per;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return ((x >>> 0) % slots) * per;
    };
    const io = (buf: GuestPhysAddr) => (write ? blk.write(nextSector(), per, buf) : blk.read(nextSector(), per, buf));

    const warm = a.warmup ?? Math.min(Math.floor(a.iters / 10), 100);
    for (let i = 0; i < warm; i++) await blk.wait(io(bufs[0]));

    const clatUs: number[] = [];
    const probeStart = probeWords(a.probe);
    const t0 = performance.now();
    const end = a.runtimeMs === undefined ? Number.POSITIVE_INFINITY : t0 + a.runtimeMs;
    if (a.iodepth === 1) {
      for (let i = 0; i < a.iters && (i === 0 || performance.now() < end); i++) {
        const s = performance.now();
        await blk.wait(io(bufs[0]));
        clatUs.push((performance.now() - s) * 1000);
      }
    } else {
      // Keep iodepth I/Os in flight: each completion submits the next from its own buffer.
      let submitted = 0;
      const lane = async (buf: GuestPhysAddr): Promise<void> => {
        while (submitted < a.iters && (submitted === 0 || performance.now() < end)) {
          submitted++;
          const s = performance.now();
          await io(buf);
          clatUs.push((performance.now() - s) * 1000);
        }
      };
      await blk.wait(Promise.all(bufs.map(lane)), 600_000);
    }
    const seconds = (performance.now() - t0) / 1000;
    const probeEnd = probeWords(a.probe);
    if (write) await blk.wait(blk.flush());
    return {
      transport: blk.transport,
      clatUs,
      ios: clatUs.length,
      bytes: clatUs.length * a.bs,
      seconds,
      sectorSize: blk.sectorSize,
      deviceBytes: blk.sectors * blk.sectorSize,
      probeWords: probeStart && probeEnd ? { start: probeStart, end: probeEnd } : undefined,
    };
  } finally {
    await blk.close();
  }
}
