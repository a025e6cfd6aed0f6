/**
 * Shared definitions for the cross-thread ring stress test: the buffer layout, the plan (rounds),
 * the messages a stress worker posts, and a seeded PRNG. Kept apart from the worker entry point
 * (`RingStressWorker.ts`) so the test can import it without starting a worker body.
 *
 * ```
 * SharedArrayBuffer
 * 0           4096                    4096 + 64                         end
 * | ring (1 page, 32 × 64-B slots) | control words (Int32 × 16) | payload: slot i at i × PAYLOAD_MAX |
 * ```
 * Control words are this test's stand-in for event channels: one "doorbell" counter per direction,
 * bumped with `Atomics.add` + `Atomics.notify` when a push says the peer asked to be notified; the
 * sleeper does the ring's final check and then `adaptiveWait`s on the doorbell.
 */

import { IO_SLOT_SIZE } from '../../protocol/ring/IoSlot.js';
import { ringBytes, ringSlots } from '../../protocol/ring/Layout.js';
import { MockRing, type MockRingLayout } from './MockRing.js';

/** Int32 word indices in the control area. */
export const StressWord = {
  /** Front → back doorbell (request notifications). */
  BELL_REQ: 0,
  /** Back → front doorbell (response notifications). */
  BELL_RSP: 1,
  /** 1 while the front pushes a busy-phase batch: the back then polls and never re-arms req_event. */
  BUSY: 2,
  /** Set to 1 by a side that failed; the other side stops. */
  ABORT: 3,
  /** Never written: target of `Atomics.wait` naps that only time out. */
  IDLE: 4,
} as const;

/** Number of control words (rounded up to a cache line). */
export const STRESS_CONTROL_WORDS = 16;
/** Largest payload per request, in bytes; slot i's payload lives at `payloadOffset + i × PAYLOAD_MAX`. */
export const PAYLOAD_MAX = 256;

/** One round of the plan, run by the front. */
export interface StressRound {
  /** Requests pushed in this round. */
  readonly batch: number;
  /** Busy phase: one request per push, BUSY set for the whole batch, so the back stays awake. */
  readonly busy: boolean;
  /** Wait for every outstanding response before starting the next round (lets the back go idle). */
  readonly waitAll: boolean;
}

/** Everything a stress worker needs (structured-clone safe). */
export interface StressWorkerData {
  /** Which end this worker drives. */
  readonly role: 'front' | 'back';
  /** Ring + control + payload memory. */
  readonly sab: SharedArrayBuffer;
  /** Where the ring lives in `sab`. */
  readonly layout: MockRingLayout;
  /** Byte offset of the control words. */
  readonly controlOffset: number;
  /** Byte offset of the payload area. */
  readonly payloadOffset: number;
  /** Seed of this run; each role derives its own PRNG stream from it. */
  readonly seed: number;
  /** The plan (the back only uses the total). */
  readonly rounds: readonly StressRound[];
  /** Total requests in the plan. */
  readonly total: number;
  /** Spin budget (polls) before each sleep. */
  readonly spin: number;
  /** Timeout of every sleep on a doorbell, ms: generous, never expected to expire with work pending. */
  readonly sleepTimeoutMs: number;
  /** After such a timeout with work pending, how long a late doorbell is still accepted, ms. */
  readonly graceMs: number;
  /** Absolute `Date.now()` after which the worker gives up (a bound, not a measurement). */
  readonly deadline: number;
}

/** Counters a worker reports at the end. */
export interface StressStats {
  /** Push calls in busy rounds (front only; one request each). */
  busyPushes: number;
  /** Of those, how many had to notify the peer. */
  busyNotifies: number;
  /** Push calls outside busy rounds. */
  otherPushes: number;
  /** Of those, how many had to notify the peer. */
  otherNotifies: number;
  /** Requests (front: produced, back: consumed). */
  requests: number;
  /** Responses (front: consumed, back: produced). */
  responses: number;
  /** Sleeps on a doorbell after a final check found no work. */
  sleeps: number;
  /** Sleeps that timed out with no work pending (the peer was just slow). */
  idleTimeouts: number;
  /** Doorbells that arrived only in the grace period after a timeout (late, not lost). */
  lateWakeups: number;
  /** Back only: polls while the front held BUSY (never re-armed then). */
  busyPolls: number;
}

/** What a stress worker posts when it ends. */
export type StressMessage =
  | { readonly role: 'front' | 'back'; readonly ok: true; readonly stats: StressStats }
  | { readonly role: 'front' | 'back'; readonly ok: false; readonly aborted: boolean; readonly error: string };

/** Fresh zeroed stats. */
export function emptyStats(): StressStats {
  return {
    busyPushes: 0,
    busyNotifies: 0,
    otherPushes: 0,
    otherNotifies: 0,
    requests: 0,
    responses: 0,
    sleeps: 0,
    idleTimeouts: 0,
    lateWakeups: 0,
    busyPolls: 0,
  };
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [lo, hi] from `rng`. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/**
 * The plan: every third round is busy with 8..3×size requests; the others have 1..3×size.
 * Batches above the ring size force the front to wait on a full ring.
 */
export function planStress(seed: number, rounds: number, ringSize: number): StressRound[] {
  const rng = mulberry32(seed ^ 0x9e3779b9);
  const plan: StressRound[] = [];
  for (let r = 0; r < rounds; r++) {
    const busy = r % 3 === 1;
    plan.push({ batch: randInt(rng, busy ? 8 : 1, 3 * ringSize), busy, waitAll: rng() < 0.5 });
  }
  return plan;
}

/** Allocates ring + control + payload in one buffer and initialises the ring as a frontend would. */
export function createStressRing(start: number): {
  ring: MockRing;
  controlOffset: number;
  payloadOffset: number;
} {
  const slots = ringSlots(ringBytes(0), IO_SLOT_SIZE);
  const controlBytes = STRESS_CONTROL_WORDS * 4;
  const ring = MockRing.create({ order: 0, start, extraBytes: controlBytes + slots * PAYLOAD_MAX });
  return { ring, controlOffset: ring.extraOffset, payloadOffset: ring.extraOffset + controlBytes };
}
