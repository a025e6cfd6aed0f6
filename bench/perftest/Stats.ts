/**
 * perftest's statistics (linux-rdma/perftest print_report_lat / print_report_bw, reference
 * §1.4), reproduced so a pvio run and an ib_*_lat/bw run are comparable number for number.
 *
 * Time is in "ticks": whatever clock the caller sampled (perftest uses TSC cycles; pvio usually
 * nanoseconds from `process.hrtime.bigint()`, i.e. `ticksPerUsec = 1000`). Only ratios matter.
 */
import { pvError } from '../../protocol/errors.js';

/** Samples dropped from the top after sorting (perftest's LAT_MEASURE_TAIL): warm-up/outlier guard. */
export const LAT_MEASURE_TAIL = 2;
/** Bytes per "MiB" in perftest's MBS report format (0x100000). */
export const MBS_FACTOR = 0x100000;
/** Bytes per "Gb" in perftest's GBS report format: 10^9 bits / 8. */
export const GBS_FACTOR = 125_000_000;

/** The operation a latency test times; it decides how much of a round trip is reported. */
export type LatencyVerb = 'send' | 'write' | 'read' | 'atomic';
/** Report unit for bandwidth: `MiB` (default, MiB/sec) or `Gb` (`--report_gbits`, Gb/sec). */
export type BwUnit = 'MiB' | 'Gb';

/**
 * perftest's rtt_factor: send/write latency tests are ping-pongs, so one sample is a full round
 * trip and half of it is reported as one-way latency; read/atomic already complete in one RTT.
 */
export function rttFactor(verb: LatencyVerb): 1 | 2 {
  return verb === 'read' || verb === 'atomic' ? 1 : 2;
}

/** How faithfully to copy perftest's integer arithmetic. */
export interface LatencyOptions {
  /** Clock rate of the samples (perftest: CPU MHz; hrtime ns: 1000). */
  readonly ticksPerUsec: number;
  /** 2 for send/write ping-pong (report RTT/2), 1 for read/atomic; see {@link rttFactor}. */
  readonly rttFactor: 1 | 2;
  /**
   * `false` (default): exact population standard deviation and an exact median.
   * `true`: perftest's quirks — each deviation is truncated to a whole usec (`int temp_var =
   * average - x`), so sub-microsecond jitter reports t_stdev 0.00; and the even-count median is
   * `(a + b) / 2` in integer ticks (floored). Use it only to diff against a real perftest log.
   */
  readonly perftestQuirks?: boolean;
}

/** One latency row's numbers, all in usec after rtt_factor. */
export interface LatencyStats {
  /** Deltas kept after dropping the tail (perftest's measure_cnt); the `n` of the percentiles. */
  readonly measureCnt: number;
  readonly tMin: number;
  /** delta[measureCnt] of the sorted array, i.e. the largest value *not* kept (2nd largest overall). */
  readonly tMax: number;
  readonly tTypical: number;
  readonly tAvg: number;
  readonly tStdev: number;
  readonly p99: number;
  readonly p999: number;
}

/**
 * Latency from post timestamps, as perftest records them: `delta[i] = tposted[i+1] - tposted[i]`
 * (so `iters` posts give `iters - 1` samples, each one full iteration of the ping-pong).
 */
export function latencyFromPostTimes(tposted: readonly number[], opts: LatencyOptions): LatencyStats {
  const deltas: number[] = [];
  for (let i = 0; i + 1 < tposted.length; i++) deltas.push(tposted[i + 1] - tposted[i]);
  return latencyFromSamples(deltas, opts);
}

/**
 * Latency from per-iteration round-trip samples (already deltas; pass what perftest would have
 * computed as `delta[]`, i.e. `iters - 1` of them). Needs at least LAT_MEASURE_TAIL + 1 samples.
 *
 * With `n = samples.length - LAT_MEASURE_TAIL` (measure_cnt) over the ascending sort `d`:
 * t_min = d[0]; t_max = d[n]; t_typical = median of d[0..n) (perftest get_median: mean of
 * d[n/2-1] and d[n/2] when n is even, else d[floor(n/2)]); t_avg = mean of d[0..n);
 * p99 = d[ceil(n*0.99)], p99.9 = d[ceil(n*0.999)] — the products are IEEE doubles exactly as in
 * C, and since ceil(n*q) <= n for q < 1 the index never leaves the array (clamped to n anyway).
 */
export function latencyFromSamples(samples: readonly number[], opts: LatencyOptions): LatencyStats {
  if (samples.length < LAT_MEASURE_TAIL + 1) {
    throw pvError(
      'PV_ERR_INVALID_ARG',
      `latency needs at least ${LAT_MEASURE_TAIL + 1} samples, got ${samples.length}`,
    );
  }
  if (!(opts.ticksPerUsec > 0)) throw pvError('PV_ERR_INVALID_ARG', 'ticksPerUsec must be positive');
  const d = [...samples].sort((a, b) => a - b);
  const n = d.length - LAT_MEASURE_TAIL;
  const q = opts.ticksPerUsec * opts.rttFactor;
  const quirks = opts.perftestQuirks === true;

  let medianTicks: number;
  if ((n - 1) % 2 !== 0) {
    const sum = d[n / 2] + d[n / 2 - 1];
    medianTicks = quirks ? Math.floor(sum / 2) : sum / 2;
  } else {
    medianTicks = d[Math.floor(n / 2)];
  }

  let sum = 0;
  for (let i = 0; i < n; i++) sum += d[i] / q;
  const avg = sum / n;

  let sq = 0;
  for (let i = 0; i < n; i++) {
    const dev = avg - d[i] / q;
    const used = quirks ? Math.trunc(dev) : dev;
    sq += used * used;
  }

  const at = (k: number) => d[Math.min(k, n)] / q;
  return {
    measureCnt: n,
    tMin: d[0] / q,
    tMax: d[n] / q,
    tTypical: medianTicks / q,
    tAvg: avg,
    tStdev: Math.sqrt(sq / n),
    p99: at(Math.ceil(n * 0.99)),
    p999: at(Math.ceil(n * 0.999)),
  };
}

/**
 * The `-H` dump (print_report_lat with r_flag->histogram): the samples perftest keeps — sorted
 * ascending, the LAT_MEASURE_TAIL largest dropped — each in usec after rtt_factor, i.e. exactly
 * the values the row's statistics were computed from.
 */
export function latencyHistogram(samples: readonly number[], opts: LatencyOptions): number[] {
  if (samples.length < LAT_MEASURE_TAIL + 1) {
    throw pvError(
      'PV_ERR_INVALID_ARG',
      `latency needs at least ${LAT_MEASURE_TAIL + 1} samples, got ${samples.length}`,
    );
  }
  if (!(opts.ticksPerUsec > 0)) throw pvError('PV_ERR_INVALID_ARG', 'ticksPerUsec must be positive');
  const q = opts.ticksPerUsec * opts.rttFactor;
  return [...samples]
    .sort((a, b) => a - b)
    .slice(0, samples.length - LAT_MEASURE_TAIL)
    .map((d) => d / q);
}

/** A duration-mode (-D) latency row: no sample array exists, only a count over a window. */
export interface DurationLatency {
  /** Iterations completed inside the measurement window (the row's #iterations). */
  readonly iters: number;
  /** usec per iteration after rtt_factor. */
  readonly tAvg: number;
  /** Iterations (transactions) per second, not divided by rtt_factor. */
  readonly tps: number;
}

/**
 * print_report_lat_duration: over the window between the warm-up and cool-down margins,
 * `t_avg = window_usec / rtt_factor / iters` and `tps = iters / window_seconds`.
 */
export function latencyFromDuration(opts: {
  readonly iters: number;
  readonly elapsedTicks: number;
  readonly ticksPerUsec: number;
  readonly rttFactor: 1 | 2;
}): DurationLatency {
  if (!Number.isInteger(opts.iters) || opts.iters < 1) {
    throw pvError('PV_ERR_INVALID_ARG', `no iteration completed inside the measurement window (${opts.iters})`);
  }
  if (!(opts.elapsedTicks > 0) || !(opts.ticksPerUsec > 0)) {
    throw pvError('PV_ERR_INVALID_ARG', 'elapsedTicks and ticksPerUsec must be positive');
  }
  const usec = opts.elapsedTicks / opts.ticksPerUsec;
  return { iters: opts.iters, tAvg: usec / opts.rttFactor / opts.iters, tps: opts.iters / (usec / 1e6) };
}

/** One bandwidth row's numbers. `bwPeak` is 0 when the peak is not measured (-D, -N), as perftest prints. */
export interface BwStats {
  readonly size: number;
  readonly iters: number;
  readonly bwPeak: number;
  readonly bwAvg: number;
  /** Million messages per second. */
  readonly msgRateMpps: number;
  readonly unit: BwUnit;
}

/** The common inputs of both bandwidth entry points. */
export interface BwOptions {
  /** Message size in bytes. */
  readonly size: number;
  /** Clock rate of the timestamps, ticks per second (perftest: MHz * 10^6). */
  readonly ticksPerSec: number;
  readonly unit?: BwUnit;
}

/** The per-byte divisor for a unit (perftest's format_factor). */
export function bwFactor(unit: BwUnit): number {
  return unit === 'Gb' ? GBS_FACTOR : MBS_FACTOR;
}

/**
 * Average-only bandwidth (duration mode or --noPeak): `bw_avg = size*iters*ticksPerSec /
 * (elapsed*factor)`, `MsgRate = iters*ticksPerSec / (elapsed*10^6)`; peak reported as 0.
 */
export function bandwidthFromTotals(opts: BwOptions & { iters: number; elapsedTicks: number }): BwStats {
  const unit = opts.unit ?? 'MiB';
  if (!(opts.elapsedTicks > 0)) throw pvError('PV_ERR_INVALID_ARG', 'elapsedTicks must be positive');
  return {
    size: opts.size,
    iters: opts.iters,
    bwPeak: 0,
    bwAvg: (opts.size * opts.iters * opts.ticksPerSec) / (opts.elapsedTicks * bwFactor(unit)),
    msgRateMpps: (opts.iters * opts.ticksPerSec) / (opts.elapsedTicks * 1e6),
    unit,
  };
}

/** Inputs for {@link bandwidthFromCompletions}: one post and one completion timestamp per message. */
export interface BwCompletionOptions extends BwOptions {
  readonly tposted: readonly number[];
  readonly tcompleted: readonly number[];
  /** Completion moderation (-Q): only every cq_mod-th completion is a real CQE, so only those are window ends. */
  readonly cqMod: number;
  /** Post-list length (-l): only every post_list-th post starts a window. Default 1. */
  readonly postList?: number;
  /** `true`: per-window times are integer ticks (perftest's cycles_t division). Default exact. */
  readonly perftestQuirks?: boolean;
}

/**
 * Bandwidth with peak, as print_report_bw: average over `tcompleted[n-1] - tposted[0]`; the peak
 * is the smallest per-message time over windows `[i, j]` with `i` stepping by post_list and `j`
 * running over CQE positions `ceil((i+1)/cq_mod)*cq_mod - 1, +cq_mod, ...` plus the last message
 * when `n % cq_mod != 0`, seeded with `tcompleted[0] - tposted[0]`. Peak = size / that time.
 */
export function bandwidthFromCompletions(opts: BwCompletionOptions): BwStats {
  const n = opts.tposted.length;
  if (n === 0 || opts.tcompleted.length !== n) {
    throw pvError('PV_ERR_INVALID_ARG', 'tposted and tcompleted must be non-empty and the same length');
  }
  const cqMod = Math.max(1, opts.cqMod);
  const postList = Math.max(1, opts.postList ?? 1);
  const quirks = opts.perftestQuirks === true;
  const per = (i: number, j: number) => {
    const t = (opts.tcompleted[j] - opts.tposted[i]) / (j - i + 1);
    return quirks ? Math.floor(t) : t;
  };
  let best = opts.tcompleted[0] - opts.tposted[0];
  for (let i = 0; i < n; i += postList) {
    for (let j = Math.ceil((i + 1) / cqMod) * cqMod - 1; j < n; j += cqMod) best = Math.min(best, per(i, j));
    if (n % cqMod !== 0) best = Math.min(best, per(i, n - 1));
  }
  const avg = bandwidthFromTotals({ ...opts, iters: n, elapsedTicks: opts.tcompleted[n - 1] - opts.tposted[0] });
  const hz = quirks ? Math.trunc(opts.ticksPerSec) : opts.ticksPerSec;
  return { ...avg, bwPeak: (opts.size * hz) / (best * bwFactor(avg.unit)) };
}
