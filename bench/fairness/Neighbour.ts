/**
 * The fairness benchmark's neighbour: an honest guest doing one small I/O at a time (queue depth
 * `iodepth`, default 1) for `seconds` and counting them — a 4 KiB random read of its vbd (blk)
 * or a 4 KiB RDMA WRITE over a QP looped back to itself on its NIC (rdma; no peer needed, the
 * data still goes guest → backend → NIC → guest memory). Alone, or beside a flooder: with `ctl`
 * it waits for the flood to be on before timing, reads the flooder's counter at both ends of
 * its timed phase, and tells the flooder to stop when done. With `startGate` (the scale cell, N
 * neighbours on one backend) it reports ready after its warm-up and starts timing only when the
 * host opens the gate, so every guest's timed phase overlaps the others'.
 */

import { openBlock } from '../../frontend/blk/Block.js';
import * as ibv from '../../frontend/verbs/index.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { emptyWc, SendFlags, WcStatus, WrOpcode, wcStatusName } from '../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import { AdaptiveSpin } from '../../protocol/wait.js';
import { FairWord, waitWord } from './Control.js';
import { loopbackQp } from './LoopbackQp.js';

/** Arguments of the program. */
export interface NeighbourArgs {
  readonly backend: 'blk' | 'rdma';
  readonly seconds: number;
  readonly iodepth?: number;
  /** The control record shared with a flooder (absent: the neighbour runs alone). */
  readonly ctl?: SharedArrayBuffer;
  /** Word 0 non-zero ends the timed phase early (`pvio top --demo` quitting). */
  readonly stop?: SharedArrayBuffer;
  /**
   * How the RDMA neighbour waits for its completion: `busy` (default) polls for up to 200 000
   * reads as ib_write_lat does; `adaptive` polls an AdaptiveSpin budget that backs off to
   * sleeping when completions do not come within it (many guests on two cores: the scale cell).
   */
  readonly poll?: 'busy' | 'adaptive';
  /** Keep a status line on the console, rewritten in place once a second (`pvio top --demo`). */
  readonly status?: boolean;
  /**
   * A start gate shared with the host (`GateWord`): after its warm-up the neighbour adds 1 to
   * READY, then waits until OPEN is non-zero before its timed phase (absent: it starts at once).
   */
  readonly startGate?: SharedArrayBuffer;
}

/** Int32 word indices of a start gate (bench/compare/ScaleCell.ts opens it). */
export const enum GateWord {
  /** Set non-zero by the host once every guest is READY: the timed phases begin. */
  OPEN = 0,
  /** Guests past their warm-up (each adds 1). */
  READY = 1,
}

/** Int32 words of a start gate. */
export const GATE_WORDS = 2;

/** How long a neighbour waits at a closed gate before failing (a sibling guest that never got ready). */
const GATE_TIMEOUT_MS = 120_000;

/** What the program returns. */
export interface NeighbourResult {
  readonly ios: number;
  readonly seconds: number;
  /** The flooder's completed operations during the timed phase (0 alone). */
  readonly floodOps: number;
}

const IO_BYTES = 4096;
const WARMUP = 50;

/** Runs `io` (one operation, resolved when complete) `iodepth`-deep for `seconds`. */
async function timed(env: DomainEnv, a: NeighbourArgs, io: (lane: number) => Promise<void>): Promise<NeighbourResult> {
  const ctl = a.ctl === undefined ? undefined : new Int32Array(a.ctl);
  for (let i = 0; i < WARMUP; i++) await io(0);
  if (a.startGate !== undefined) {
    const gate = new Int32Array(a.startGate);
    // ORDERING: seq-cst add; the host's load of READY counts this guest only after its warm-up.
    Atomics.add(gate, GateWord.READY, 1);
    const deadline = performance.now() + GATE_TIMEOUT_MS;
    // Polls with setTimeout(1), not a hard spin: N waiting guests must leave the CPU to those still warming up.
    // ORDERING: seq-cst load of OPEN, which the host publishes with Atomics.store.
    while (Atomics.load(gate, GateWord.OPEN) === 0) {
      if (performance.now() > deadline) {
        throw pvError('PV_ERR_TIMEOUT', `the start gate stayed closed for ${GATE_TIMEOUT_MS / 1000} s`);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  if (ctl !== undefined && !(await waitWord(ctl, FairWord.FLOODING, 30_000))) {
    throw pvError('PV_ERR_TIMEOUT', 'the flooder never filled its ring');
  }
  // ORDERING: seq-cst load of the flooder's counter (it adds with Atomics.add).
  const f0 = ctl === undefined ? 0 : Atomics.load(ctl, FairWord.FLOOD_OPS);
  if (ctl !== undefined) Atomics.store(ctl, FairWord.TIMING, 1);
  let ios = 0;
  const t0 = performance.now();
  const end = t0 + a.seconds * 1000;
  const stop = a.stop === undefined ? undefined : new Int32Array(a.stop);
  // ORDERING: seq-cst load of the stop word the host sets.
  const stopped = () => stop !== undefined && Atomics.load(stop, 0) !== 0;
  // The status line: bold label, then the count; cursor up + erase line rewrites it in place.
  let nextStatus = a.status === true ? t0 + 1000 : Number.POSITIVE_INFINITY;
  const label = `\x1b[1m${a.backend} 4 KiB ${a.backend === 'rdma' ? 'WRITE' : 'random read'}, qd ${a.iodepth ?? 1}\x1b[0m`;
  if (a.status === true) env.log(`${label}: starting`);
  const lane = async (k: number): Promise<void> => {
    while (performance.now() < end && !stopped()) {
      await io(k);
      ios++;
      if (k === 0 && performance.now() >= nextStatus) {
        const s = (performance.now() - t0) / 1000;
        env.log(
          `\x1b[1A\x1b[2K${label}: ${ios} ops in ${s.toFixed(0)} s, \x1b[32m${(ios / s).toFixed(0)} ops/s\x1b[0m`,
        );
        nextStatus += 1000;
      }
    }
  };
  await Promise.all(Array.from({ length: a.iodepth ?? 1 }, (_, k) => lane(k)));
  const seconds = (performance.now() - t0) / 1000;
  // ORDERING: seq-cst load, then publish DONE so the flooder stops.
  const f1 = ctl === undefined ? 0 : Atomics.load(ctl, FairWord.FLOOD_OPS);
  if (ctl !== undefined) Atomics.store(ctl, FairWord.DONE, 1);
  return { ios, seconds, floodOps: f1 - f0 };
}

async function blk(env: DomainEnv, a: NeighbourArgs): Promise<NeighbourResult> {
  const dev = await openBlock(env);
  try {
    const per = IO_BYTES / dev.sectorSize;
    const slots = Math.floor(dev.sectors / per);
    const bufs = Array.from({ length: a.iodepth ?? 1 }, () => env.hypercalls.memory.allocPages(1));
    let x = 0x2545f491;
    const next = (): number => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return ((x >>> 0) % slots) * per;
    };
    return await timed(env, a, (k) => dev.wait(dev.read(next(), per, bufs[k])));
  } finally {
    await dev.close();
  }
}

async function rdma(env: DomainEnv, a: NeighbourArgs): Promise<NeighbourResult> {
  const ctx = await ibv.openDevice(env);
  try {
    const depth = a.iodepth ?? 1;
    const { buf, mr, cq, qp } = loopbackQp(ctx, 2 * depth * IO_BYTES, depth);
    const wcs = [emptyWc()];
    const adaptive = new AdaptiveSpin();
    const done = new Set<number>();
    // One WRITE per lane: from the lane's first page to its second (same MR, through the NIC).
    const io = async (k: number): Promise<void> => {
      const src = (buf + 2 * k * PAGE_SIZE) as GuestPhysAddr;
      ibv.postSend(qp, {
        wrId: k,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: src, length: IO_BYTES, lkey: mr.lkey }],
        remoteAddr: src + PAGE_SIZE,
        rkey: mr.rkey,
      });
      while (!done.delete(k)) {
        if (ibv.pollCq(cq, 1, wcs) === 0) {
          // Busy-poll as ib_write_lat does (no CQ events): a QD1 guest waits for its completion
          // on its own vCPU; the long spin only falls back to sleeping if the backend stalls.
          ibv.waitCq(
            cq,
            a.poll === 'adaptive' ? { timeoutMs: 1000, adaptive } : { timeoutMs: 1000, spinBudget: 200_000 },
          );
          continue;
        }
        if (wcs[0].status !== WcStatus.SUCCESS) throw pvError('PV_ERR_RDMA_BAD_STATE', wcStatusName(wcs[0].status));
        done.add(wcs[0].wrId);
        if (depth > 1) await Promise.resolve();
      }
    };
    return await timed(env, a, io);
  } finally {
    await ibv.closeDevice(ctx);
  }
}

export default async function main(env: DomainEnv): Promise<NeighbourResult> {
  const a = env.args as unknown as NeighbourArgs;
  return a.backend === 'rdma' ? rdma(env, a) : blk(env, a);
}
