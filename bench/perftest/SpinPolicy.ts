/**
 * How long the parties of a two-guest perftest run spin before they sleep, when the user did not
 * say (`--spin-us`): with a core per spinning thread, the programs' own defaults; with more
 * spinning threads than cores (two guests and dom0 on 2 cores), the guests back off after
 * ≈ 1 µs and sleep until the NIC's write or CQE wakes them, while dom0 keeps polling its rings
 * for ≈ 1 ms — the one thread every message passes through keeps a core, as Xen deployments
 * pin dom0, instead of three spinners fighting for two (issue 9: back off when threads
 * outnumber cores). On this machine it took paravirt 64 B WRITE latency from 40–50 µs to
 * 21–32 µs; the millisecond tails (scheduler stalls) stayed. Used by `pvio compare`'s cells and
 * by the perftest work-alikes.
 */

import type { CompareTransport } from '../compare/Results.js';

/** What decides the budgets. */
export interface SpinSetup {
  readonly transport: CompareTransport;
  readonly deviceEngine: 'inline' | 'dedicated';
  /** `--spin-us` as polls, when given: every party uses it. */
  readonly spinBudget?: number;
}

/** Polls of the guests and of dom0 (undefined: the program's default). */
export interface SpinBudgets {
  readonly guest: number | undefined;
  readonly dom0: number | undefined;
}

/** Guests' polls before sleeping when threads outnumber cores (≈ 1 µs). */
export const OVERSUBSCRIBED_GUEST_SPIN = 100;
/** dom0's polls before sleeping when threads outnumber cores (≈ 1 ms). */
export const OVERSUBSCRIBED_DOM0_SPIN = 100_000;

/**
 * Threads that spin while such a run goes: the two guests, dom0 on the split-driver paths, the
 * tcp provider's NIC thread of each guest, and the dedicated device thread.
 */
export function spinningThreads(s: SpinSetup): number {
  const split = ['paravirt', 'paravirt-copy', 'virtio', 'virtio-packed'].includes(s.transport) ? 1 : 0;
  return 2 + split + (s.transport === 'tcp' ? 2 : 0) + (s.deviceEngine === 'dedicated' ? 1 : 0);
}

/** The budgets for `s` on a machine with `cores` cores; see the file comment. */
export function spinBudgets(s: SpinSetup, cores: number): SpinBudgets {
  if (s.spinBudget !== undefined) return { guest: s.spinBudget, dom0: s.spinBudget };
  if (spinningThreads(s) <= cores) return { guest: undefined, dom0: undefined };
  return { guest: OVERSUBSCRIBED_GUEST_SPIN, dom0: OVERSUBSCRIBED_DOM0_SPIN };
}
