/**
 * Deterministic byte patterns for data verification: byte i of pattern `seed` depends on the
 * position and the seed, so a shifted, truncated or stale copy never matches by accident.
 */

/** Byte `i` of pattern `seed`. */
export function patternByte(i: number, seed: number): number {
  return ((i ^ (i >>> 7) ^ (i >>> 15) ^ (i >>> 23)) * 31 + seed * 7 + 1) & 0xff;
}

/** Writes pattern `seed` over `[addr, addr + len)`, starting at pattern index `from`. */
export function fillPattern(bytes: Uint8Array, addr: number, len: number, seed: number, from = 0): void {
  for (let i = 0; i < len; i++) bytes[addr + i] = patternByte(from + i, seed);
}

/** First offset where `[addr, addr + len)` differs from pattern `seed` (from index `from`), or -1. */
export function firstMismatch(bytes: Uint8Array, addr: number, len: number, seed: number, from = 0): number {
  for (let i = 0; i < len; i++) if (bytes[addr + i] !== patternByte(from + i, seed)) return i;
  return -1;
}
