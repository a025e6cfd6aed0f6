/**
 * The echo side of the thread hand-off floor: waits for an odd value in word 0 and answers with
 * value + 1, either spinning on `Atomics.load` or sleeping in `Atomics.wait`.
 */

import { workerData } from 'node:worker_threads';

const { buffer, mode, rounds } = workerData as { buffer: SharedArrayBuffer; mode: 'spin' | 'wait'; rounds: number };
const word = new Int32Array(buffer);
let expect = 1;
for (let i = 0; i < rounds; i++) {
  if (mode === 'spin') {
    // ORDERING: seq-cst load pairs with the pinger's Atomics.store.
    while (Atomics.load(word, 0) !== expect) {}
  } else {
    // ORDERING: Atomics.wait re-checks the word atomically, so the pinger's store+notify is not lost.
    while (Atomics.load(word, 0) !== expect) Atomics.wait(word, 0, expect - 1);
  }
  // ORDERING: seq-cst store publishes the answer; notify wakes a sleeping pinger.
  Atomics.store(word, 0, expect + 1);
  if (mode === 'wait') Atomics.notify(word, 0);
  expect += 2;
}
