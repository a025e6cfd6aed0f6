/**
 * Worker body for the cross-thread ring stress test (`test/protocol/ring/RingStress.test.ts`).
 *
 * Role `front` runs the plan: writes a random payload for each request into the payload page of
 * its slot, pushes requests (batches of random size; one per push in busy rounds), drains responses
 * and checks each arrives once, in order, with the checksum of the payload it sent. Role `back`
 * copies each request once, checks id order and the payload checksum, and answers it.
 *
 * Both sides sleep only through the ring's final check followed by `adaptiveWait` on the peer's
 * doorbell, with a finite timeout. A timeout that expires while work is pending, and whose doorbell
 * does not ring during a further grace period, is a lost wake-up: the worker reports a failure.
 * Random busy-waits and `Atomics.wait` naps on both sides shake the interleavings.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { BackRing } from '../../protocol/ring/BackRing.js';
import { FrontRing } from '../../protocol/ring/FrontRing.js';
import {
  decodeIoRequest,
  decodeIoResponse,
  fnv1a,
  IO_SLOT_WORDS,
  IoOp,
  type IoRequest,
  type IoResponse,
} from '../../protocol/ring/IoSlot.js';
import { RingWord } from '../../protocol/ring/Layout.js';
import { adaptiveWait } from '../../protocol/wait.js';
import { MockRing, produceIoRequest, produceIoResponse } from './MockRing.js';
import {
  emptyStats,
  mulberry32,
  PAYLOAD_MAX,
  randInt,
  STRESS_CONTROL_WORDS,
  type StressMessage,
  type StressStats,
  StressWord,
  type StressWorkerData,
} from './RingStress.js';

/** A check failed in this worker. */
class StressFailure extends Error {}
/** The peer failed and raised ABORT; this worker just stops. */
class Aborted extends Error {}

/** Per-worker context shared by both roles. */
class Side {
  readonly ctl: Int32Array;
  readonly payload: Uint8Array;
  readonly stats: StressStats = emptyStats();
  readonly rng: () => number;

  constructor(readonly d: StressWorkerData) {
    this.ctl = new Int32Array(d.sab, d.controlOffset, STRESS_CONTROL_WORDS);
    this.payload = new Uint8Array(d.sab, d.payloadOffset);
    this.rng = mulberry32(d.seed ^ (d.role === 'front' ? 0x0f0f_0f0f : 0x5a5a_5a5a));
  }

  fail(msg: string): never {
    throw new StressFailure(`${this.d.role}: ${msg}`);
  }

  /** Stops on the peer's ABORT and on the run deadline. */
  checkLive(): void {
    // ORDERING: seq-cst load; the failing side stores ABORT before ringing both doorbells.
    if (Atomics.load(this.ctl, StressWord.ABORT) !== 0) throw new Aborted(`${this.d.role}: peer aborted`);
    if (Date.now() > this.d.deadline) {
      this.fail(`deadline passed (progress: ${JSON.stringify(this.stats)})`);
    }
  }

  /** Doorbell: count + wake. */
  ring(bell: number): void {
    // ORDERING: the add happens after the ring push (seq-cst store of the producer index) that
    // decided to notify, so a woken peer's final check sees the new index.
    Atomics.add(this.ctl, bell, 1);
    Atomics.notify(this.ctl, bell);
  }

  /**
   * Sleeps on `bell` (whose value was `seen` before the final check). A timeout with `pending()`
   * true gets a grace period; if the doorbell is still silent, the wake-up was lost.
   */
  sleepOn(bell: number, seen: number, pending: () => boolean, what: string): void {
    this.stats.sleeps++;
    const r = adaptiveWait(this.ctl, bell, seen, this.d.spin, this.d.sleepTimeoutMs);
    this.checkLive();
    if (r === 'changed') return;
    if (!pending()) {
      this.stats.idleTimeouts++;
      return;
    }
    if (adaptiveWait(this.ctl, bell, seen, 0, this.d.graceMs) === 'changed') {
      this.stats.lateWakeups++;
      return;
    }
    this.fail(
      `lost wake-up: ${what} pending and no doorbell for ${this.d.sleepTimeoutMs + this.d.graceMs} ms ` +
        `after a final check (progress: ${JSON.stringify(this.stats)})`,
    );
  }

  /** A random delay: usually none, sometimes a short busy-wait, rarely an Atomics.wait nap. */
  delay(napChance: number, spinChance: number): void {
    const x = this.rng();
    if (x < napChance) {
      Atomics.wait(this.ctl, StressWord.IDLE, 0, 0.02 + this.rng() * 0.4);
    } else if (x < napChance + spinChance) {
      const n = randInt(this.rng, 0, 3000);
      for (let i = 0; i < n; i++) Atomics.load(this.ctl, StressWord.IDLE);
    }
  }
}

function runFront(s: Side): void {
  const { d, ctl, payload, stats, rng } = s;
  const front = new FrontRing(MockRing.ringView(d.sab, d.layout), d.layout.slotSize);
  const mask = front.size - 1;
  const sums = new Uint32Array(d.total);
  const lengths = new Uint32Array(d.total);
  const rsp: IoResponse = { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };
  let nextId = 0;
  let nextRsp = 0;

  const drain = (): number => {
    let n = 0;
    for (let avail = front.unconsumedResponses(); avail > 0; avail--) {
      decodeIoResponse(front.words, front.responseSlot(), rsp);
      front.consumeResponse();
      if (rsp.idLo !== nextRsp)
        s.fail(`response for ${rsp.idLo} arrived, expected ${nextRsp} (lost/duplicated/reordered)`);
      if (rsp.status !== 0) s.fail(`response ${nextRsp} has status ${rsp.status}`);
      if (rsp.length !== lengths[nextRsp] || rsp.checksum !== sums[nextRsp]) {
        s.fail(`response ${nextRsp}: backend saw checksum ${rsp.checksum}/${rsp.length} B, sent ${sums[nextRsp]}`);
      }
      nextRsp++;
      n++;
    }
    stats.responses += n;
    return n;
  };

  const waitForResponses = (): void => {
    s.checkLive();
    if (drain() > 0) return;
    // ORDERING: read the doorbell before the final check, so a notify after the check changes it.
    const seen = Atomics.load(ctl, StressWord.BELL_RSP);
    if (front.finalCheckForResponses()) return;
    s.sleepOn(StressWord.BELL_RSP, seen, () => front.unconsumedResponses() > 0, 'responses');
  };

  d.rounds.forEach((round, r) => {
    // ORDERING: BUSY is set before the first push of the batch and cleared after the last one.
    if (round.busy) Atomics.store(ctl, StressWord.BUSY, 1);
    let left = round.batch;
    while (left > 0) {
      s.checkLive();
      const free = front.freeRequests();
      if (free === 0) {
        waitForResponses();
        continue;
      }
      const k = round.busy ? 1 : randInt(rng, 1, Math.min(free, left, 8));
      for (let i = 0; i < k; i++) {
        const slot = front.reqProdPvt & mask;
        const offset = randInt(rng, 0, 15);
        const length = randInt(rng, 0, PAYLOAD_MAX - offset);
        const base = slot * PAYLOAD_MAX + offset;
        for (let b = 0; b < length; b++) payload[base + b] = (rng() * 256) | 0;
        const sum = fnv1a(payload, base, length);
        sums[nextId] = sum;
        lengths[nextId] = length;
        const req: IoRequest = {
          idLo: nextId,
          idHi: r,
          op: IoOp.CHECKSUM,
          nseg: 1,
          gref: slot,
          offset,
          length,
          checksum: sum,
        };
        produceIoRequest(front, req);
        nextId++;
      }
      left -= k;
      stats.requests += k;
      const notify = front.pushRequests();
      if (round.busy) {
        stats.busyPushes++;
        if (notify) stats.busyNotifies++;
      } else {
        stats.otherPushes++;
        if (notify) stats.otherNotifies++;
      }
      if (notify) s.ring(StressWord.BELL_REQ);
      s.delay(0.02, 0.15);
      drain();
    }
    if (round.busy) Atomics.store(ctl, StressWord.BUSY, 0);
    if (round.waitAll) while (nextRsp < nextId) waitForResponses();
  });
  while (nextRsp < nextId) waitForResponses();
  if (nextId !== d.total) s.fail(`produced ${nextId} of ${d.total} requests`);
  if (front.unconsumedResponses() !== 0) s.fail('responses beyond the last request');
}

function runBack(s: Side): void {
  const { d, ctl, payload, stats, rng } = s;
  const back = new BackRing(MockRing.ringView(d.sab, d.layout), d.layout.slotSize);
  const copy = new Int32Array(IO_SLOT_WORDS);
  const req: IoRequest = { idLo: 0, idHi: 0, op: 0, nseg: 0, gref: 0, offset: 0, length: 0, checksum: 0 };
  let nextId = 0;

  const push = (): void => {
    if (back.pushResponses()) s.ring(StressWord.BELL_RSP);
  };

  while (nextId < d.total) {
    s.checkLive();
    const avail = back.unconsumedRequests();
    if (avail > 0) {
      // Bounded, random amount of work per pass, then publish what was answered.
      const n = randInt(rng, 1, avail);
      for (let i = 0; i < n; i++) {
        back.copyRequest(copy);
        decodeIoRequest(copy, 0, req);
        if (req.idLo !== nextId) s.fail(`consumed request ${req.idLo}, expected ${nextId} (lost/duplicated/reordered)`);
        if (req.gref >= back.size || req.offset + req.length > PAYLOAD_MAX) s.fail(`request ${nextId} out of bounds`);
        const sum = fnv1a(payload, req.gref * PAYLOAD_MAX + req.offset, req.length);
        if (sum !== req.checksum) s.fail(`request ${nextId}: payload checksum ${sum}, request says ${req.checksum}`);
        produceIoResponse(back, {
          idLo: req.idLo,
          idHi: req.idHi,
          op: req.op,
          status: 0,
          length: req.length,
          checksum: sum,
        });
        nextId++;
        s.delay(0.01, 0.1);
      }
      stats.requests += n;
      stats.responses += n;
      push();
      continue;
    }
    push();
    // ORDERING: seq-cst load; see the BUSY argument in RingStress.test.ts.
    if (Atomics.load(ctl, StressWord.BUSY) === 1) {
      // A busy backend polls and does not re-arm req_event: spin on req_prod, then nap briefly.
      stats.busyPolls++;
      adaptiveWait(back.words, RingWord.REQ_PROD, Atomics.load(back.words, RingWord.REQ_PROD), 500, 0.05);
      continue;
    }
    // ORDERING: read the doorbell before the final check, so a notify after the check changes it.
    const seen = Atomics.load(ctl, StressWord.BELL_REQ);
    if (back.finalCheckForRequests()) continue;
    s.sleepOn(StressWord.BELL_REQ, seen, () => back.unconsumedRequests() > 0, 'requests');
  }
  push();
  if (back.unconsumedRequests() !== 0) s.fail('requests beyond the plan');
  stats.otherPushes = back.counters.notifies + back.counters.suppressed;
  stats.otherNotifies = back.counters.notifies;
}

if (!isMainThread && parentPort) {
  const d = workerData as StressWorkerData;
  const side = new Side(d);
  let msg: StressMessage;
  try {
    if (d.role === 'front') runFront(side);
    else runBack(side);
    msg = { role: d.role, ok: true, stats: side.stats };
  } catch (e) {
    const aborted = e instanceof Aborted;
    if (!aborted) {
      // ORDERING: ABORT before the doorbells, so the woken peer sees it.
      Atomics.store(side.ctl, StressWord.ABORT, 1);
      side.ring(StressWord.BELL_REQ);
      side.ring(StressWord.BELL_RSP);
    }
    const expected = e instanceof StressFailure || e instanceof Aborted;
    const error = e instanceof Error ? (expected ? e.message : `${d.role}: ${e.stack}`) : String(e);
    msg = { role: d.role, ok: false, aborted, error };
  }
  parentPort.postMessage(msg);
}
