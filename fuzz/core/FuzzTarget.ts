/**
 * What `pvio fuzz` drives: one backend (rdma or blk) in ONE process, built from the real pieces
 * (grant tables, event channels, store, guest memory, the device, the backend) and reached only
 * through the Hypercalls interface, with adversarial guests beside honest ones.
 *
 * The runner (FuzzRunner.ts) owns the loop and the report; a target owns its world. One case =
 * one adversarial action (a ring full of random slots, a producer jump, a forged grant, a
 * truncated control message, …) followed by a serving round and the invariant checks. A failure
 * is reported as a signature (a short stable string, e.g. `rdma/data:unanswered-request`) with
 * the seed that reproduces it: `pvio fuzz --backend rdma --seed S --cases 1` replays case S.
 */

/** A seeded pseudo-random source (xorshift128+ or similar; deterministic per seed). */
export interface Rng {
  /** Uniform u32. */
  u32(): number;
  /** Integer in [0, n). */
  below(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** One element of `items`. */
  pick<T>(items: readonly T[]): T;
  /** A value that stresses arithmetic: 0, 1, 2^31−1, 2^31, 2^32−1, a power of two ± 1, or random. */
  edgeU32(): number;
  /** Fills `bytes` with random bytes. */
  fill(bytes: Uint8Array): void;
}

/** One broken invariant. */
export interface Violation {
  /** Stable short name, e.g. `rdma/ring:double-response`. */
  readonly signature: string;
  /** What happened, for the reproducer. */
  readonly detail: string;
}

/** What one case did. */
export interface CaseResult {
  /** Adversarial requests (or control messages, ring slots …) the case put in front of the backend. */
  readonly requests: number;
  /** Honest requests completed alongside (checked for data and exactly-once). */
  readonly honest: number;
  readonly violations: readonly Violation[];
}

/** A backend under fuzz. */
export interface FuzzTarget {
  /** `rdma` or `blk`. */
  readonly name: string;
  /** Builds the world (backend, honest and adversarial guests); called once per run. */
  setup(seed: number): Promise<void>;
  /** Runs one case with its own seeded Rng (the case's seed is the reproducer). */
  runCase(rng: Rng, caseSeed: number): Promise<CaseResult>;
  /**
   * Checks the whole-run invariants (no grant left mapped by a guest that is gone, resource
   * counters back to their base, the backend loop never threw) and tears the world down.
   */
  teardown(): Promise<readonly Violation[]>;
  /** Optional counters of the run (reconnects, halts, mutator writes …) for the report. */
  counters?(): Readonly<Record<string, number>>;
}
