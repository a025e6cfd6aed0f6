/**
 * Paying the fabric's modeled time as real delay (DESIGN §6: "every DMA or MMIO that crosses a
 * link or an NTB pays that link's latency and bandwidth as real delay (spin below a few µs, timed
 * wait above)"), attributed to the FABRIC stage of the calling thread's stage ledger, the way
 * RnicFabric's `delayNs` pays the wire in SendPath.
 *
 * Why spin below SPIN_BELOW_NS: an `Atomics.wait` timeout overshoots by tens of µs on a loaded
 * 2-core machine (DESIGN §4: a woken thread runs ≈ 6.5 µs later), far more than an NTB hop
 * (≈ 360 ns); above it, sleeping leaves the core to the other threads, and the last
 * SPIN_BELOW_NS are spun so the overshoot of the sleep does not count twice.
 */

import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import type { Direction, FabricProfile } from './Profiles.js';
import type { Route } from './Types.js';

/** Below this a modeled delay is spun; above it the bulk is slept. */
export const SPIN_BELOW_NS = 5000;
/** Word nobody stores to or notifies: waiting on it is a plain timed sleep. */
const SLEEP_WORD = new Int32Array(new SharedArrayBuffer(4));

/**
 * Waits `ns` of real time (nothing for 0, negative or NaN) and accounts it as FABRIC. Never
 * throws, so the ledger section needs no try/finally.
 */
export function payNs(ns: number): void {
  if (!(ns > 0)) return;
  const prev = stages.enter(Stage.FABRIC);
  const end = performance.now() + ns / 1e6;
  if (ns > SPIN_BELOW_NS) {
    // ORDERING: nobody stores to or notifies SLEEP_WORD; this is a plain timed sleep.
    Atomics.wait(SLEEP_WORD, 0, 0, (ns - SPIN_BELOW_NS) / 1e6);
  }
  while (performance.now() < end) {
    // spin: the remaining time is shorter than a sleep's overshoot
  }
  stages.enter(prev);
}

/** Pays the modeled cost of moving `bytes` along `route` under `profile`; returns it (ns). */
export function payRoute(profile: FabricProfile, route: Route, bytes: number, dir: Direction): number {
  const ns = profile.costNs(route, bytes, dir);
  payNs(ns);
  return ns;
}
