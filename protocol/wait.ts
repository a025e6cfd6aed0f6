/**
 * Adaptive waiting on a shared Int32 word: spin on `Atomics.load` for a bounded budget, then
 * sleep in `Atomics.wait` (DESIGN §4).
 *
 * Why both: on a 2-core machine a thread-to-thread round trip costs ≈ 0.17 µs when both spin and
 * ≈ 13 µs through `Atomics.wait`/`notify`, but a thread that spins while the thread it waits for
 * is descheduled burns its whole time slice (milliseconds). A budget of ≈ 1000 polls (≈ 10 µs)
 * is longer than a wake-up, so sleeps do not cascade; the budget is a parameter and is reported
 * with every result.
 *
 * Stage ledger: the whole wait — spin and sleep — is IDLE (StageLedger.ts). Both are time spent
 * waiting for another thread, not work of the stage that called; counting the spin as that
 * stage's would make a busy-polling backend look as if serving cost its whole idle time.
 */

import { Stage, stages } from './stage/StageLedger.js';

/** Result of a wait. */
export type WaitResult = 'changed' | 'timed-out';

/**
 * Waits until `word[index] !== expected`, spinning `spinBudget` polls first.
 * Returns 'changed' as soon as the value differs (it may have changed and changed back: callers
 * re-check their own condition, as with a futex).
 */
export function adaptiveWait(
  word: Int32Array,
  index: number,
  expected: number,
  spinBudget: number,
  timeoutMs = Number.POSITIVE_INFINITY,
): WaitResult {
  const prev = stages.enter(Stage.IDLE);
  try {
    return spinThenSleep(word, index, expected, spinBudget, timeoutMs);
  } finally {
    // Atomics.wait throws on a word that is not a shared Int32Array: restore the stage anyway.
    stages.enter(prev);
  }
}

function spinThenSleep(
  word: Int32Array,
  index: number,
  expected: number,
  spinBudget: number,
  timeoutMs: number,
): WaitResult {
  for (let i = 0; i < spinBudget; i++) {
    // ORDERING: seq-cst load pairs with the waker's Atomics.store/add before its notify.
    if (Atomics.load(word, index) !== expected) return 'changed';
  }
  if (timeoutMs <= 0) return Atomics.load(word, index) !== expected ? 'changed' : 'timed-out';
  // ORDERING: Atomics.wait re-checks the value atomically before sleeping, so a store + notify
  // that happens after our last poll cannot be lost.
  const r = Atomics.wait(word, index, expected, timeoutMs);
  return r === 'timed-out' ? 'timed-out' : 'changed';
}

/**
 * Spin budget that adapts to what it observes: it grows (up to `max`) when the awaited change
 * usually arrives just after the budget ran out, and shrinks when spinning rarely pays, so two
 * threads on two cores settle on spinning while three threads back off to sleeping.
 */
export class AdaptiveSpin {
  private _budget: number;
  private readonly _min: number;
  private readonly _max: number;

  constructor(initial = 1000, min = 64, max = 20000) {
    this._budget = initial;
    this._min = min;
    this._max = max;
  }

  /** Current budget in polls. */
  get budget(): number {
    return this._budget;
  }

  /** Waits like `adaptiveWait` and tunes the budget from the outcome. */
  wait(word: Int32Array, index: number, expected: number, timeoutMs = Number.POSITIVE_INFINITY): WaitResult {
    const prev = stages.enter(Stage.IDLE);
    try {
      return this._wait(word, index, expected, timeoutMs);
    } finally {
      stages.enter(prev);
    }
  }

  /**
   * Tunes the budget from one wait's outcome, for callers that spin themselves (waitCq): paid =
   * the awaited change came within the budget (nudge it up a little), else halve it so a crowded
   * machine sleeps sooner.
   */
  record(paid: boolean): void {
    if (paid) {
      if (this._budget < this._max) this._budget += (this._budget >> 4) + 1;
    } else {
      this._budget = Math.max(this._min, this._budget >> 1);
    }
  }

  private _wait(word: Int32Array, index: number, expected: number, timeoutMs: number): WaitResult {
    const budget = this._budget;
    for (let i = 0; i < budget; i++) {
      // ORDERING: seq-cst load pairs with the waker's store before notify.
      if (Atomics.load(word, index) !== expected) {
        this.record(true);
        return 'changed';
      }
    }
    this.record(false);
    // With no time left, still look once: with a budget of 0 the loop above never read the word.
    if (timeoutMs <= 0) return Atomics.load(word, index) !== expected ? 'changed' : 'timed-out';
    // ORDERING: Atomics.wait re-checks atomically; see adaptiveWait.
    return Atomics.wait(word, index, expected, timeoutMs) === 'timed-out' ? 'timed-out' : 'changed';
  }
}

/** What `Atomics.waitAsync` returns: at once (`not-equal`, `timed-out`) or a promise. */
export type WaitAsyncResult = { async: false; value: string } | { async: true; value: Promise<string> };

/**
 * `Atomics.waitAsync` (ES2024, in Node ≥ 16; this project's TypeScript lib is older): waits for a
 * notify on `a[i]` while it holds `v`, without blocking the thread — how a main thread that owns
 * sockets waits on shared memory. On Node 20 a worker whose only pending work is a waitAsync exits
 * (nodejs/node#44729): give it a timeout or another ref'd handle.
 */
export const waitAsync = (
  Atomics as unknown as { readonly waitAsync: (a: Int32Array, i: number, v: number, t?: number) => WaitAsyncResult }
).waitAsync;
