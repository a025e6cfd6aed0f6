/**
 * A concurrent mutator: a real Worker thread that rewrites a guest's shared memory (ring slots,
 * granted request pages) WHILE the backend reads it — the double-fetch attacker of XSA-155. The
 * fuzzer's thread names the word ranges and starts it, serves the backend meanwhile, then pauses
 * it and waits until it has really stopped writing before checking invariants.
 * Control block layout: MutatorProtocol.ts.
 */

import { Worker } from 'node:worker_threads';
import { pvError } from '../../protocol/errors.js';
import { MUT_CONTROL_WORDS, MUT_MAX_RANGES, MutCommand, MutState, MutWord } from './MutatorProtocol.js';

/** A range of 32-bit words of the target buffer. */
export interface WordRange {
  /** First word (byte offset / 4). */
  readonly word: number;
  readonly words: number;
}

/** The mutator; see the file comment. */
export class Mutator {
  private readonly _ctl: Int32Array;
  private readonly _worker: Worker;
  private readonly _exited: Promise<void>;
  private _running = false;

  private constructor(
    private readonly _target: SharedArrayBuffer,
    control: SharedArrayBuffer,
  ) {
    this._ctl = new Int32Array(control);
    this._worker = new Worker(new URL('./MutatorWorker.js', import.meta.url), {
      workerData: { target: _target, control },
    });
    this._exited = new Promise((resolve) => this._worker.once('exit', () => resolve()));
    // The mutator must never keep the process alive on its own.
    this._worker.unref();
  }

  /** Starts a mutator Worker over `target` (a guest's whole memory). */
  static start(target: SharedArrayBuffer): Mutator {
    const control = new SharedArrayBuffer(MUT_CONTROL_WORDS * 4);
    return new Mutator(target, control);
  }

  /** Words rewritten so far. */
  get writes(): number {
    // ORDERING: seq-cst load of the counter the worker adds to.
    return Atomics.load(this._ctl, MutWord.WRITES) >>> 0;
  }

  /**
   * Starts rewriting `ranges` (word ranges of the target) with values from `seed`; waits (up to
   * `waitMs`) until the worker is really running, so the backend's reads overlap its writes.
   */
  run(ranges: readonly WordRange[], seed: number, waitMs = 50): void {
    if (ranges.length === 0 || ranges.length > MUT_MAX_RANGES) {
      throw pvError('PV_ERR_INVALID_ARG', `a mutator run takes 1..${MUT_MAX_RANGES} ranges, got ${ranges.length}`);
    }
    const words = this._target.byteLength >> 2;
    const c = this._ctl;
    ranges.forEach((r, i) => {
      if (r.word < 0 || r.words < 1 || r.word + r.words > words) {
        throw pvError('PV_ERR_OUT_OF_BOUNDS', `mutator range ${r.word}+${r.words} outside ${words} words`);
      }
      c[MutWord.PAIRS + 2 * i] = r.word;
      c[MutWord.PAIRS + 2 * i + 1] = r.words;
    });
    c[MutWord.RANGES] = ranges.length;
    c[MutWord.SEED] = seed | 0;
    // ORDERING: the ranges above are plain stores published by this seq-cst store of the command.
    Atomics.store(c, MutWord.COMMAND, MutCommand.RUN);
    // ORDERING: wake the waiter after the store above.
    Atomics.notify(c, MutWord.COMMAND);
    this._running = true;
    // ORDERING: wait for RUNNING (bounded: on a busy machine the run simply overlaps less).
    Atomics.wait(c, MutWord.STATE, MutState.PAUSED, waitMs);
  }

  /** Pauses and waits until the worker has stopped writing (bounded by `waitMs`). */
  pause(waitMs = 1000): boolean {
    if (!this._running) return true;
    this._running = false;
    const c = this._ctl;
    // ORDERING: seq-cst store of PAUSE; the worker re-reads the command every 64 writes.
    Atomics.store(c, MutWord.COMMAND, MutCommand.PAUSE);
    // ORDERING: wake the waiter after the store above.
    Atomics.notify(c, MutWord.COMMAND);
    const deadline = Date.now() + waitMs;
    // ORDERING: seq-cst loads of the state; PAUSED is stored after the worker's last write.
    while (Atomics.load(c, MutWord.STATE) !== MutState.PAUSED) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      // ORDERING: seq-cst, see the control block (MutatorProtocol.ts).
      Atomics.wait(c, MutWord.STATE, MutState.RUNNING, left);
    }
    return true;
  }

  /** Stops the worker for good. */
  async stop(): Promise<void> {
    // Keep the process alive until the worker is gone (it is unref'd while running).
    this._worker.ref();
    // ORDERING: seq-cst store of EXIT wakes the worker wherever it waits.
    Atomics.store(this._ctl, MutWord.COMMAND, MutCommand.EXIT);
    // ORDERING: wake the waiter after the store above.
    Atomics.notify(this._ctl, MutWord.COMMAND);
    await this._exited;
  }
}
