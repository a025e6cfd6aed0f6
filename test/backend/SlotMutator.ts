/**
 * A hostile guest's second thread for the XSA-155 class tests: a real Worker that, while armed,
 * rewrites chosen words of a ring slot in a tight loop, alternating between two versions (an
 * honest request and a hostile one), so the backend — serving in the test's thread — copies the
 * slot while another CPU changes it under it. Plain (non-atomic) stores, as a guest's compiler
 * may emit; a copy can see version A, version B or any word-by-word mix of the two.
 *
 * Handshake (control words, all seq-cst): the test writes the slot's first word index and sets
 * STATE to ARMED; the worker mutates until it sees IDLE, then bumps ACK and sleeps. `disarm`
 * returns only after that ACK, so the slot is quiet when the test reads the response.
 */

import { Worker } from 'node:worker_threads';

const enum Ctl {
  STATE = 0,
  AT = 1,
  ACK = 2,
  FLIPS = 3,
}
const IDLE = 0;
const ARMED = 1;
const QUIT = 2;

// The worker body (plain JS: it runs from an eval'd string, no module resolution needed).
const BODY = `
const { workerData } = require('node:worker_threads');
const ctl = new Int32Array(workerData.ctl);
const words = new Int32Array(workerData.sab, workerData.byteOffset, workerData.length);
const idx = workerData.idx, a = workerData.a, b = workerData.b;
for (;;) {
  const s = Atomics.load(ctl, 0);
  if (s === 2) break;
  if (s === 1) {
    const at = Atomics.load(ctl, 1);
    for (let r = 0; r < 64; r++) {
      const v = (r & 1) === 0 ? b : a;
      for (let k = 0; k < idx.length; k++) words[at + idx[k]] = v[k];
    }
    // Leave version A in place between bursts, so an untorn copy is usually the honest one.
    for (let k = 0; k < idx.length; k++) words[at + idx[k]] = a[k];
    Atomics.add(ctl, 3, 1);
    continue;
  }
  Atomics.add(ctl, 2, 1);
  Atomics.wait(ctl, 0, 0, 50);
}
`;

/** The two versions of the mutated words: `idx[k]` (relative to the slot) is `a[k]` or `b[k]`. */
export interface SlotVersions {
  readonly idx: readonly number[];
  readonly a: readonly number[];
  readonly b: readonly number[];
}

/** Words at which `a` and `b` (two encodings of a slot) differ, from word `from` on. */
export function diffWords(a: Int32Array, b: Int32Array, from: number): SlotVersions {
  const idx: number[] = [];
  for (let i = from; i < a.length; i++) if (a[i] !== b[i]) idx.push(i);
  return { idx, a: idx.map((i) => a[i]), b: idx.map((i) => b[i]) };
}

/** The mutator thread; see the file comment. */
export class SlotMutator {
  private readonly _ctl = new Int32Array(new SharedArrayBuffer(16));
  private readonly _worker: Worker;

  constructor(ringWords: Int32Array, v: SlotVersions) {
    if (!(ringWords.buffer instanceof SharedArrayBuffer)) throw new Error('the ring is not shared memory');
    this._worker = new Worker(BODY, {
      eval: true,
      workerData: {
        ctl: this._ctl.buffer,
        sab: ringWords.buffer,
        byteOffset: ringWords.byteOffset,
        length: ringWords.length,
        idx: [...v.idx],
        a: [...v.a],
        b: [...v.b],
      },
    });
  }

  /** Bursts of rewrites done so far. */
  get flips(): number {
    // ORDERING: seq-cst load of the worker's counter.
    return Atomics.load(this._ctl, Ctl.FLIPS);
  }

  /** Starts rewriting the slot at word `at`; returns once the worker has done at least one burst. */
  arm(at: number): void {
    // ORDERING: AT is stored before STATE, so the worker never mutates a stale slot.
    Atomics.store(this._ctl, Ctl.AT, at);
    const f = this.flips;
    // ORDERING: publish ARMED and wake the worker.
    Atomics.store(this._ctl, Ctl.STATE, ARMED);
    Atomics.notify(this._ctl, Ctl.STATE);
    const deadline = Date.now() + 5000;
    while (this.flips === f) {
      if (Date.now() > deadline) throw new Error('the mutator thread did not start');
    }
  }

  /** Stops rewriting; returns once the worker acknowledged (the slot is quiet). */
  disarm(): void {
    // ORDERING: read ACK before IDLE is published; the worker bumps it only after seeing IDLE.
    const ack = Atomics.load(this._ctl, Ctl.ACK);
    Atomics.store(this._ctl, Ctl.STATE, IDLE);
    const deadline = Date.now() + 5000;
    // ORDERING: seq-cst wait on ACK; returns when the worker bumped it.
    while (Atomics.load(this._ctl, Ctl.ACK) === ack) {
      if (Date.now() > deadline) throw new Error('the mutator thread did not stop');
      Atomics.wait(this._ctl, Ctl.ACK, ack, 10);
    }
  }

  /** Ends the worker. */
  async close(): Promise<void> {
    // ORDERING: publish QUIT and wake the worker.
    Atomics.store(this._ctl, Ctl.STATE, QUIT);
    Atomics.notify(this._ctl, Ctl.STATE);
    await this._worker.terminate();
  }
}
