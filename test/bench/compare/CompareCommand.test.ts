import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));
const SCHEMA = fileURLToPath(new URL('../../../../bench/schema/compare-results.schema.json', import.meta.url));

describe('pvio compare end to end (structure only, never timings)', () => {
  it('prints the side-by-side table, CPU and stage breakdown, and writes a schema-valid results folder', function () {
    this.timeout(120_000);
    const dir = mkdtempSync(join(tmpdir(), 'pvio-compare-'));
    try {
      const out = join(dir, 'run');
      const r = spawnSync(
        process.execPath,
        [
          PVIO,
          'compare',
          '--transports',
          'native,paravirt,lent',
          '--ops',
          'write',
          '--sizes',
          '64',
          '--lat-iters',
          '200',
          '--bw-mib',
          '2',
          '--no-scale',
          '--out',
          out,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const text = r.stdout;
      assert.match(text, /^pvio compare — .+, \d+ cores, Node v\d+/m);
      // The targets section: measured ratios judged, the rest (no tcp, no scale cell) not guessed.
      assert.match(text, /^targets \(issue 9/m);
      assert.match(text, /^ {2}[✓✗] paravirt 4 MiB bandwidth|^ {2}· paravirt \/ tcp, 64 B WRITE latency/m);
      assert.match(text, /^ {2}· \d+ guests on one backend: aggregate rate/m);
      assert.match(text, /^ {2}[✓✗] paravirt 64 B latency, p99\.9 \/ median +\d/m);
      assert.match(text, /^floors \(this run\): thread hand-off round trip \d+\.\d\d µs spinning/m);
      assert.match(text, /^RDMA WRITE latency 64 B \(µs, half round trip\)$/m);
      assert.match(text, /^RDMA WRITE bandwidth 64 B \(MiB\/s\)$/m);
      assert.match(text, /^ {2}native +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +1\.00 /m, 'native is its own reference');
      assert.match(text, /^ {2}paravirt +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d/m);
      assert.match(
        text,
        /^ {2}lent +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +— +\d+\.\d/m,
        'the lent NIC row beside them',
      );
      assert.match(text, /^CPU time per message, µs/m);
      assert.match(text, /^Per-stage time per message, µs/m);
      assert.match(text, /frontend +ring\+notify +backend +grant map\/copy +device +fabric +total/);
      // Not a TTY: plain progress lines on stderr, one per step.
      assert.match(r.stderr, /^\[1\/\d+\] floors: /m);
      assert.ok(!r.stderr.includes('\u001b['), 'no escape codes without a TTY');

      const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
        cells: Array<{ transport: string; kind: string; error?: unknown }>;
        breakdown: unknown[];
      };
      const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
      const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')));
      assert.ok(validate(results), ajv.errorsText(validate.errors));
      // Two rows (lat, bw) × three transports; the lent NIC runs in a two-host cluster.
      assert.equal(results.cells.length, 6);
      const targets = JSON.parse(readFileSync(join(out, 'targets.json'), 'utf8')) as Array<{
        id: string;
        value?: number;
      }>;
      assert.ok(targets.some((t) => t.id === 'pv/tail-lat-64' && typeof t.value === 'number'));
      assert.ok(
        targets.some((t) => t.id === 'scale/jain' && t.value === undefined),
        'no scale cell in this run',
      );
      assert.deepEqual(
        results.cells.filter((c) => c.transport === 'lent').map((c) => c.kind),
        ['lat', 'bw'],
      );
      assert.ok(results.cells.every((c) => c.error === undefined));
      assert.equal(results.breakdown.length, 4, 'no stage breakdown for the lent NIC (a cluster, not a scenario)');
      for (const f of [
        'report.md',
        'latency.svg',
        'latency.png',
        'bandwidth.svg',
        'bandwidth.png',
        'cpu.svg',
        'cpu.png',
      ]) {
        assert.ok(existsSync(join(out, f)), `${f} written`);
      }
      assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /!\[[^\]]*\]\(latency\.png\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('block rows over a lent SSD: results.json is schema-valid and the cell carries the timed NTB counts of its fabric', function () {
    this.timeout(120_000);
    const dir = mkdtempSync(join(tmpdir(), 'pvio-compare-blk-'));
    try {
      const out = join(dir, 'run');
      const r = spawnSync(
        process.execPath,
        [
          PVIO,
          'compare',
          '--transports',
          'lent',
          '--ops',
          'blk-randread',
          '--lat-iters',
          '100',
          '--fabric',
          'pcie3-x8-ntb',
          '--out',
          out,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^NVMe random read \(fio, iodepth 1\) latency 4 KiB \(µs, completion latency\)$/m);
      assert.match(r.stdout, /^ {2}lent +\d+\.\d\d +\d+\.\d\d/m);
      const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
        environment: { fabric: string };
        cells: Array<{
          transport: string;
          op: string;
          kind: string;
          lat?: { iters: number };
          lent?: {
            device: string;
            profile: string;
            scope: string;
            ntbCrossings: number;
            fabricNs: number;
            faults: number;
          };
          error?: unknown;
        }>;
        breakdown: unknown[];
      };
      const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
      const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')));
      assert.ok(validate(results), ajv.errorsText(validate.errors));
      assert.equal(results.environment.fabric, 'pcie3-x8-ntb');
      assert.deepEqual(
        results.cells.map((c) => [c.transport, c.op, c.kind, c.error]),
        [['lent', 'blk-randread', 'lat', undefined]],
      );
      const [cell] = results.cells;
      assert.equal(cell.lat?.iters, 100);
      const l = cell.lent;
      assert.ok(l);
      assert.deepEqual([l.device, l.profile, l.scope, l.faults], ['nvme0@A', 'pcie3-x8-ntb', 'timed', 0]);
      // Each timed read crosses the NTB at least for its doorbell and its data.
      assert.ok(l.ntbCrossings >= 2 * 100, `${l.ntbCrossings} crossings`);
      assert.ok(l.fabricNs > 0, 'the cell ran on the task’s fabric profile');
      assert.equal(results.breakdown.length, 0, 'block cells have no stage breakdown');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unknown transport fails fast with the usage line and exit status 1', () => {
    const r = spawnSync(process.execPath, [PVIO, 'compare', '--transports', 'rdma'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /PV_ERR_CONFIG: --transports: unknown value 'rdma'/);
    assert.match(r.stderr, /usage: pvio compare/);
  });
});
