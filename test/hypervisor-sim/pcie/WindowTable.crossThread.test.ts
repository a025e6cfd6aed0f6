import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { PcieCluster } from '../../../hypervisor-sim/pcie/PcieCluster.js';
import {
  bigPair,
  CTL_HITS_X,
  CTL_HITS_Y,
  CTL_MISSES,
  CTL_STOP,
  CTL_SWEEPS,
  CTL_VIOLATIONS,
  CTL_WORDS,
  WIN_X,
  WIN_Y,
  type WindowReaderData,
} from './helpers/WindowReaderWorker.js';

/** Hits of each window the reader must make while the window changes under it. */
const ENOUGH_HITS = 2000;
/** Set/clear rounds the writer runs at least (each races the reader). */
const MIN_ROUNDS = 100_000;
/** Rounds before the test gives up (bounded, never hangs). */
const MAX_ROUNDS = 1_000_000;
/** Every this many rounds the writer holds a window until the reader has swept twice. */
const DWELL_EVERY = 64;

describe('pcie window table seqlock: a worker reading while the main thread remaps never sees a torn window', function () {
  this.timeout(120_000);

  it('every lookup and route is no window, exactly X, or exactly Y', async () => {
    const cluster = PcieCluster.create(bigPair());
    const ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    const data: WindowReaderData = { cluster: cluster.descriptor, ctl: ctl.buffer as SharedArrayBuffer };
    const worker = new Worker(new URL('./helpers/WindowReaderWorker.js', import.meta.url), { workerData: data });
    const messages: unknown[] = [];
    const done = new Promise<void>((resolve) => {
      worker.on('message', (m: { type: string }) => {
        messages.push(m);
        if (m.type === 'done') resolve();
      });
    });
    try {
      await once(worker, 'message');
      const idle = new Int32Array(new SharedArrayBuffer(4));
      const dwell = (): void => {
        // ORDERING: seq-cst loads of the reader's sweep counter.
        const sweeps = Atomics.load(ctl, CTL_SWEEPS);
        for (let i = 0; i < 2000 && Atomics.load(ctl, CTL_SWEEPS) < sweeps + 2; i++) {
          // ORDERING: nobody notifies `idle`: a 1 ms sleep.
          Atomics.wait(idle, 0, 0, 1);
        }
      };
      // ORDERING: seq-cst loads of the reader's counters.
      const enough = (): boolean =>
        Atomics.load(ctl, CTL_HITS_X) >= ENOUGH_HITS && Atomics.load(ctl, CTL_HITS_Y) >= ENOUGH_HITS;
      let rounds = 0;
      for (; rounds < MAX_ROUNDS && (rounds < MIN_ROUNDS || !enough()); rounds++) {
        const w = rounds % 2 === 0 ? WIN_X : WIN_Y;
        const slot = cluster.setWindow('A', 'ab', w);
        if (rounds % DWELL_EVERY === DWELL_EVERY - 1 && !enough()) dwell();
        assert.equal(cluster.clearWindow('A', slot), true);
      }
      // ORDERING: seq-cst store; the worker polls it once per sweep.
      Atomics.store(ctl, CTL_STOP, 1);
      await done;
      assert.deepEqual(messages[1], { type: 'done', firstViolation: null });
      assert.equal(Atomics.load(ctl, CTL_VIOLATIONS), 0);
      const counts = [CTL_HITS_X, CTL_HITS_Y, CTL_MISSES].map((i) => Atomics.load(ctl, i));
      assert.ok(counts[0] >= ENOUGH_HITS && counts[1] >= ENOUGH_HITS, `hits X/Y/miss ${counts} in ${rounds} rounds`);
      assert.equal(cluster.windows('A').length, 0);
    } finally {
      Atomics.store(ctl, CTL_STOP, 1);
      await worker.terminate();
    }
  });
});
