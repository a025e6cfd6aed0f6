/**
 * The consumer of the raw ring floor (Floor.ts `measureRing`): spins on the producer index, reads
 * every word of every published 64-byte slot into a checksum (so the reads are real work the
 * engine cannot drop), publishes its consumer index once per batch, and posts the checksum when
 * all `total` messages are read.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { RING_CONS, RING_HEADER_BYTES, RING_PROD, RING_SLOT_WORDS, ringFold } from './Floor.js';

const { buffer, slots, total } = workerData as { buffer: SharedArrayBuffer; slots: number; total: number };
const idx = new Uint32Array(buffer, 0, RING_HEADER_BYTES / 4);
const ring = new Int32Array(buffer, RING_HEADER_BYTES);
const mask = slots - 1;
let cons = 0;
let sum = 0;
while (cons < total) {
  // ORDERING: seq-cst load of the producer index; the slot writes before its store are visible.
  const prod = Atomics.load(idx, RING_PROD);
  // INVARIANT: the producer never runs more than `slots` ahead, so prod - cons (mod 2^32) ≤ slots.
  const end = cons + ((prod - cons) >>> 0);
  if (end === cons) continue;
  for (; cons < end; cons++) {
    const o = (cons & mask) * RING_SLOT_WORDS;
    for (let j = 0; j < RING_SLOT_WORDS; j++) sum = ringFold(sum, ring[o + j]);
  }
  // ORDERING: seq-cst store after the slot reads frees the slots; pairs with the producer's load.
  Atomics.store(idx, RING_CONS, cons >>> 0);
}
parentPort?.postMessage(sum);
