/**
 * Cross-thread ring stress: a front worker and a back worker over one SharedArrayBuffer ring, with
 * doorbell words as the notification and random delays on both sides (see RingStressWorker.ts).
 *
 * Why the busy-phase bound is structural, not a timing effect: in a busy round the front stores
 * BUSY = 1 before its first push P1 and BUSY = 0 after its last push Pm, pushing one request per
 * push. The back re-arms req_event (finalCheckForRequests) only after it found the ring empty AND
 * read BUSY = 0. A push Pj notifies iff req_event ∈ (old, new] = {x + j} (x = req_prod before P1).
 * For j ≥ 2 that needs a re-arm with req_cons ≥ x + 1, i.e. after the back consumed P1's request;
 * its BUSY load then follows (seq-cst) P1's publish, which follows BUSY = 1, so it can only read
 * 0 after Pm was published — and that re-arm comes after every Pj's read of req_event. Hence at
 * most one notify per busy round (the first push), whatever the scheduling: notifies ≤ rounds.
 * If the producer ignored req_event (no suppression), every push would notify: ratio 1.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import {
  createStressRing,
  planStress,
  type StressMessage,
  type StressRound,
  type StressStats,
  type StressWorkerData,
} from '../../helpers/RingStress.js';

const ROUNDS = 400;
/** Start the indices near 2^32 so the run also crosses the wrap. */
const START = 0xffff_ffff - 1000;
/** Every sleep gives up after this long; expiring with work pending means a lost wake-up. */
const SLEEP_TIMEOUT_MS = 2000;
const GRACE_MS = 500;
/** Hard bound for one run (both workers stop on their own before the main thread gives up). */
const RUN_BOUND_MS = 12_000;

function seedFromEnv(): number {
  const env = process.env.PVIO_STRESS_SEED;
  return env !== undefined ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

interface RunResult {
  front: StressStats;
  back: StressStats;
  plan: StressRound[];
}

/** Runs both workers to completion; rejects with the first real failure (not the peer's abort). */
async function runStress(seed: number, spin: number): Promise<RunResult> {
  const { ring, controlOffset, payloadOffset } = createStressRing(START);
  const plan = planStress(seed, ROUNDS, ring.front.size);
  const base: Omit<StressWorkerData, 'role'> = {
    sab: ring.sab,
    layout: ring.layout,
    controlOffset,
    payloadOffset,
    seed,
    rounds: plan,
    total: plan.reduce((n, r) => n + r.batch, 0),
    spin,
    sleepTimeoutMs: SLEEP_TIMEOUT_MS,
    graceMs: GRACE_MS,
    deadline: Date.now() + RUN_BOUND_MS,
  };
  const url = new URL('../../helpers/RingStressWorker.js', import.meta.url);
  const workers = (['front', 'back'] as const).map((role) => new Worker(url, { workerData: { ...base, role } }));
  let timer: NodeJS.Timeout | undefined;
  try {
    const stats = await new Promise<Record<'front' | 'back', StressStats>>((resolve, reject) => {
      const done: Partial<Record<'front' | 'back', StressStats>> = {};
      const failures: string[] = [];
      let reported = 0;
      const settle = () => {
        if (reported < 2) return;
        if (failures.length > 0) reject(new Error(failures.join('\n')));
        else resolve(done as Record<'front' | 'back', StressStats>);
      };
      for (const w of workers) {
        w.once('message', (m: StressMessage) => {
          reported++;
          if (m.ok) done[m.role] = m.stats;
          else if (!m.aborted) failures.unshift(m.error);
          else failures.push(m.error);
          settle();
        });
        w.once('error', (e) => reject(e));
        w.once('exit', (code) => {
          if (code !== 0) reject(new Error(`a stress worker exited with code ${code}`));
        });
      }
      timer = setTimeout(() => reject(new Error(`no result within ${RUN_BOUND_MS + 3000} ms`)), RUN_BOUND_MS + 3000);
    });
    return { ...stats, plan };
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

describe('ring §1.3 (cross-thread): randomized producer/consumer stress with doorbells', () => {
  // 0: every wait sleeps; 50: a spin shorter than a wake-up (sleeps cascade); 1000: DESIGN §4's budget.
  for (const spin of [0, 50, 1000]) {
    it(`spin budget ${spin}: no lost wake-up, every request answered exactly once in order with matching payload checksum, busy-phase notifies/pushes < 0.5`, async function () {
      this.timeout(RUN_BOUND_MS + 5000);
      const seed = seedFromEnv();
      const tag = `seed ${seed} (rerun: PVIO_STRESS_SEED=${seed})`;
      let r: RunResult;
      try {
        r = await runStress(seed, spin);
      } catch (e) {
        throw new Error(`${tag}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const { front, back, plan } = r;
      const total = plan.reduce((n, x) => n + x.batch, 0);
      const busyRounds = plan.filter((x) => x.busy).length;
      assert.equal(front.requests, total, `${tag}: front produced every request`);
      assert.equal(back.requests, total, `${tag}: back consumed every request once`);
      assert.equal(back.responses, total, `${tag}: back answered every request`);
      assert.equal(front.responses, total, `${tag}: front received every response once, in order`);
      assert.ok(back.sleeps > 0 && front.sleeps > 0, `${tag}: both sides went through final check + sleep`);
      assert.ok(front.otherNotifies > 0 && back.otherNotifies > 0, `${tag}: doorbells were used`);

      const busyItems = plan.filter((x) => x.busy).reduce((n, x) => n + x.batch, 0);
      assert.equal(front.busyPushes, busyItems, `${tag}: one push per request in busy rounds`);
      assert.ok(
        front.busyNotifies <= busyRounds,
        `${tag}: at most one notify per busy round (${front.busyNotifies} > ${busyRounds})`,
      );
      const ratio = front.busyNotifies / front.busyPushes;
      assert.ok(ratio < 0.5, `${tag}: busy-phase notifies/pushes ${ratio} ≥ 0.5`);
      const other = front.otherNotifies / front.otherPushes;
      const rsp = back.otherNotifies / back.otherPushes;
      console.log(
        `      ${tag}, spin ${spin}: ${total} requests; busy phase req notifies/pushes = ` +
          `${front.busyNotifies}/${front.busyPushes} = ${ratio.toFixed(3)}; other rounds ${other.toFixed(3)}; ` +
          `rsp ${rsp.toFixed(3)}; sleeps front ${front.sleeps} back ${back.sleeps}; ` +
          `late wake-ups ${front.lateWakeups + back.lateWakeups}; busy polls ${back.busyPolls}`,
      );
    });
  }
});
