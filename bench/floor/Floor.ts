/**
 * Floors measured in the same run as what they are compared with (DESIGN §4, issue 2): the
 * round trip of handing one Int32 between two threads, spinning and with `Atomics.wait`/
 * `notify`, and SharedArrayBuffer-to-SharedArrayBuffer copy bandwidth. Every pvio figure is
 * printed as a ratio to these, so the numbers mean something on any machine.
 */

import { Worker } from 'node:worker_threads';
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
