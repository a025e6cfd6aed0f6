/**
 * What every perftest loop shares: the program's arguments and result, the connected QP with its
 * buffers (a `Session`), and the few helpers the loops have in common (completion checks, the
 * end-of-run exchange a looping server watches, yielding to the event loop).
 *
 * Buffer layout, per guest: `2 × half` bytes, page-rounded halves. The first half is the source
 * of what this side sends or the target of what it reads; the second half is where the peer's
 * WRITEs land and where receives are posted.
 */

import * as ibv from '../../../frontend/verbs/index.js';
import { pvError } from '../../../protocol/errors.js';
import type { DomainEnv } from '../../../protocol/Program.js';
import { WcStatus, wcStatusName } from '../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';

/** The six perftest binaries the program imitates. */
export type PerftestTestName = 'write_lat' | 'write_bw' | 'read_lat' | 'read_bw' | 'send_lat' | 'send_bw';

/** Arguments of the program. */
export interface PerftestArgs {
  readonly test: PerftestTestName;
  readonly size: number;
  /** Round trips (lat) or messages (bw); ignored under `durationS`. */
  readonly iters: number;
  readonly txDepth?: number;
  readonly cqMod?: number;
  /** Messages up to this size are posted INLINE (payload copied into the WQE), as perftest's -I. */
  readonly inlineSize?: number;
  /**
   * Polls before a waiter sleeps, for every wait of the run (the awaited word of write_lat, a CQ
   * elsewhere). Default: LAT_SPIN_BUDGET for latency tests, ibv.DEFAULT_SPIN_BUDGET for bandwidth.
   */
  readonly spinBudget?: number;
  /** Receives a send_* side keeps posted (perftest's -r; DEF_RX_SEND 512). */
  readonly rxDepth?: number;
  /** perftest's -D: run this long instead of `iters`, measuring only inside the margins. */
  readonly durationS?: number;
  /** perftest's -f: warm-up and cool-down seconds inside `durationS` (default 0). */
  readonly marginS?: number;
  /** Tag to keep store exchange names unique when a scenario runs several tests. */
  readonly tag?: string;
}

/** What a guest returns (the client's is the measurement; the server's carries no samples). */
export interface PerftestResult {
  readonly role: 'client' | 'server';
  readonly transport: string;
  readonly test: string;
  readonly size: number;
  /** The requested iterations; under -D, every iteration run, margins included. */
  readonly iters: number;
  /**
   * *_lat (client): iters − 1 samples in µs, the deltas between consecutive posts. For write and
   * send one sample is a ping-pong ROUND TRIP; for read it is one READ's round trip.
   */
  readonly rttUs?: number[];
  /** *_bw (client): seconds from the first post to the last completion. */
  readonly seconds?: number;
  /** *_bw (client): per-message post times, ms (performance.now()). */
  readonly tposted?: number[];
  /**
   * *_bw (client): per-message completion times, ms — each message covered by a CQE gets that
   * CQE's poll time (only every cqMod-th message is signaled), as perftest's peak needs.
   */
  readonly tcompleted?: number[];
  /** -D (client): iterations (lat) or messages (bw) completed inside the measurement window. */
  readonly windowIters?: number;
  /** -D (client): length of the measurement window, seconds. */
  readonly windowSeconds?: number;
}

/** Default spin budget of latency waits: longer than a wake-up, so round trips stay spinning. */
export const LAT_SPIN_BUDGET = 20000;
/** perftest's DEF_RX_SEND. */
export const DEF_RX_DEPTH = 512;
/** How often a server looping until the client is done lets its event loop run (store watch). */
export const YIELD_MS = 2;

/** A connected RC QP and its buffers, ready for a loop. */
export interface Session {
  readonly env: DomainEnv;
  readonly args: PerftestArgs;
  readonly role: 'client' | 'server';
  readonly tag: string;
  readonly ctx: ibv.Context;
  readonly mr: ibv.Mr;
  /** Local buffer (see the file comment): `buf` is the first half, `buf + half` the second. */
  readonly buf: GuestPhysAddr;
  readonly half: number;
  readonly size: number;
  readonly scq: ibv.Cq;
  readonly rcq: ibv.Cq;
  readonly qp: ibv.Qp;
  /** The peer's buffer, as exchanged. */
  readonly remoteAddr: number;
  readonly remoteRkey: number;
  /** SendFlags.INLINE when `size` fits the inline limit (write/send), else 0. */
  readonly inline: number;
  readonly txDepth: number;
  readonly cqMod: number;
  readonly rxDepth: number;
  readonly spinBudget: number;
  /** Reused completion array for polls. */
  readonly wcs: ibv.Wc[];
  /**
   * The one-way "client is done" notice a looping server waits for (see `needsDoneNotice`):
   * publishes ours and resolves when the peer's arrived; once only, later calls return the same
   * promise. The server calls it before its loop and watches `peerDone`.
   */
  done(): Promise<void>;
  /** True once the peer's done notice arrived; throws if waiting for it failed. */
  readonly peerDone: boolean;
  /** The final barrier: neither side closes its QP before the other stopped using it. */
  end(): Promise<void>;
}

/**
 * Whether the server loops until the client says it is done: send_bw (its server reposts
 * receives and returns credits for as long as the client sends) and the ping-pongs under -D (the
 * server cannot know how many round trips the client will make). Both sides decide alike.
 */
export function needsDoneNotice(a: PerftestArgs): boolean {
  return a.test === 'send_bw' || (a.durationS !== undefined && (a.test === 'write_lat' || a.test === 'send_lat'));
}

/** Throws unless the completion succeeded. */
export function check(wc: ibv.Wc): void {
  if (wc.status !== WcStatus.SUCCESS) {
    throw pvError('PV_ERR_BAD_REQUEST', `perftest: work request ${wc.wrId} failed: ${wcStatusName(wc.status)}`);
  }
}

/** Takes every send completion available now, checks them, and returns how many. */
export function pollSends(s: Session): number {
  const n = ibv.pollCq(s.scq, s.wcs.length, s.wcs);
  for (let i = 0; i < n; i++) check(s.wcs[i]);
  return n;
}

/** Waits for the `outstanding` signaled sends still in flight. */
export function drainSends(s: Session, outstanding: number, what: string): void {
  while (outstanding > 0) {
    const n = pollSends(s);
    outstanding -= n;
    if (n === 0 && !ibv.waitCq(s.scq, { timeoutMs: 1000, spinBudget: s.spinBudget })) {
      s.env.log(`${what}: no send completion for 1 s (${outstanding} outstanding)`);
    }
  }
}

/** One receive of `size` bytes into the second half of the buffer. */
export function recvWr(s: Session, wrId: number): ibv.RecvWr {
  return { wrId, sgList: [{ addr: s.buf + s.half, length: s.size, lkey: s.mr.lkey }] };
}

/**
 * Lets the event loop run once, so a store watch (the peer's done notice) can make progress in a
 * loop that otherwise never returns to it.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
