import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BW_PEAK_WARNING,
  formatTestInfo,
  RESULT_FMT,
  RESULT_FMT_LAT,
  RESULT_FMT_LAT_DUR,
  RESULT_LINE,
} from '../../../bench/perftest/Report.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [PVIO, ...args], { encoding: 'utf8' });

/**
 * A latency row's shape: size, iterations, then seven two-decimal numbers, perftest's spacing.
 * t_stdev is `%-7.2f` followed directly by TABs, so a value of 7+ characters leaves no padding.
 */
const LAT_ROW =
  /^ \d+ +\d+ {10}\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\t +\d+\.\d\d +\t\d+\.\d\d *\t\t\d+\.\d\d +\t\t\d+\.\d\d *$/;
const LAT_KEYS = [
  'MsgSize',
  'n_iterations',
  't_min',
  't_max',
  't_typical',
  't_avg',
  't_stdev',
  'percentile_99',
  'percentile_99.9',
];

/** A bandwidth row (REPORT_FMT): size, iterations, peak, average, TABs, MsgRate with six decimals. */
const BW_ROW = /^ \d+ +\d+ +\d+\.\d\d +\d+\.\d\d *\t\t +\d+\.\d{6}$/;
/** A -D latency row (REPORT_FMT_LAT_DUR): size, iterations, t_avg, tps. */
const LAT_DUR_ROW = /^ \d+ +\d+ +\d+\.\d\d +\d+\.\d\d *$/;
const BW_KEYS = ['MsgSize', 'n_iterations', 'BW_peak', 'BW_average', 'MsgRate'];
const SEP = RESULT_LINE.slice(0, -1);

interface JsonDoc {
  test_info: Record<string, unknown>;
  results: Array<Record<string, unknown>>;
}

/** Runs `pvio <argv> --out_json` in a scratch directory; returns the run and the parsed JSON. */
function runJson(...argv: string[]): { r: ReturnType<typeof run>; json: JsonDoc | JsonDoc[] } {
  const dir = mkdtempSync(join(tmpdir(), 'pvio-pt-'));
  try {
    const file = join(dir, 'out.json');
    const r = run(...argv, '--out_json', '--out_json_file', file);
    assert.equal(r.status, 0, r.stderr);
    return { r, json: JSON.parse(readFileSync(file, 'utf8')) as JsonDoc | JsonDoc[] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The structure every new verb must print over `--mode native,paravirt`: per mode the banner with
 * perftest's title, the header, one row of the row shape for 64 B x `iters`, RESULT_LINE; and one
 * JSON document per mode with perftest's keys.
 */
function assertTwoModeRun(verb: string, title: string, kind: 'lat' | 'bw', iters: number, extra: string[] = []) {
  const modes = ['native', 'paravirt'];
  const { r, json } = runJson(verb, '-s', '64', '-n', String(iters), '--mode', modes.join(','), ...extra);
  // Quiet stderr: no progress (not a TTY) and no RNR warning (receives never ran out).
  assert.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  const header = kind === 'lat' ? RESULT_FMT_LAT : RESULT_FMT;
  assert.equal(lines.filter((l) => l === `                    ${title}`).length, modes.length, 'one banner per mode');
  for (const mode of modes) assert.ok(r.stdout.includes(`Transport type : ${mode}\n`), mode);
  const rows = lines.filter((l) => /^ \d/.test(l));
  assert.equal(rows.length, modes.length, 'one row per mode x size');
  for (const row of rows) {
    assert.match(row, kind === 'lat' ? LAT_ROW : BW_ROW);
    assert.ok(row.startsWith(` 64      ${kind === 'lat' ? '' : '   '}${iters} `), row);
  }
  assert.ok(lines.filter((l) => l === header).length >= modes.length, 'a header per mode');
  const docs = json as JsonDoc[];
  assert.deepEqual(
    docs.map((d) => d.test_info.Transport_type),
    modes,
  );
  for (const d of docs) {
    assert.equal(d.test_info.test, title.replaceAll(' ', '_'));
    assert.deepEqual(Object.keys(d.results[0]), kind === 'lat' ? LAT_KEYS : BW_KEYS);
    assert.equal(d.results[0].n_iterations, iters);
  }
  return lines;
}

describe('pvio read_* / send_* (perftest work-alikes over native and paravirt, structure only)', () => {
  it('read_lat: RDMA_Read Latency Test, Outstand reads in the banner', function () {
    this.timeout(60_000);
    const lines = assertTwoModeRun('read_lat', 'RDMA_Read Latency Test', 'lat', 200);
    assert.equal(lines.filter((l) => l === ' Outstand reads  : 16').length, 2);
    assert.ok(!lines.some((l) => l.startsWith(' Max inline data')));
  });

  it('send_lat -H: every kept sample after its header, then RESULT_LINE and the header again', function () {
    this.timeout(60_000);
    const lines = assertTwoModeRun('send_lat', 'Send Latency Test', 'lat', 200, ['-H']);
    // Per mode: the header, '#, usec', iters - 1 - LAT_MEASURE_TAIL sorted samples, RESULT_LINE,
    // the header again, the row.
    assert.equal(lines.filter((l) => l === '#, usec').length, 2);
    const samples = lines.filter((l) => /^\d+, /.test(l));
    assert.equal(samples.length, 2 * 197);
    for (const l of samples) assert.match(l, /^\d+, \d+(\.\d+)?(e[+-]\d\d)?$/);
    const first = samples.slice(0, 197).map((l) => Number(l.split(', ')[1]));
    assert.deepEqual(
      first,
      [...first].sort((a, b) => a - b),
      'sorted ascending',
    );
    assert.equal(samples[196].split(', ')[0], '197');
    const at = lines.indexOf('#, usec');
    assert.equal(lines[at - 1], RESULT_FMT_LAT);
    assert.deepEqual(lines.slice(at + 198, at + 200), [SEP, RESULT_FMT_LAT]);
    assert.match(lines[at + 200], LAT_ROW);
  });

  it('read_bw: RDMA_Read BW Test rows and JSON', function () {
    this.timeout(60_000);
    assertTwoModeRun('read_bw', 'RDMA_Read BW Test', 'bw', 200);
  });

  it('send_bw: 2000 SENDs (4 x the 512 receives) complete with no RNR', function () {
    this.timeout(60_000);
    assertTwoModeRun('send_bw', 'Send BW Test', 'bw', 2000);
  });
});

describe('pvio -D (duration mode, structure only)', () => {
  it('write_lat -D 3 -f 1: duration header, one t_avg/tps row, JSON t_avg and tps_average', function () {
    this.timeout(60_000);
    const { r, json } = runJson('write_lat', '-s', '64', '-D', '3', '-f', '1', '--mode', 'native');
    const lines = r.stdout.split('\n');
    assert.equal(lines.filter((l) => l === RESULT_FMT_LAT_DUR).length, 1);
    assert.ok(!r.stdout.includes('WARNING'), 'latency tests print no peak warning');
    const rows = lines.filter((l) => /^ \d/.test(l));
    assert.equal(rows.length, 1);
    assert.match(rows[0], LAT_DUR_ROW);
    const doc = json as JsonDoc;
    assert.deepEqual(Object.keys(doc.results[0]), ['MsgSize', 'n_iterations', 't_avg', 'tps_average']);
    const n = doc.results[0].n_iterations as number;
    assert.ok(Number.isInteger(n) && n > 0, 'iterations counted inside the window');
    assert.equal(rows[0].trim().split(/\s+/)[1], String(n), 'the row and the JSON count the same window');
  });

  it('write_bw -D 3 -f 1: the peak warning first, BW peak 0.00, JSON keys', function () {
    this.timeout(60_000);
    const { r, json } = runJson('write_bw', '-s', '4096', '-D', '3', '-f', '1', '--mode', 'native');
    assert.ok(r.stdout.startsWith(BW_PEAK_WARNING + RESULT_LINE), 'warning before the banner');
    const rows = r.stdout.split('\n').filter((l) => /^ \d/.test(l));
    assert.equal(rows.length, 1);
    assert.match(rows[0], BW_ROW);
    assert.match(rows[0], /^ 4096 +\d+ +0\.00 /);
    const doc = json as JsonDoc;
    assert.deepEqual(Object.keys(doc.results[0]), BW_KEYS);
    assert.equal(doc.results[0].BW_peak, 0);
    assert.ok((doc.results[0].n_iterations as number) > 0);
  });
});

describe('pvio write_lat / write_bw (perftest work-alikes, structure only)', () => {
  it('write_lat over two modes prints perftest banner, header, one row per size and valid JSON', function () {
    this.timeout(60_000);
    const dir = mkdtempSync(join(tmpdir(), 'pvio-pt-'));
    try {
      const file = join(dir, 'out.json');
      const modes = ['paravirt', 'passthrough'];
      const r = run(
        'write_lat',
        '-s',
        '64',
        '-n',
        '200',
        '--mode',
        modes.join(','),
        '--out_json',
        '--out_json_file',
        file,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', 'quiet when stdout is not a TTY');
      const lines = r.stdout.split('\n');
      const sep = RESULT_LINE.slice(0, -1);
      for (const mode of modes) {
        const banner = formatTestInfo({
          verb: 'write',
          kind: 'lat',
          device: 'nic1',
          transport: mode,
          txDepth: 1,
          cqMod: 1,
          inlineSize: 80, // perftest's default 220, capped at what a pvio send WQE carries
        });
        assert.ok(r.stdout.includes(banner + RESULT_FMT_LAT), `banner + header for ${mode}`);
      }
      assert.equal(lines.filter((l) => l === RESULT_FMT_LAT).length, modes.length, 'one header per mode');
      const rows = lines.filter((l) => /^ \d/.test(l));
      assert.equal(rows.length, modes.length, 'one row per mode x size');
      for (const row of rows) {
        assert.match(row, LAT_ROW);
        assert.match(row, /^ 64 {6}200 /);
      }
      // Each mode closes its table with RESULT_LINE (banner has two, plus the closing one).
      assert.equal(lines.filter((l) => l === sep).length, 3 * modes.length);

      const docs = JSON.parse(readFileSync(file, 'utf8')) as Array<{
        test_info: Record<string, unknown>;
        results: Array<Record<string, unknown>>;
      }>;
      assert.ok(Array.isArray(docs));
      assert.deepEqual(
        docs.map((d) => d.test_info.Transport_type),
        modes,
      );
      for (const d of docs) {
        assert.equal(d.test_info.test, 'RDMA_Write_Latency_Test');
        assert.equal(d.results.length, 1, 'one results entry per size');
        assert.deepEqual(Object.keys(d.results[0]), LAT_KEYS);
        assert.equal(d.results[0].MsgSize, 64);
        assert.equal(d.results[0].n_iterations, 200);
        for (const k of LAT_KEYS) assert.equal(typeof d.results[0][k], 'number', k);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('write_bw --output=bandwidth prints exactly one number', function () {
    this.timeout(30_000);
    const r = run('write_bw', '-s', '65536', '-n', '50', '--mode', 'native', '--output=bandwidth');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^\d+\.\d{6}\n$/);
  });

  it('write_bw prints the bandwidth header and a row of the row shape', function () {
    this.timeout(30_000);
    const r = run('write_bw', '-s', '4096', '-n', '100', '--mode', 'native', '--report_gbits');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(' CQ Moderation   : 100\n'));
    assert.ok(r.stdout.includes(' #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]\n'));
    assert.match(r.stdout, /\n 4096 +100 +\d+\.\d+ +\d+\.\d+\s+\d+\.\d{6}\n/);
  });

  it('--fabric pcie3-x8-ntb runs over the timed local PCIe path and prints the usual table', () => {
    const r = run('read_bw', '-s', '4096', '-n', '100', '--mode', 'native', '--fabric', 'pcie3-x8-ntb');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\n 4096 +100 +\d+\.\d\d +\d+\.\d\d\s+\d+\.\d{6}\n/);
    const bad = run('read_bw', '--fabric', 'pcie9');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /PV_ERR_CONFIG: invalid value for --fabric: 'pcie9'/);
  });

  it('rejects -a with -D as perftest does', () => {
    const r = run('write_lat', '-a', '-D', '5');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Duration mode currently doesn't support running on all sizes\./);
  });
});
