/**
 * Per-guest limits of the RDMA backend: what one frontend may hold on the NIC, so a guest
 * cannot exhaust the device or the driver domain for its neighbours (reference protocol.md §6.3
 * "fixed pools per ring, allocated at connect"). Published in the backend directory at probe;
 * enforced on every control command with PV_ERR_LIMIT.
 *
 * `maxOutstandingWr` bounds the sum of the send and receive queue depths of a guest's QPs (as
 * granted, i.e. rounded up to powers of two): a device queue is what holds an outstanding WR,
 * so this bounds outstanding WRs in both modes without the backend seeing zero-copy
 * completions (they go from the NIC straight into the guest's CQ ring). In copy mode it also
 * sizes the guest's WR tracking table.
 */

import { pvError } from '../../protocol/errors.js';

/** Limits of one guest. */
export interface VrdmaLimits {
  readonly maxPd: number;
  readonly maxQp: number;
  readonly maxCq: number;
  readonly maxMr: number;
  readonly maxPinnedPages: number;
  readonly maxOutstandingWr: number;
  /** Bytes of bounce buffer per copy-mode guest (whole pages). */
  readonly bounceBytes: number;
}

/** Defaults: generous for perftest-style runs (messages up to 16 MiB in copy mode), small against a 256 MiB driver domain. */
export const DEFAULT_LIMITS: VrdmaLimits = {
  maxPd: 32,
  maxQp: 64,
  maxCq: 128,
  maxMr: 256,
  maxPinnedPages: 65536,
  maxOutstandingWr: 16384,
  bounceBytes: 16 << 20,
};

/** Largest CQ a guest may create: its ring refs travel directly in one control slot. */
export const MAX_GUEST_CQE = 4096;
/** Largest WR tracking table (tracking ids keep the slot in their low 20 bits). */
export const MAX_TRACKED_WR = 1 << 20;

const KEYS: readonly (keyof VrdmaLimits)[] = [
  'maxPd',
  'maxQp',
  'maxCq',
  'maxMr',
  'maxPinnedPages',
  'maxOutstandingWr',
  'bounceBytes',
];

/** Merges overrides (from the program's arguments) into the defaults; PV_ERR_CONFIG if invalid. */
export function resolveLimits(over: Partial<Record<keyof VrdmaLimits, unknown>> = {}): VrdmaLimits {
  const out = { ...DEFAULT_LIMITS } as Record<keyof VrdmaLimits, number>;
  for (const k of Object.keys(over)) {
    if (!(KEYS as readonly string[]).includes(k)) {
      throw pvError('PV_ERR_CONFIG', `unknown backend limit ${k} (known: ${KEYS.join(', ')})`);
    }
  }
  for (const k of KEYS) {
    const v = over[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0x7fffffff) {
      throw pvError('PV_ERR_CONFIG', `backend limit ${k} must be an integer in [1, 2^31), got ${String(v)}`);
    }
    out[k] = v;
  }
  if (out.maxOutstandingWr > MAX_TRACKED_WR) {
    throw pvError('PV_ERR_CONFIG', `backend limit maxOutstandingWr must be ≤ ${MAX_TRACKED_WR}`);
  }
  return out;
}

/** Largest CQ a guest may ask for on a NIC whose CQs hold `nicMaxCqe` entries. */
export function guestMaxCqe(nicMaxCqe: number): number {
  let n = 1;
  while (n * 2 <= Math.min(nicMaxCqe, MAX_GUEST_CQE)) n *= 2;
  // 64 + 4096 · 64 bytes = 65 pages = PV_MAX_CQ_RING_PAGES: the ring refs fit one CreateCq.
  return n;
}
