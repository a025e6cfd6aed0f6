/**
 * The scale cell of `pvio compare` (issue 9): how one driver domain serves N guests at once. The
 * fairness benchmark's neighbour (a 4 KiB RDMA WRITE at queue depth 1 over a QP looped back to
 * itself, paravirt) runs first alone on a fresh host, then as N guests on ONE host, one NIC, one
 * dom0. The N guests warm up, report ready on a shared start gate, and the host opens the gate
 * once all are ready, so their timed phases overlap instead of trailing each other's start-up.
 * Figures: each guest's ops / its own timed seconds; the aggregate over the one guest's rate; and
 * Jain's fairness index over the per-guest rates. Wall-clock figures: printed, never asserted.
 */

import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import type { GuestSpec } from '../../hypervisor-sim/scenario/ScenarioSpec.js';
import { pvError } from '../../protocol/errors.js';
import { GATE_WORDS, GateWord, type NeighbourArgs, type NeighbourResult } from '../fairness/Neighbour.js';
import type { ScaleCellResult } from './Results.js';

const NEIGHBOUR = new URL('../fairness/Neighbour.js', import.meta.url);

/** Guests of the scale cell in `pvio compare`. */
export const SCALE_GUESTS = 16;
/** Guest memory, MiB: the neighbour needs two pages of buffer plus its rings; 16 guests stay small. */
const GUEST_MIB = 16;
/** How often the host looks at the gate's READY count while the guests start, ms. */
const GATE_POLL_MS = 5;
/**
 * How every guest (the one alone too) waits for its completions: adaptively, so that 16 guests
 * on 2 cores back off to sleeping instead of spinning the backend's CPU away (issue 9's lever).
 */
const POLL = 'adaptive';

/** Options of the scale cell. */
export interface ScaleCellOptions {
  /** Guests at once (default 16). */
  readonly guests?: number;
  /** Seconds of each timed phase (the one guest alone, then the N together). */
  readonly seconds: number;
}

/** Jain's fairness index (Σx)² / (n·Σx²): 1 when every rate is equal, 1/n when one guest gets everything. */
export function jainIndex(xs: readonly number[]): number {
  const sum = xs.reduce((s, x) => s + x, 0);
  const sq = xs.reduce((s, x) => s + x * x, 0);
  if (xs.length === 0 || sq === 0) throw pvError('PV_ERR_INVALID_ARG', 'Jain index of no rate or of all-zero rates');
  // Rounding can put equal rates a hair above 1; the index is at most 1 by Cauchy–Schwarz.
  return Math.min(1, (sum * sum) / (xs.length * sq));
}

/** One guest's spec: the neighbour on nic0 through paravirt. */
function guest(name: string, args: NeighbourArgs): GuestSpec {
  return {
    name,
    program: NEIGHBOUR,
    memoryMiB: GUEST_MIB,
    devices: [{ device: 'nic0', transport: 'paravirt' }],
    args: args as unknown as Record<string, unknown>,
  };
}

/** Runs `guests` on a fresh one-NIC host and returns each one's result, in order. */
async function runGuests(guests: readonly GuestSpec[]): Promise<NeighbourResult[]> {
  const s = await runScenario({ host: { nics: 1 }, guests });
  return guests.map((g) => s.guests[g.name].value as NeighbourResult);
}

/**
 * Runs N guests with a start gate: while the scenario runs, the host polls READY and opens the
 * gate once all N have warmed up. A guest that fails makes the scenario reject; the others then
 * time out at the closed gate (Neighbour.ts) or are torn down with it.
 */
async function runGated(n: number, seconds: number): Promise<NeighbourResult[]> {
  const startGate = new SharedArrayBuffer(GATE_WORDS * 4);
  const gate = new Int32Array(startGate);
  const names = Array.from({ length: n }, (_, i) => `guest${String(i).padStart(2, '0')}`);
  const poll = setInterval(() => {
    // ORDERING: seq-cst load of READY (each guest Atomics.adds after its warm-up); then the
    // seq-cst store of OPEN, which every waiting guest loads.
    if (Atomics.load(gate, GateWord.READY) >= n) {
      Atomics.store(gate, GateWord.OPEN, 1);
      clearInterval(poll);
    }
  }, GATE_POLL_MS);
  try {
    return await runGuests(names.map((name) => guest(name, { backend: 'rdma', seconds, startGate, poll: POLL })));
  } finally {
    clearInterval(poll);
  }
}

/**
 * The scale cell: one guest alone for `seconds`, then `guests` guests together on one backend for
 * `seconds` (a fresh host each). Throws PV_ERR_INVALID_ARG on bad options, and whatever a guest or
 * the scenario threw.
 */
export async function runScaleCell(o: ScaleCellOptions): Promise<ScaleCellResult> {
  const n = o.guests ?? SCALE_GUESTS;
  if (!Number.isInteger(n) || n < 1 || !(o.seconds > 0)) {
    throw pvError('PV_ERR_INVALID_ARG', `scale cell: guests an integer ≥ 1, seconds > 0 (got ${n}, ${o.seconds})`);
  }
  const [one] = await runGuests([guest('alone', { backend: 'rdma', seconds: o.seconds, poll: POLL })]);
  const oneGuestOpsPerSec = one.ios / one.seconds;
  const many = await runGated(n, o.seconds);
  const perGuestOpsPerSec = many.map((r) => r.ios / r.seconds);
  const aggregateOpsPerSec = perGuestOpsPerSec.reduce((s, x) => s + x, 0);
  return {
    guests: n,
    seconds: o.seconds,
    oneGuestOpsPerSec,
    perGuestOpsPerSec,
    aggregateOpsPerSec,
    aggregateOverOne: aggregateOpsPerSec / oneGuestOpsPerSec,
    jain: jainIndex(perGuestOpsPerSec),
  };
}
