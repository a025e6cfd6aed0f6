/**
 * Floors measured in the same run as what they are compared with (DESIGN §4, issue 2): the
 * round trip of handing one Int32 between two threads, spinning and with `Atomics.wait`/
 * `notify`, SharedArrayBuffer-to-SharedArrayBuffer copy bandwidth, and the message rate of a raw
 * SPSC ring of 64-byte slots between two spinning threads (issue 9: what a paravirtual data ring
 * is compared with — no grants, no event channel, no xenbus). Every pvio figure is printed as a
 * ratio to these, so the numbers mean something on any machine.
 */

import { Worker } from 'node:worker_threads';
import { pvError } from '../../protocol/errors.js';
import { type Summary, summarize } from '../stats/Summary.js';

/** Round-trip samples of a thread hand-off, in µs. */
export async function measureHandoff(mode: 'spin' | 'wait', samples = 2000, perSample = 20): Promise<Summary> {
  const buffer = new SharedArrayBuffer(64);
  const word = new Int32Array(buffer);
  const warmup = 200;
  const rounds = warmup + samples * perSample;
  const worker = new Worker(new URL('./FloorWorker.js', import.meta.url), {
    workerData: { buffer, mode, rounds },
  });
  const online = new Promise<void>((resolve) => worker.once('online', () => resolve()));
  await online;
  const out = new Float64Array(samples);
  let v = 1;
  const once = (): void => {
    // ORDERING: seq-cst store publishes the ping; notify wakes a sleeping echo thread.
    Atomics.store(word, 0, v);
    if (mode === 'wait') Atomics.notify(word, 0);
    const want = v + 1;
    if (mode === 'spin') {
      // ORDERING: seq-cst load pairs with the echo thread's store.
      while (Atomics.load(word, 0) !== want) {}
    } else {
      while (Atomics.load(word, 0) !== want) Atomics.wait(word, 0, v);
    }
    v += 2;
  };
  for (let i = 0; i < warmup; i++) once();
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let i = 0; i < perSample; i++) once();
    out[s] = ((performance.now() - t0) * 1000) / perSample;
  }
  await new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return summarize(out);
}

/** SharedArrayBuffer-to-SharedArrayBuffer `set()` bandwidth for one size, in MiB/s (median). */
export function measureMemcpy(size: number, minBytes = 256 << 20): number {
  const src = new Uint8Array(new SharedArrayBuffer(size));
  const dst = new Uint8Array(new SharedArrayBuffer(size));
  for (let i = 0; i < size; i += 4096) src[i] = i & 0xff;
  const reps = Math.max(4, Math.ceil(minBytes / size / 8));
  const rates: number[] = [];
  for (let round = 0; round < 8; round++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) dst.set(src);
    const sec = (performance.now() - t0) / 1000;
    rates.push((size * reps) / sec / (1 << 20));
  }
  rates.sort((a, b) => a - b);
  return rates[rates.length >> 1];
}

/*
 * Layout of the raw ring's SharedArrayBuffer. The two indices sit on separate 64-byte lines so the
 * producer's and the consumer's stores do not bounce one cache line between the cores:
 *
 *   bytes   0..3    producer index (u32, free-running; written by the producer only)
 *   bytes  64..67   consumer index (u32, free-running; written by the consumer only)
 *   bytes 128..     `slots` slots of 64 B = 16 Int32 words; message i sits in slot i & (slots - 1)
 */
/** Uint32 word index of the producer index. */
export const RING_PROD = 0;
/** Uint32 word index of the consumer index (byte 64: its own cache line). */
export const RING_CONS = 16;
/** Bytes before slot 0. */
export const RING_HEADER_BYTES = 128;
/** Int32 words per 64-byte slot (one message). */
export const RING_SLOT_WORDS = 16;

/** Word `j` of message `i`: distinct per message and per word, so a stale or reordered slot changes the checksum. */
export function ringWord(i: number, j: number): number {
  return (Math.imul(i, 0x9e3779b1) + j) | 0;
}

/** Folds one word into a running checksum (order-dependent: a message read twice or skipped changes it). */
export function ringFold(sum: number, word: number): number {
  return (Math.imul(sum, 31) + word) | 0;
}

/** The checksum a consumer that read messages 0 … total-1 in order returns. */
export function ringChecksum(total: number): number {
  let sum = 0;
  for (let i = 0; i < total; i++) for (let j = 0; j < RING_SLOT_WORDS; j++) sum = ringFold(sum, ringWord(i, j));
  return sum;
}

/** Options of the raw ring floor. */
export interface RingFloorOptions {
  /** Timed messages per run (default 4 Mi: about half a second). */
  readonly messages?: number;
  /** Messages moved and drained before the clock starts (default 256 Ki). */
  readonly warmup?: number;
  /** Runs, each with a fresh consumer thread; the figure is their median (default 3). */
  readonly runs?: number;
  /** Slots of the ring, a power of two (default 256: 16 KiB, an L1-sized ring). */
  readonly slots?: number;
}

/** The raw ring floor: the median rate and what each run measured. */
export interface RingFloor {
  /** Median over the runs, millions of 64 B messages per second. */
  readonly mps: number;
  readonly samplesMps: readonly number[];
  /** The last run's consumer checksum, and what it must be (equal, or the run threw). */
  readonly checksum: number;
  readonly expected: number;
}

/** One run: the main thread produces, a fresh worker consumes; returns msgs/s and the consumer's checksum. */
async function ringRun(slots: number, warmup: number, messages: number): Promise<{ rate: number; checksum: number }> {
  const total = warmup + messages;
  const buffer = new SharedArrayBuffer(RING_HEADER_BYTES + slots * RING_SLOT_WORDS * 4);
  const idx = new Uint32Array(buffer, 0, RING_HEADER_BYTES / 4);
  const ring = new Int32Array(buffer, RING_HEADER_BYTES);
  const worker = new Worker(new URL('./RingFloorWorker.js', import.meta.url), { workerData: { buffer, slots, total } });
  const checksum = new Promise<number>((resolve, reject) => {
    worker.once('message', (m: number) => resolve(m));
    worker.once('error', reject);
  });
  await new Promise<void>((resolve) => worker.once('online', () => resolve()));
  const mask = slots - 1;
  let prod = 0;
  // Produces messages [prod, upTo), publishing each batch of slots it finds free, then waits for
  // the consumer to drain them (so the clock covers every message and nothing more).
  const produce = (upTo: number): void => {
    while (prod < upTo) {
      // ORDERING: seq-cst load of the consumer index: every slot below it has been read.
      const free = slots - ((prod - Atomics.load(idx, RING_CONS)) >>> 0);
      // Full: spin on the load alone (re-storing an unchanged index would only bounce its line).
      if (free === 0) continue;
      const end = Math.min(upTo, prod + free);
      for (; prod < end; prod++) {
        const o = (prod & mask) * RING_SLOT_WORDS;
        for (let j = 0; j < RING_SLOT_WORDS; j++) ring[o + j] = ringWord(prod, j);
      }
      // ORDERING: seq-cst store after the slot writes publishes them; pairs with the consumer's load.
      Atomics.store(idx, RING_PROD, prod >>> 0);
    }
    // ORDERING: seq-cst load; the consumer stores its index after reading the slots.
    while (Atomics.load(idx, RING_CONS) !== upTo >>> 0) {}
  };
  produce(warmup);
  const t0 = performance.now();
  produce(total);
  const sec = (performance.now() - t0) / 1000;
  return { rate: messages / sec, checksum: await checksum };
}

/**
 * The raw SPSC ring floor: `runs` runs of `messages` 64 B messages (after `warmup`), the main
 * thread producing and a Worker consuming, both spinning. Throws PV_ERR_BAD_REQUEST if the
 * consumer's checksum is not the producer's (a slot read before it was written, or twice).
 */
export async function measureRing(o: RingFloorOptions = {}): Promise<RingFloor> {
  const slots = o.slots ?? 256;
  const messages = o.messages ?? 4 << 20;
  const warmup = o.warmup ?? 256 << 10;
  const runs = o.runs ?? 3;
  if (!Number.isInteger(Math.log2(slots)) || slots < 2 || !(messages >= 1 && warmup >= 0 && runs >= 1)) {
    throw pvError('PV_ERR_INVALID_ARG', `ring floor: slots a power of two ≥ 2, messages ≥ 1, runs ≥ 1`);
  }
  const expected = ringChecksum(warmup + messages);
  const samplesMps: number[] = [];
  let checksum = 0;
  for (let r = 0; r < runs; r++) {
    const run = await ringRun(slots, warmup, messages);
    checksum = run.checksum;
    if (checksum !== expected) {
      throw pvError('PV_ERR_BAD_REQUEST', `ring floor: consumer checksum ${checksum}, producer wrote ${expected}`);
    }
    samplesMps.push(run.rate / 1e6);
  }
  const sorted = [...samplesMps].sort((a, b) => a - b);
  return { mps: sorted[sorted.length >> 1], samplesMps, checksum, expected };
}
