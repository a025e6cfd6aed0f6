/**
 * perftest's command line (reference §1.2), parsed with node:util parseArgs and resolved with
 * perftest's own defaults and dependency rules (force_dependencies), plus pvio's scenario flags.
 * Parsing is pure: nothing here runs a test, so the CLI and tests share one source of truth.
 */
import { parseArgs } from 'node:util';
import { TRANSPORTS } from '../../hypervisor-sim/scenario/ScenarioSpec.js';
import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';

/** The perftest binary being imitated: verb plus latency or bandwidth. */
export interface PerftestTest {
  readonly verb: 'send' | 'write' | 'read';
  readonly kind: 'lat' | 'bw';
}

/** pvio I/O paths a scenario can run over (--mode): every scenario transport. */
export const PVIO_MODES: readonly Transport[] = TRANSPORTS;
/** One --mode entry. */
export type PvioMode = Transport;
/** What --output prints instead of the table; `full` means the normal report. */
export type OutputKind = 'full' | 'latency' | 'bandwidth' | 'message_rate';

/** perftest's limits and defaults (perftest_parameters.h), named as there. */
export const PERFTEST_DEFAULTS = {
  DEF_SIZE_LAT: 2,
  DEF_SIZE_BW: 65536,
  DEF_ITERS: 1000,
  DEF_ITERS_WB: 5000,
  MIN_ITER: 5,
  DEF_TX_BW: 128,
  DEF_TX_LAT: 1,
  DEF_CQ_MOD: 100,
  MSG_SIZE_CQ_MOD_LIMIT: 8192,
  MAX_SIZE: 8388608,
  DEF_INLINE_WRITE: 220,
  DEF_INLINE_SEND_RC: 236,
  DEF_OUT_JSON_FILE: 'perftest_out.json',
} as const;

/** The resolved configuration: every default applied, every dependency enforced. */
export interface PerftestConfig {
  readonly test: PerftestTest;
  /** Message sizes to run, one report row each (2^1..2^23 under -a). */
  readonly sizes: readonly number[];
  readonly all: boolean;
  /** Iterations per size; 0 in duration mode (as perftest). */
  readonly iters: number;
  /** Seconds for -D, else undefined. */
  readonly duration: number | undefined;
  /** Warm-up/cool-down seconds inside -D (default floor(duration/4)); 0 otherwise. */
  readonly margin: number;
  readonly txDepth: number;
  /** Effective CQ moderation (1 for latency tests, which never moderate). */
  readonly cqMod: number;
  /** perftest skips the peak under -D (and prints "WARNING: BW peak won't be measured"). */
  readonly noPeak: boolean;
  readonly reportGbits: boolean;
  /** -F: do not warn about CPU frequency mismatch. */
  readonly ignoreCpuFreq: boolean;
  /** Max inline bytes; 0 for read, which has no inline. */
  readonly inlineSize: number;
  /** -H: dump every sample after the table. */
  readonly histogram: boolean;
  readonly output: OutputKind;
  readonly outJson: boolean;
  readonly outJsonFile: string;
  readonly modes: readonly PvioMode[];
  readonly fabric: 'ideal' | 'pcie3-x8-ntb';
  /**
   * --spin-us: microseconds a waiter spins before sleeping (0 = never spin); undefined = the
   * guest program's defaults. pvio has no time-based spin (protocol/wait.ts counts polls), so the
   * command passes N * SPIN_POLLS_PER_US polls.
   */
  readonly spinUs: number | undefined;
  readonly deviceEngine: 'inline' | 'dedicated';
}

const OPTIONS = {
  size: { type: 'string', short: 's' },
  all: { type: 'boolean', short: 'a' },
  iters: { type: 'string', short: 'n' },
  duration: { type: 'string', short: 'D' },
  margin: { type: 'string', short: 'f' },
  'tx-depth': { type: 'string', short: 't' },
  'cq-mod': { type: 'string', short: 'Q' },
  report_gbits: { type: 'boolean' },
  'CPU-freq': { type: 'boolean', short: 'F' },
  inline_size: { type: 'string', short: 'I' },
  'report-histogrm': { type: 'boolean', short: 'H' },
  output: { type: 'string' },
  out_json: { type: 'boolean' },
  out_json_file: { type: 'string' },
  mode: { type: 'string' },
  fabric: { type: 'string' },
  'spin-us': { type: 'string' },
  'device-engine': { type: 'string' },
} as const;

function fail(message: string): never {
  throw pvError('PV_ERR_CONFIG', message);
}

function uint(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) fail(`invalid value for ${flag}: '${value}' (expected a non-negative integer)`);
  return Number(value);
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, def: T): T {
  if (value === undefined) return def;
  if (!(allowed as readonly string[]).includes(value))
    fail(`invalid value for ${flag}: '${value}' (${allowed.join('|')})`);
  return value as T;
}

/**
 * Parses argv (without node and script) for the given test. Throws PV_ERR_CONFIG with
 * perftest's message for the rejections perftest makes: -D with -a, DURATION <= 2*MARGIN,
 * fewer than MIN_ITER iterations, a size outside 1..MAX_SIZE, -I on read, -H on a BW test; and
 * for unknown flags or values.
 */
export function parsePerftestFlags(argv: readonly string[], test: PerftestTest): PerftestConfig {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  const D = PERFTEST_DEFAULTS;
  const isBw = test.kind === 'bw';
  const all = values.all === true;
  const duration = uint(values.duration, '-D');
  if (duration !== undefined && all) fail("Duration mode currently doesn't support running on all sizes.");

  const sizeFlag = uint(values.size, '-s');
  if (sizeFlag !== undefined && (sizeFlag < 1 || sizeFlag > D.MAX_SIZE)) {
    fail(`Message Size should be between 1 and ${D.MAX_SIZE}`);
  }
  const size = sizeFlag ?? (isBw ? D.DEF_SIZE_BW : D.DEF_SIZE_LAT);
  const sizes = all ? Array.from({ length: 23 }, (_, i) => 2 ** (i + 1)) : [size];

  let margin = 0;
  if (duration !== undefined) {
    margin = uint(values.margin, '-f') ?? Math.floor(duration / 4);
    if (!(duration > 2 * margin)) fail('please make sure that DURATION > 2*MARGIN');
  } else if (values.margin !== undefined) {
    uint(values.margin, '-f'); // validated but meaningless without -D, as in perftest
  }

  const defIters = test.verb === 'write' && isBw ? D.DEF_ITERS_WB : D.DEF_ITERS;
  const itersFlag = uint(values.iters, '-n');
  if (itersFlag !== undefined && itersFlag < D.MIN_ITER) fail(`Iteration num must be at least ${D.MIN_ITER}`);
  const iters = duration !== undefined ? 0 : (itersFlag ?? defIters);

  // tx depth is clamped to iters, then cq_mod to tx depth (force_dependencies order).
  let txDepth = uint(values['tx-depth'], '-t') ?? (isBw ? D.DEF_TX_BW : D.DEF_TX_LAT);
  if (txDepth < 1) fail('TX depth must be at least 1');
  if (iters > 0 && txDepth > iters) txDepth = iters;
  const cqFlag = uint(values['cq-mod'], '-Q');
  if (cqFlag !== undefined && cqFlag < 1) fail('CQ moderation must be at least 1');
  let cqMod = 1;
  if (isBw) {
    cqMod = cqFlag ?? D.DEF_CQ_MOD;
    // Large messages fill the pipe with few WQEs, so moderation would stall it: perftest drops
    // to 1 unless the user asked explicitly (and not under -a, where sizes vary per row).
    if (cqFlag === undefined && !all && size > D.MSG_SIZE_CQ_MOD_LIMIT) cqMod = 1;
    if (cqMod > txDepth) cqMod = txDepth;
  }

  // perftest refuses -H (and -U) outside latency tests.
  if (values['report-histogrm'] === true && isBw) fail('Available only on Latency tests');

  const inlineDefault = test.verb === 'read' ? 0 : test.verb === 'send' ? D.DEF_INLINE_SEND_RC : D.DEF_INLINE_WRITE;
  const inlineSize = uint(values.inline_size, '-I') ?? inlineDefault;
  if (test.verb === 'read' && inlineSize > 0) fail('Inline data is not supported for RDMA Read');

  const modes = (values.mode ?? 'paravirt').split(',').map((m) => oneOf(m.trim(), PVIO_MODES, '--mode', 'paravirt'));
  if (new Set(modes).size !== modes.length) fail(`duplicate entry in --mode: '${values.mode}'`);

  return {
    test,
    sizes,
    all,
    iters,
    duration,
    margin,
    txDepth,
    cqMod,
    noPeak: duration !== undefined,
    reportGbits: values.report_gbits === true,
    ignoreCpuFreq: values['CPU-freq'] === true,
    inlineSize,
    histogram: values['report-histogrm'] === true,
    output: oneOf(values.output, ['latency', 'bandwidth', 'message_rate'] as const, '--output', 'full' as OutputKind),
    outJson: values.out_json === true || values.out_json_file !== undefined,
    outJsonFile: values.out_json_file ?? D.DEF_OUT_JSON_FILE,
    modes,
    fabric: oneOf(values.fabric, ['ideal', 'pcie3-x8-ntb'] as const, '--fabric', 'ideal'),
    spinUs: uint(values['spin-us'], '--spin-us'),
    deviceEngine: oneOf(values['device-engine'], ['inline', 'dedicated'] as const, '--device-engine', 'inline'),
  };
}
