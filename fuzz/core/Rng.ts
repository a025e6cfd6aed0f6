/**
 * The fuzzer's seeded pseudo-random source (FuzzTarget.ts `Rng`): xorshift128+ on four u32
 * words, seeded through splitmix32 so nearby seeds give unrelated streams. Deterministic per
 * seed on every platform (only 32-bit integer arithmetic), so a reported case seed replays the
 * same actions. Not cryptographic, and it need not be.
 */

import type { Rng } from './FuzzTarget.js';

/** splitmix32 step: a good 32-bit mixer (also used to derive case seeds). */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * The seed of case `index` of a run seeded `runSeed`. Case 0 keeps the run seed itself, so
 * `--seed <a case seed> --cases 1` replays that case's actions on a fresh world.
 */
export function caseSeed(runSeed: number, index: number): number {
  if (index === 0) return runSeed >>> 0;
  return mix32(mix32(runSeed >>> 0) ^ Math.imul(index, 0x27d4eb2d)) >>> 0;
}

/**
 * One kind drawn from `kinds` with probability weight / Σweights (a target's case mix); the first
 * kind if the weights are all 0.
 */
export function pickWeighted(rng: Rng, kinds: ReadonlyArray<readonly [string, number]>): string {
  let x = rng.below(kinds.reduce((s, [, w]) => s + w, 0) || 1);
  for (const [k, w] of kinds) {
    if (x < w) return k;
    x -= w;
  }
  return kinds[0][0];
}

/** Values that stress u32 arithmetic (edges, powers of two and their neighbours). */
const EDGES: readonly number[] = [
  0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0x80000001,
  0xfffffffe, 0xffffffff, 0xfffff000, 0x1fffff, 0x200000,
];

/** xorshift128+ over u32 halves; see the file comment. */
export class XorShiftRng implements Rng {
  private _s0: number;
  private _s1: number;
  private _s2: number;
  private _s3: number;

  constructor(seed: number) {
    this._s0 = mix32(seed);
    this._s1 = mix32(this._s0 ^ 0x6a09e667);
    this._s2 = mix32(this._s1 ^ 0xbb67ae85);
    this._s3 = mix32(this._s2 ^ 0x3c6ef372) | 1;
  }

  u32(): number {
    // xorshift128 (Marsaglia) on four words: period 2^128 − 1, all-zero state excluded by `| 1`.
    let t = this._s3;
    const s = this._s0;
    this._s3 = this._s2;
    this._s2 = this._s1;
    this._s1 = s;
    t ^= t << 11;
    t ^= t >>> 8;
    this._s0 = (t ^ s ^ (s >>> 19)) | 0;
    return this._s0 >>> 0;
  }

  below(n: number): number {
    if (!(n >= 1)) return 0;
    if (n <= 0x100000000) return Math.floor((this.u32() / 0x100000000) * n);
    return Math.floor(((this.u32() * 0x100000000 + this.u32()) / 2 ** 64) * n);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }

  edgeU32(): number {
    switch (this.below(4)) {
      case 0:
        return this.pick(EDGES);
      case 1: {
        const p = 2 ** this.below(32);
        return (p + this.pick([-1, 0, 1])) >>> 0;
      }
      case 2:
        return (0x100000000 - 1 - this.below(64)) >>> 0;
      default:
        return this.u32();
    }
  }

  fill(bytes: Uint8Array): void {
    let i = 0;
    for (; i + 4 <= bytes.length; i += 4) {
      const v = this.u32();
      bytes[i] = v;
      bytes[i + 1] = v >>> 8;
      bytes[i + 2] = v >>> 16;
      bytes[i + 3] = v >>> 24;
    }
    for (; i < bytes.length; i++) bytes[i] = this.u32();
  }
}
