/**
 * Polling and waiting on a completion queue: common code for every transport, because every
 * provider's CQ is a ring of protocol/rdma/Cq.ts in the caller's own memory.
 *
 * Waiting follows the ring's arm protocol (Cq.ts): the consumer stores ARMED = 1, then re-reads
 * PROD; the producer stores PROD, then reads ARMED and notifies only if it is set — a Dekker
 * pair on seq-cst atomics, so either the consumer sees the new CQE or the producer sees the arm
 * and wakes it. The consumer then spins a bounded budget and sleeps on PROD (protocol/wait.ts).
 *
 * Providers that complete some WRs outside the ring (`VerbsProvider.takeCompletions`) are
 * served too: pollCq takes those after the ring's (only when the ring came up short, so a
 * provider flushing a lost device's WRs never overtakes a CQE still in the ring), and a waiter
 * that finds some after `progress()` keeps them in the CQ's stash for pollCq instead of sleeping.
 * Every CQE taken from the ring is reported to the provider (`ringCompletions`).
 */

import { pvError } from '../../protocol/errors.js';
import { CqWord, pollCqes, releaseCqes } from '../../protocol/rdma/Cq.js';
import { copyWc, emptyWc, type Wc } from '../../protocol/rdma/Verbs.js';
import { type AdaptiveSpin, adaptiveWait } from '../../protocol/wait.js';
import { type Cq, checkOpen } from './Objects.js';

/** Options of `waitCq`. */
export interface WaitCqOptions {
  /** Give up after this long (default: no limit). */
  readonly timeoutMs?: number;
  /** Polls of the producer word before sleeping (default 1000 ≈ 10 µs; DESIGN §4). */
  readonly spinBudget?: number;
  /**
   * Spin this budget instead, and tune it from the outcome (protocol/wait.ts AdaptiveSpin): it
   * grows while completions come within it and halves when they do not, so a guest whose peer
   * answers fast keeps polling while many guests crowding two cores back off to sleeping.
   */
  readonly adaptive?: AdaptiveSpin;
  /**
   * Longest single sleep before calling `provider.progress()` again (default WAIT_SLICE_MS).
   * A backstop for providers that need this thread to move; completions themselves wake the
   * waiter through the producer's notify.
   */
  readonly progressIntervalMs?: number;
}

/** Default polls before sleeping. */
export const DEFAULT_SPIN_BUDGET = 1000;
/**
 * Default longest single sleep: after it the waiter calls `provider.progress()` again, so a
 * provider whose completions need this thread (a ring to drain) is never starved.
 */
export const WAIT_SLICE_MS = 50;

/** Completions a waiter may hold for pollCq (taken from the provider while deciding to sleep). */
const STASH = 16;

/**
 * Takes up to `max` CQEs from the ring into `out[0 …)`, releases them, and tells the provider
 * which it took (`ringCompletions`: it may track outstanding WRs, and drop duplicates).
 */
function fromRing(cq: Cq, out: Wc[], max: number): number {
  const n = pollCqes(cq.words, cq.cqe, cq.cons, out, max);
  if (n === 0) return 0;
  cq.cons = (cq.cons + n) >>> 0;
  releaseCqes(cq.words, cq.cons);
  const p = cq.context.provider;
  return p.ringCompletions === undefined ? n : p.ringCompletions(cq.handle, out, 0, n);
}

/**
 * Everything available now: ring CQEs first, then completions `waitCq` stashed, then those the
 * provider holds outside the ring (`takeCompletions`: paravirt WRs the backend refused).
 */
function gather(cq: Cq, out: Wc[], max: number): number {
  let n = fromRing(cq, out, max);
  if (cq.stashed > 0 && n < max) {
    const k = Math.min(cq.stashed, max - n);
    const stash = cq.stash as Wc[];
    for (let i = 0; i < k; i++) copyWc(out[n + i], stash[i]);
    for (let i = k; i < cq.stashed; i++) copyWc(stash[i - k], stash[i]);
    cq.stashed -= k;
    n += k;
  }
  const p = cq.context.provider;
  if (p.takeCompletions !== undefined && n < max) n += p.takeCompletions(cq.handle, out, n, max - n);
  return n;
}

/**
 * `ibv_poll_cq`: takes up to `numEntries` completions into `wc[0 … n)` (caller-owned Wc
 * objects, reused; `emptyWc()` makes them) and returns n; n < numEntries means the CQ is
 * drained. On an empty CQ the provider gets one `progress()` call and the CQ is read again
 * (PVRDMA's "poll" doorbell). A CQ that overflowed (completions were lost) throws
 * PV_ERR_RDMA_QUEUE_FULL once drained, as `ibv_poll_cq` returns < 0 on a CQ in error.
 */
export function pollCq(cq: Cq, numEntries: number, wc: Wc[]): number {
  if (cq.destroyed) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `CQ ${cq.handle} was destroyed`);
  checkOpen(cq.context);
  if (!Number.isInteger(numEntries) || numEntries < 0 || numEntries > wc.length) {
    throw pvError('PV_ERR_INVALID_ARG', `pollCq of ${numEntries} completions into an array of ${wc.length}`);
  }
  let n = gather(cq, wc, numEntries);
  if (n === 0 && numEntries > 0) {
    cq.context.provider.progress();
    n = gather(cq, wc, numEntries);
    // ORDERING: seq-cst load; the producer sets OVERFLOW before dropping a CQE.
    if (n === 0 && Atomics.load(cq.words, CqWord.OVERFLOW) !== 0) {
      throw pvError('PV_ERR_RDMA_QUEUE_FULL', `CQ ${cq.handle} overflowed: completions were lost`);
    }
  }
  return n;
}

/** True when the ring holds a CQE the consumer has not taken (or overflowed), or one is stashed. */
function ready(cq: Cq): boolean {
  if (cq.stashed > 0) return true;
  // ORDERING: seq-cst loads; PROD is published after the CQE (produceCqe).
  return Atomics.load(cq.words, CqWord.PROD) >>> 0 !== cq.cons || Atomics.load(cq.words, CqWord.OVERFLOW) !== 0;
}

/**
 * After `progress()`: moves completions the provider holds outside the ring into the CQ's stash
 * (the waiter cannot sleep on those; pollCq hands them out). True if there were any.
 */
function stashProviderCompletions(cq: Cq): boolean {
  const p = cq.context.provider;
  if (p.takeCompletions === undefined || cq.stashed > 0) return cq.stashed > 0;
  cq.stash ??= Array.from({ length: STASH }, emptyWc);
  cq.stashed = p.takeCompletions(cq.handle, cq.stash, 0, STASH);
  return cq.stashed > 0;
}

/**
 * Waits until the CQ has a completion to poll (true) or `timeoutMs` passes (false). Arms the
 * CQ, re-checks, lets the provider make progress, then spins `spinBudget` polls and sleeps on
 * the producer word; never spins without bound. Spurious returns are possible only as `true`
 * with something to poll (an overflow counts: `pollCq` then reports it).
 */
export function waitCq(cq: Cq, opts: WaitCqOptions = {}): boolean {
  if (cq.destroyed) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `CQ ${cq.handle} was destroyed`);
  checkOpen(cq.context);
  const timeoutMs = opts.timeoutMs ?? Number.POSITIVE_INFINITY;
  const spin = opts.adaptive?.budget ?? opts.spinBudget ?? DEFAULT_SPIN_BUDGET;
  const slice = opts.progressIntervalMs ?? WAIT_SLICE_MS;
  if (!(timeoutMs >= 0) || !Number.isInteger(spin) || spin < 0 || !(slice > 0)) {
    throw pvError(
      'PV_ERR_INVALID_ARG',
      `waitCq: timeoutMs ${timeoutMs}, spinBudget ${spin} must be ≥ 0 and progressIntervalMs ${slice} > 0`,
    );
  }
  if (ready(cq)) return true;
  const words = cq.words;
  const provider = cq.context.provider;
  const deadline = performance.now() + timeoutMs;
  // Spin first WITHOUT arming: an armed CQ costs its producer an Atomics.notify per CQE (a
  // process-wide futex lock in V8), so the arm is set only right before we may sleep.
  for (let i = 0; i < spin; i++) {
    if (ready(cq)) {
      opts.adaptive?.record(true);
      return true;
    }
  }
  opts.adaptive?.record(false);
  for (;;) {
    // ORDERING: store ARMED before re-reading PROD (Dekker pair with produceCqe's store PROD →
    // exchange ARMED): either we see its CQE below or it sees the arm and notifies PROD.
    Atomics.store(words, CqWord.ARMED, 1);
    // ORDERING: seq-cst load after the arm; the raw value is what Atomics.wait compares against.
    const prod = Atomics.load(words, CqWord.PROD);
    if (prod >>> 0 !== cq.cons || Atomics.load(words, CqWord.OVERFLOW) !== 0) break;
    provider.progress();
    if (ready(cq) || stashProviderCompletions(cq)) break;
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      disarm(words);
      return false;
    }
    cq.waits++;
    adaptiveWait(words, CqWord.PROD, prod, 0, Math.min(remaining, slice));
    if (ready(cq)) break;
  }
  disarm(words);
  return true;
}

function disarm(words: Int32Array): void {
  // ORDERING: seq-cst store; a producer that still sees 1 only sends a notify nobody waits for.
  Atomics.store(words, CqWord.ARMED, 0);
}
