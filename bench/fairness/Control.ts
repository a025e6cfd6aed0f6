/**
 * The words the fairness benchmark's two guests share (a SharedArrayBuffer passed in both
 * programs' arguments, as the block benchmark passes its probe): the flooder says when its ring
 * is full for the first time, so the neighbour times only what runs beside a flood; the neighbour
 * says when it is done, so the flooder stops; the flooder reports what it got.
 */

/** Word indices of the control record. */
export const enum FairWord {
  /** Set to 1 by the flooder once its ring is full (the flood is on). */
  FLOODING = 0,
  /** Set to 1 by the neighbour when its timed phase ended (the flooder stops). */
  DONE = 1,
  /** Flooder: requests answered (blk) or WRs completed (rdma) while the neighbour was timed. */
  FLOOD_OPS = 2,
  /** Flooder: event-channel notifications sent, in thousands. */
  KICKS_K = 3,
  /** Flooder: requests answered before the neighbour's timed phase began (subtracted). */
  FLOOD_OPS_AT_START = 4,
  /** Neighbour: set to 1 when its timed phase begins. */
  TIMING = 5,
}

/** Words in the record. */
export const FAIR_WORDS = 8;

/**
 * How a flooder floods: `full` keeps its ring full; `kick` also notifies in a loop and never
 * sleeps; `hog` is the control for `kick` — a guest that burns a core the same way but sends the
 * backend nothing, so what the neighbour loses beside it is CPU, not backend service.
 */
export type FloodMode = 'full' | 'kick' | 'hog';

/** A fresh control record. */
export function newControl(): SharedArrayBuffer {
  return new SharedArrayBuffer(FAIR_WORDS * 4);
}

/**
 * Waits (spinning on the clock, never sleeping on the word: the caller may be a guest thread
 * whose ring needs serving) until word `i` of `ctl` is non-zero; false after `ms`.
 */
export async function waitWord(ctl: Int32Array, i: FairWord, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  // ORDERING: seq-cst load of a word the other guest publishes with Atomics.store.
  while (Atomics.load(ctl, i) === 0) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 1));
  }
  return true;
}
