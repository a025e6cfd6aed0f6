import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatTestInfo, RESULT_FMT_LAT, RESULT_LINE } from '../../../bench/perftest/Report.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [PVIO, ...args], { encoding: 'utf8' });

/** A latency row's shape: size, iterations, then seven two-decimal numbers, perftest's spacing. */
const LAT_ROW =
  /^ \d+ +\d+ {10}\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\t +\d+\.\d\d +\t\d+\.\d\d +\t\t\d+\.\d\d +\t\t\d+\.\d\d *$/;
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

  it('rejects -a with -D as perftest does', () => {
    const r = run('write_lat', '-a', '-D', '5');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Duration mode currently doesn't support running on all sizes\./);
  });
});
