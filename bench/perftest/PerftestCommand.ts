/**
 * `pvio {write,read,send}_{lat,bw}`: the ib_*_lat / ib_*_bw work-alikes (issue 4). Flags are
 * perftest's (Flags.ts), statistics are perftest's (Stats.ts), and the text and JSON are
 * perftest's byte for byte (Report.ts); each (mode, size) runs PerftestGuest in a fresh
 * two-guest scenario — simple, and affordable enough for -a for now.
 *
 *   pvio write_lat [-s SIZE | -a] [-n ITERS | -D SECONDS [-f MARGIN]] [-H] [--mode paravirt,native,...]
 *   pvio send_bw   [-s SIZE | -a] [-n ITERS | -D SECONDS [-f MARGIN]] [-t TXDEPTH] [-Q CQMOD] [--report_gbits]
 *
 * What pvio adds to perftest's flags: --mode (a comma list; one table and one JSON document per
 * mode), --device-engine, --fabric (ideal | pcie3-x8-ntb: the local PCIe path's timing) and --spin-us (see SPIN_POLLS_PER_US).
 */

import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import { pvError } from '../../protocol/errors.js';
import { MAX_INLINE_DATA } from '../../protocol/rdma/Wqe.js';
import type { PerftestArgs, PerftestResult } from '../programs/PerftestGuest.js';
import { type PerftestConfig, type PerftestTest, type PvioMode, parsePerftestFlags } from './Flags.js';
import {
  BW_PEAK_WARNING,
  formatBwRow,
  formatHeader,
  formatHistogram,
  formatHistogramTrailer,
  formatJson,
  formatLatencyDurationRow,
  formatLatencyRow,
  formatOutputValue,
  formatTestInfo,
  type LatencyDurationRowJson,
  type LatencyRowJson,
  RESULT_LINE,
  type TestInfo,
} from './Report.js';
import { spinBudgets } from './SpinPolicy.js';
import {
  type BwStats,
  bandwidthFromCompletions,
  bandwidthFromTotals,
  latencyFromDuration,
  latencyFromSamples,
  latencyHistogram,
  rttFactor,
} from './Stats.js';

const PROGRAM = new URL('../programs/PerftestGuest.js', import.meta.url);

/** The perftest binaries pvio imitates. */
export type PerftestVerb = 'write_lat' | 'write_bw' | 'read_lat' | 'read_bw' | 'send_lat' | 'send_bw';
/** Every PerftestVerb, in the order `pvio --help` lists them. */
export const PERFTEST_VERBS: readonly PerftestVerb[] = [
  'write_lat',
  'write_bw',
  'read_lat',
  'read_bw',
  'send_lat',
  'send_bw',
];

/**
 * Polls per microsecond of --spin-us. protocol/wait.ts spins by count, not by time, so the
 * budget is converted with its own calibration (≈ 1000 polls ≈ 10 µs on this class of machine);
 * `pvio compare` uses the same constant, so both commands mean the same by the same flag.
 */
export const SPIN_POLLS_PER_US = 100;
/** RDMA READs each QP may have outstanding: connectRcQp's max_rd_atomic default. */
const OUT_READS = 16;

/** The device a guest of a mode opens: the NIC (nic0 server, nic1 client), or tcp0 for tcp. */
export function deviceName(mode: PvioMode, index: 0 | 1): string {
  return mode === 'tcp' ? 'tcp0' : `nic${index}`;
}

/** `write_lat` → { verb: 'write', kind: 'lat' }. */
export function perftestTest(verb: PerftestVerb): PerftestTest {
  if (!PERFTEST_VERBS.includes(verb)) throw pvError('PV_ERR_INVALID_ARG', `unknown perftest test '${verb}'`);
  const [op, kind] = verb.split('_') as [PerftestTest['verb'], PerftestTest['kind']];
  return { verb: op, kind };
}

/** The spin budget (polls) --spin-us asks for; undefined leaves guest and backend defaults. */
export function spinBudgetOf(cfg: PerftestConfig): number | undefined {
  return cfg.spinUs === undefined ? undefined : cfg.spinUs * SPIN_POLLS_PER_US;
}

/**
 * Inline bytes actually used: perftest's -I (default 220 write, 236 send, 0 read) capped at what
 * pvio's send WQE can carry (MAX_INLINE_DATA), so the banner reports what really happens.
 */
function inlineUsed(cfg: PerftestConfig): number {
  return Math.min(cfg.inlineSize, MAX_INLINE_DATA);
}

async function runOne(
  cfg: PerftestConfig,
  verb: PerftestVerb,
  mode: PvioMode,
  size: number,
): Promise<{ result: PerftestResult; rnrRetries: number }> {
  const spin = spinBudgets(
    { transport: mode, deviceEngine: cfg.deviceEngine ?? 'inline', spinBudget: spinBudgetOf(cfg) },
    availableParallelism(),
  );
  const args: PerftestArgs = {
    test: verb,
    size,
    iters: cfg.iters,
    txDepth: cfg.txDepth,
    cqMod: cfg.cqMod,
    inlineSize: inlineUsed(cfg),
    spinBudget: spin.guest,
    durationS: cfg.duration,
    marginS: cfg.duration === undefined ? undefined : cfg.margin,
    tag: `${mode}-${size}`,
  };
  // Two halves of the message buffer per guest, plus room for rings and the program.
  const memoryMiB = Math.max(32, Math.ceil((4 * size) / (1 << 20)) + 16);
  const guest = (name: string, i: 0 | 1) => ({
    name,
    program: PROGRAM,
    memoryMiB,
    args: args as unknown as Record<string, unknown>,
    devices: [{ device: deviceName(mode, i), transport: mode }],
  });
  // --fabric times the local PCIe path of every device (hypervisor-sim/pcie/LocalFabric.ts).
  const r = await runScenario({
    host: { deviceEngine: cfg.deviceEngine, fabric: cfg.fabric },
    backend: spin.dom0 === undefined ? undefined : { spinBudget: spin.dom0 },
    guests: [guest('server', 0), guest('client', 1)],
  });
  let rnrRetries = 0;
  for (const nic of Object.values(r.counters.nics)) rnrRetries += nic.rnrRetries ?? 0;
  return { result: r.guests.client.value as PerftestResult, rnrRetries };
}

function testInfo(cfg: PerftestConfig, mode: PvioMode): TestInfo {
  const read = cfg.test.verb === 'read';
  return {
    verb: cfg.test.verb,
    kind: cfg.test.kind,
    device: deviceName(mode, 1),
    transport: mode,
    txDepth: cfg.txDepth,
    cqMod: cfg.cqMod,
    inlineSize: read ? undefined : inlineUsed(cfg),
    outReads: read ? OUT_READS : undefined,
  };
}

type Row = LatencyRowJson | LatencyDurationRowJson | BwStats;

/** Prints one size's report (with -H, the sample dump first, as print_report_lat) and returns its JSON row. */
function report(cfg: PerftestConfig, size: number, r: PerftestResult, out: (s: string) => void): Row {
  const full = cfg.output === 'full';
  const factor = rttFactor(cfg.test.verb);
  const windowOf = () => {
    if (r.windowIters === undefined || r.windowSeconds === undefined) {
      throw pvError('PV_ERR_BAD_REQUEST', `${r.test} guest returned no -D window`);
    }
    return { iters: r.windowIters, seconds: r.windowSeconds };
  };
  if (cfg.test.kind === 'lat' && cfg.duration !== undefined) {
    const w = windowOf();
    // Seconds as ticks: 10^-6 ticks per usec.
    const dur = latencyFromDuration({ iters: w.iters, elapsedTicks: w.seconds, ticksPerUsec: 1e-6, rttFactor: factor });
    out(full ? formatLatencyDurationRow(size, dur) : formatOutputValue('latency', dur));
    return { size, dur };
  }
  if (cfg.test.kind === 'lat') {
    // Samples are µs: round trips for write/send (reported halved), READ round trips for read.
    const opts = { ticksPerUsec: 1, rttFactor: factor };
    const stats = latencyFromSamples(r.rttUs ?? [], opts);
    if (cfg.histogram) {
      out(formatHistogram(latencyHistogram(r.rttUs ?? [], opts)));
      if (full) out(formatHistogramTrailer());
    }
    out(full ? formatLatencyRow(size, cfg.iters, stats) : formatOutputValue('latency', stats));
    return { size, iters: cfg.iters, stats };
  }
  const unit = cfg.reportGbits ? 'Gb' : 'MiB';
  let stats: BwStats;
  if (cfg.duration !== undefined) {
    const w = windowOf();
    stats = bandwidthFromTotals({ size, iters: w.iters, elapsedTicks: w.seconds, ticksPerSec: 1, unit });
  } else {
    if (!r.tposted || !r.tcompleted) throw pvError('PV_ERR_BAD_REQUEST', `${r.test} guest returned no timestamps`);
    stats = bandwidthFromCompletions({
      size,
      ticksPerSec: 1000, // performance.now() milliseconds
      unit,
      tposted: r.tposted,
      tcompleted: r.tcompleted,
      cqMod: cfg.cqMod,
    });
  }
  const kind = cfg.output === 'message_rate' ? 'message_rate' : 'bandwidth';
  out(full ? formatBwRow(stats) : formatOutputValue(kind, stats));
  return stats;
}

/** Runs `pvio <verb>` with perftest-style argv (without node, script and verb). */
export async function perftestMain(verb: PerftestVerb, argv: string[]): Promise<void> {
  const cfg = parsePerftestFlags(argv, perftestTest(verb));
  const duration = cfg.duration !== undefined;
  const full = cfg.output === 'full';
  const progress = process.stdout.isTTY === true;
  const out = (s: string) => process.stdout.write(s);
  const jsonDocs: string[] = [];

  // perftest prints this once, while parsing, before anything else (force_dependencies).
  if (duration && cfg.test.kind === 'bw') out(BW_PEAK_WARNING);
  for (const mode of cfg.modes) {
    const info = testInfo(cfg, mode);
    if (full) out(formatTestInfo(info) + formatHeader(cfg.test.kind, cfg.reportGbits, duration));
    const rows: Row[] = [];
    for (const size of cfg.sizes) {
      const length = duration ? `${cfg.duration} s` : `x ${cfg.iters}`;
      if (progress) process.stderr.write(`pvio ${verb}: ${mode} ${size} B ${length}...\n`);
      const { result, rnrRetries } = await runOne(cfg, verb, mode, size);
      if (rnrRetries > 0) {
        // Not perftest output: a receive queue ran dry, so the figures include RNR back-off.
        process.stderr.write(`pvio ${verb}: warning: ${rnrRetries} RNR retries on ${mode} at ${size} B\n`);
      }
      rows.push(report(cfg, size, result, out));
    }
    if (full) out(RESULT_LINE);
    if (cfg.outJson) jsonDocs.push(formatJson(info, rows));
  }
  if (cfg.outJson) {
    // One mode: perftest's document. Several: one document per mode, in an array.
    const docs = jsonDocs.map((d) => JSON.parse(d) as unknown);
    const text = docs.length === 1 ? jsonDocs[0] : `${JSON.stringify(docs, null, 2)}\n`;
    writeFileSync(cfg.outJsonFile, text);
  }
}
