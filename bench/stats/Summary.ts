/**
 * Order statistics of a sample set. Percentiles use the nearest-rank method on the sorted
 * samples (index ceil(p·n) − 1), so p50 of [1,2,3,4] is 2 and p99 of 100 samples is the 99th.
 */

/** Summary of samples (same unit as the input). */
export interface Summary {
  readonly n: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly median: number;
  readonly p99: number;
  readonly p999: number;
  readonly stdev: number;
}

/** Nearest-rank percentile of sorted samples, p in [0, 1]. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(p * sorted.length);
  const i = Math.min(sorted.length - 1, Math.max(0, rank - 1));
  return sorted[i];
}

/** Summarizes samples (does not modify the input). */
export function summarize(samples: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  if (n === 0) return { n, min: NaN, max: NaN, mean: NaN, median: NaN, p99: NaN, p999: NaN, stdev: NaN };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (sorted[i] - mean) ** 2;
  return {
    n,
    min: sorted[0],
    max: sorted[n - 1],
    mean,
    median: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    stdev: Math.sqrt(sq / n),
  };
}
