/**
 * The mutator thread (see Mutator.ts): while told to RUN it keeps rewriting random words of the
 * named ranges of a guest's memory — ring slots, granted request pages — with random and edge
 * values, so a backend that reads a shared field twice (XSA-155) sees two different values.
 * Plain (non-Atomics) writes on purpose: that is what a hostile guest's CPU does.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { MutCommand, MutState, MutWord } from './MutatorProtocol.js';
import { XorShiftRng } from './Rng.js';

interface MutatorData {
  readonly target: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
}

const data = workerData as MutatorData;
const mem = new Int32Array(data.target);
const ctl = new Int32Array(data.control);
const EDGE = [0, -1, 1, 0x7fffffff, -0x80000000, 0x10000, 0xffff, 128, 129, 0x200000];

for (;;) {
  // ORDERING: seq-cst load of the command; the ranges were stored before it.
  const cmd = Atomics.load(ctl, MutWord.COMMAND);
  if (cmd === MutCommand.EXIT) break;
  if (cmd === MutCommand.PAUSE) {
    // ORDERING: publish PAUSED (the main thread waits for it), then sleep until the command changes.
    Atomics.store(ctl, MutWord.STATE, MutState.PAUSED);
    // ORDERING: wake the waiter after the store above.
    Atomics.notify(ctl, MutWord.STATE);
    // ORDERING: wait returns at once if the command already changed.
    Atomics.wait(ctl, MutWord.COMMAND, MutCommand.PAUSE, 1000);
    continue;
  }
  // ORDERING: RUNNING is visible before the first write of this burst.
  Atomics.store(ctl, MutWord.STATE, MutState.RUNNING);
  // ORDERING: wake the waiter after the store above.
  Atomics.notify(ctl, MutWord.STATE);
  // ORDERING: seq-cst load, after the command that published it.
  const rng = new XorShiftRng(Atomics.load(ctl, MutWord.SEED));
  // ORDERING: seq-cst load, after the command that published it.
  const n = Atomics.load(ctl, MutWord.RANGES);
  let writes = 0;
  // ORDERING: re-read the command every burst of 64 writes; a PAUSE ends the run promptly.
  while (Atomics.load(ctl, MutWord.COMMAND) === MutCommand.RUN && n > 0) {
    for (let k = 0; k < 64; k++) {
      const r = rng.below(n);
      const off = ctl[MutWord.PAIRS + 2 * r];
      const len = ctl[MutWord.PAIRS + 2 * r + 1];
      const at = off + rng.below(len);
      const v = rng.below(4) === 0 ? EDGE[rng.below(EDGE.length)] : rng.u32() | 0;
      mem[at] = v;
    }
    writes += 64;
  }
  // ORDERING: counter for reports; read by the main thread after it saw PAUSED.
  Atomics.add(ctl, MutWord.WRITES, writes);
}
// ORDERING: seq-cst, see the control block (MutatorProtocol.ts).
Atomics.store(ctl, MutWord.STATE, MutState.PAUSED);
// ORDERING: wake the waiter after the store above.
Atomics.notify(ctl, MutWord.STATE);
parentPort?.postMessage('exited');
