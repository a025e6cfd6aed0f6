/**
 * perftest's text and JSON output (reference §1.3), byte-identical for the banner, headers and
 * rows of perftest >= 24.07 (MiB/sec units), so existing parsers and eyes work on pvio output.
 * Strings only: callers decide where they go.
 */
import { sprintf } from './Printf.js';
import type { BwStats, DurationLatency, LatencyStats } from './Stats.js';

/** perftest's separator: 87 dashes and a newline. */
export const RESULT_LINE = `${'-'.repeat(87)}\n`;
/** Latency table header (note the trailing space, kept from perftest). */
export const RESULT_FMT_LAT =
  ' #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ';
/** Duration-mode latency header (only t_avg and tps exist without a sample array). */
export const RESULT_FMT_LAT_DUR = ' #bytes        #iterations       t_avg[usec]    tps average';
/** Bandwidth header, MiB/sec (perftest >= 24.07). */
export const RESULT_FMT = ' #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]';
/** Bandwidth header for --report_gbits. */
export const RESULT_FMT_G = ' #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]';
/** The pre-24.07 header (and Debian's 4.5); never printed, exported for parsers that must accept it. */
export const RESULT_FMT_LEGACY_MB = ' #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]';
/** perftest's RESULT_EXT: every header and row ends with it. */
export const RESULT_EXT = '\n';

/** Latency row format (PRIu64 spelled `lu`); literal TABs as in perftest. */
export const REPORT_FMT_LAT =
  ' %-7lu %lu          %-7.2f        %-7.2f      %-7.2f  \t       %-7.2f     \t%-7.2f\t\t%-7.2f \t\t%-7.2f';
/** Duration-mode latency row: size, iterations, t_avg, tps. */
export const REPORT_FMT_LAT_DUR = ' %-7lu       %lu            %-7.2f        %-7.2f';
/** Bandwidth row. */
export const REPORT_FMT = ' %-7lu    %-10lu       %-7.2lf            %-7.2lf\t\t     %-7.6lf';
/** Bandwidth row with six decimals, used for Gb/sec when the average is below 0.1 (inc_accuracy). */
export const REPORT_FMT_EXT = ' %-7lu    %lu           %-7.6lf            %-7.6lf            %-7.6lf';

/**
 * What perftest prints (force_dependencies, while parsing, before any banner) when a BW test
 * runs under -D: the peak needs every completion time, which duration mode does not keep.
 */
export const BW_PEAK_WARNING = " WARNING: BW peak won't be measured in this run.\n";

/** Display names perftest prints in the banner (testsStr). */
export const VERB_NAMES = { send: 'Send', write: 'RDMA_Write', read: 'RDMA_Read', atomic: 'Atomic' } as const;

/** What the banner and test-info block describe. */
export interface TestInfo {
  readonly verb: keyof typeof VERB_NAMES;
  readonly kind: 'lat' | 'bw';
  readonly device: string;
  /** perftest prints the verbs transport (IB / iWARP); pvio prints its own, e.g. `paravirt`. */
  readonly transport: string;
  readonly connection?: 'RC' | 'UC' | 'UD';
  readonly numQps?: number;
  readonly txDepth: number;
  readonly cqMod: number;
  readonly mtu?: number;
  readonly linkType?: string;
  /** Max inline bytes (write/send) — read/atomic print outstanding reads instead. */
  readonly inlineSize?: number;
  readonly outReads?: number;
  readonly bidirectional?: boolean;
  readonly postList?: number;
}

/** `<Verb> [Bidirectional ][Post List ]BW Test` or `<Verb> Latency Test`, as ctx_print_test_info builds it. */
export function testTitle(info: TestInfo): string {
  let s = `${VERB_NAMES[info.verb]} `;
  if (info.kind === 'bw') {
    if (info.bidirectional) s += 'Bidirectional ';
    if ((info.postList ?? 1) > 1) s += 'Post List ';
    s += 'BW ';
  } else s += 'Latency ';
  return `${s}Test`;
}

function isReadLike(info: TestInfo): boolean {
  return info.verb === 'read' || info.verb === 'atomic';
}

/**
 * Banner plus test-info block, ending with RESULT_LINE; the line shapes are perftest's, the
 * values pvio's (no PCIe relax-order/ibv_wr* lines: pvio has neither; data exchange is the store).
 */
export function formatTestInfo(info: TestInfo): string {
  const lines = [
    RESULT_LINE,
    `                    ${testTitle(info)}\n`,
    ` Dual-port       : OFF\t\tDevice         : ${info.device}\n`,
    ` Number of qps   : ${info.numQps ?? 1}\t\tTransport type : ${info.transport}\n`,
    ` Connection type : ${info.connection ?? 'RC'}\t\tUsing SRQ      : OFF\n`,
    ` TX depth        : ${info.txDepth}\n`,
  ];
  if (info.kind === 'bw') lines.push(` CQ Moderation   : ${info.cqMod}\n`);
  lines.push(` Mtu             : ${info.mtu ?? 4096}[B]\n`, ` Link type       : ${info.linkType ?? 'IB'}\n`);
  if (isReadLike(info)) lines.push(` Outstand reads  : ${info.outReads ?? 16}\n`);
  else lines.push(` Max inline data : ${info.inlineSize ?? 0}[B]\n`);
  lines.push(' rdma_cm QPs\t : OFF\n', ' Data ex. method : store\n', RESULT_LINE);
  return lines.join('');
}

/** The table header line (with RESULT_EXT) for a test kind and unit; `duration` is -D. */
export function formatHeader(kind: 'lat' | 'bw', gbits = false, duration = false): string {
  if (kind === 'lat') return (duration ? RESULT_FMT_LAT_DUR : RESULT_FMT_LAT) + RESULT_EXT;
  return (gbits ? RESULT_FMT_G : RESULT_FMT) + RESULT_EXT;
}

/** One latency row (with RESULT_EXT). `iters` is the user's -n, as perftest prints it. */
export function formatLatencyRow(size: number, iters: number, s: LatencyStats): string {
  return sprintf(REPORT_FMT_LAT, size, iters, s.tMin, s.tMax, s.tTypical, s.tAvg, s.tStdev, s.p99, s.p999) + RESULT_EXT;
}

/** One -D latency row (with RESULT_EXT): size, iterations inside the window, t_avg, tps. */
export function formatLatencyDurationRow(size: number, d: DurationLatency): string {
  return sprintf(REPORT_FMT_LAT_DUR, size, d.iters, d.tAvg, d.tps) + RESULT_EXT;
}

/**
 * The `-H` dump, as print_report_lat prints it: `#, usec`, then `<n>, <sample>` per kept sample
 * (1-based, sorted ascending, `%d, %g`). perftest prints it before the row and then repeats
 * RESULT_LINE and the header (see `formatHistogramTrailer`).
 */
export function formatHistogram(samplesUsec: readonly number[], units = 'usec'): string {
  const lines = [`#, ${units}\n`];
  for (let i = 0; i < samplesUsec.length; i++) lines.push(sprintf('%d, %g\n', i + 1, samplesUsec[i]));
  return lines.join('');
}

/**
 * What perftest prints after a `-H` dump in full output: RESULT_LINE and the header again (-H
 * exists only without -D: duration mode keeps no samples to dump).
 */
export function formatHistogramTrailer(): string {
  return RESULT_LINE + formatHeader('lat');
}

/** One bandwidth row (with RESULT_EXT); six decimals for Gb/sec below 0.1, as perftest's inc_accuracy. */
export function formatBwRow(s: BwStats): string {
  const fmt = s.unit === 'Gb' && s.bwAvg < 0.1 ? REPORT_FMT_EXT : REPORT_FMT;
  return sprintf(fmt, s.size, s.iters, s.bwPeak, s.bwAvg, s.msgRateMpps) + RESULT_EXT;
}

/**
 * What `--output=<kind>` prints: one `%lf\n` number (t_typical, -D t_avg, bw_avg or MsgRate),
 * for scripts.
 */
export function formatOutputValue(
  kind: 'latency' | 'bandwidth' | 'message_rate',
  s: LatencyStats | DurationLatency | BwStats,
): string {
  const v = 'tTypical' in s ? s.tTypical : 'tps' in s ? s.tAvg : kind === 'message_rate' ? s.msgRateMpps : s.bwAvg;
  return sprintf('%lf\n', v);
}

const round = (fmt: string, v: number) => Number(sprintf(fmt, v));

/** perftest's JSON test name, e.g. `RDMA_Write_Latency_Test`. */
export function jsonTestName(info: TestInfo): string {
  return testTitle(info).replaceAll(' ', '_');
}

/**
 * The --out_json document: `test_info` with perftest's keys and `results` as an ARRAY with one
 * entry per message size — perftest reopens the file with O_TRUNC per size, so under -a only the
 * last size survives; pvio keeps them all. Numbers carry the table's precision.
 */
export function formatJson(
  info: TestInfo,
  rows: ReadonlyArray<LatencyRowJson | LatencyDurationRowJson | BwStats>,
): string {
  const testInfo: Record<string, string | number> = {
    test: jsonTestName(info),
    Dual_port: 'OFF',
    Device: info.device,
    Number_of_qps: info.numQps ?? 1,
    Transport_type: info.transport,
    Connection_type: info.connection ?? 'RC',
    Using_SRQ: 'OFF',
    TX_depth: info.txDepth,
  };
  if (info.kind === 'bw') testInfo.CQ_Moderation = info.cqMod;
  testInfo.Mtu = info.mtu ?? 4096;
  testInfo.Link_type = info.linkType ?? 'IB';
  if (isReadLike(info)) testInfo.Outstand_reads = info.outReads ?? 16;
  else testInfo.Max_inline_data = info.inlineSize ?? 0;
  testInfo.rdma_cm_QPs = 'OFF';
  testInfo.Data_ex_method = 'store';
  const results = rows.map((r) =>
    'dur' in r
      ? {
          MsgSize: r.size,
          n_iterations: r.dur.iters,
          t_avg: round('%.2f', r.dur.tAvg),
          tps_average: round('%.2f', r.dur.tps),
        }
      : 'stats' in r
        ? {
            MsgSize: r.size,
            n_iterations: r.iters,
            t_min: round('%.2f', r.stats.tMin),
            t_max: round('%.2f', r.stats.tMax),
            t_typical: round('%.2f', r.stats.tTypical),
            t_avg: round('%.2f', r.stats.tAvg),
            t_stdev: round('%.2f', r.stats.tStdev),
            percentile_99: round('%.2f', r.stats.p99),
            'percentile_99.9': round('%.2f', r.stats.p999),
          }
        : {
            MsgSize: r.size,
            n_iterations: r.iters,
            BW_peak: round('%.2f', r.bwPeak),
            BW_average: round('%.2f', r.bwAvg),
            MsgRate: round('%.6f', r.msgRateMpps),
          },
  );
  return `${JSON.stringify({ test_info: testInfo, results }, null, 2)}\n`;
}

/** A latency result with the size and iteration count its row prints. */
export interface LatencyRowJson {
  readonly size: number;
  readonly iters: number;
  readonly stats: LatencyStats;
}

/** A -D latency result (keys MsgSize, n_iterations, t_avg, tps_average in JSON). */
export interface LatencyDurationRowJson {
  readonly size: number;
  readonly dur: DurationLatency;
}
