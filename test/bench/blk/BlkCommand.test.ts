/**
 * `pvio blk_lat` / `pvio blk_bw`: flags, fio's figures and text, and one real run per command
 * over two paths — structure only, never timings.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseBlkFlags, parseBytes } from '../../../bench/blk/BlkCommand.js';
import { blkFigures } from '../../../bench/blk/BlkJob.js';
import { formatBlkJob, formatIops } from '../../../bench/blk/BlkReport.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));

describe('bench/blk: pvio blk_lat and blk_bw', () => {
  it('flags: fio defaults per command, sizes in fio syntax, every mode by default', () => {
    const lat = parseBlkFlags('blk_lat', []);
    assert.deepEqual([lat.rw, lat.bs, lat.iodepth, lat.iters, lat.sizeBytes], ['randread', 4096, 1, 5000, 64 << 20]);
    assert.deepEqual(lat.modes, ['paravirt', 'passthrough', 'native']);
    const bw = parseBlkFlags('blk_bw', ['--size', '8m', '--iodepth', '4', '--mode', 'native', '--rw', 'write']);
    assert.deepEqual([bw.rw, bw.bs, bw.iodepth, bw.iters], ['write', 128 << 10, 4, 64], 'one pass: 8 MiB / 128 KiB');
    assert.equal(parseBlkFlags('blk_lat', ['--runtime', '0.5']).runtimeMs, 500);
    assert.equal(parseBytes('128k', '--bs'), 131072);
    assert.equal(parseBytes('1G', '--size'), 1 << 30);
  });

  it('flags: refusals name the flag; --placement and --fabric take their values', () => {
    const lent = parseBlkFlags('blk_lat', ['--placement', 'lent', '--fabric', 'pcie3-x8-ntb']);
    assert.deepEqual([lent.placement, lent.fabric], ['lent', 'pcie3-x8-ntb']);
    const local = parseBlkFlags('blk_bw', []);
    assert.deepEqual([local.placement, local.fabric], ['local', 'ideal']);
    assert.throws(() => parseBlkFlags('blk_lat', ['--placement', 'remote']), {
      code: 'PV_ERR_CONFIG',
      message: /^--placement/,
    });
    assert.throws(() => parseBlkFlags('blk_lat', ['--fabric', 'pcie4']), {
      code: 'PV_ERR_CONFIG',
      message: /^--fabric: unknown profile 'pcie4' \(ideal\|pcie3-x8-ntb\)/,
    });
    assert.throws(() => parseBlkFlags('blk_lat', ['--rw', 'read']), { code: 'PV_ERR_CONFIG', message: /^--rw/ });
    assert.throws(() => parseBlkFlags('blk_lat', ['--iodepth', '8']), { code: 'PV_ERR_CONFIG', message: /^--iodepth/ });
    assert.throws(() => parseBlkFlags('blk_bw', ['--mode', 'tcp']), { code: 'PV_ERR_CONFIG', message: /^--mode/ });
    assert.throws(() => parseBlkFlags('blk_bw', ['--bs', '1000']), { code: 'PV_ERR_CONFIG', message: /^--bs/ });
    assert.throws(() => parseBlkFlags('blk_bw', ['-n', '5', '--runtime', '1']), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => parseBlkFlags('blk_bw', ['--size', 'lots']), { code: 'PV_ERR_CONFIG', message: /^--size/ });
  });

  it("fio's figures and text block from raw samples", () => {
    const clatUs = Array.from({ length: 1000 }, (_, i) => i + 1);
    const r = blkFigures(
      { mode: 'paravirt', rw: 'randread', bs: 4096, iodepth: 1, sizeBytes: 1 << 20 },
      {
        transport: 'paravirt',
        clatUs,
        ios: 1000,
        bytes: 1000 * 4096,
        seconds: 0.5,
        sectorSize: 512,
        deviceBytes: 1 << 20,
      },
      2e6,
      1e6,
      900,
    );
    assert.equal(r.iops, 2000);
    assert.equal(r.bwMiBps, (1000 * 4096) / (1 << 20) / 0.5);
    assert.equal(r.percentilesUs['50.00'], 500);
    assert.equal(r.percentilesUs['99.90'], 999);
    assert.equal(r.cpuNsPerIo.guest, 2000);
    const text = formatBlkJob(r);
    assert.match(
      text,
      /^paravirt: \(g=0\): rw=randread, bs=\(R\) 4096B-4096B, ioengine=pvio-paravirt, iodepth=1, size=1MiB$/m,
    );
    assert.match(text, /^ {2}read: IOPS=2\.0k, BW=7\.8MiB\/s \(8\.2MB\/s\)\(3\.9MiB\/500msec\)$/m);
    assert.match(text, /^ {4}clat \(usec\): min=1\.00, max=1000\.00, avg=500\.50, stdev=\d+\.\d\d$/m);
    assert.match(text, /50\.00th=\[ +500\.00\]/);
    assert.match(text, /99\.90th=\[ +999\.00\]/);
    assert.deepEqual([formatIops(812), formatIops(21_300), formatIops(1_200_000)], ['812', '21.3k', '1.20M']);
  });

  it('pvio blk_lat and blk_bw run over two paths and print one fio block per mode, or JSON', function () {
    this.timeout(60_000);
    const lat = spawnSync(
      process.execPath,
      [PVIO, 'blk_lat', '-n', '50', '--mode', 'paravirt,native', '--size', '1m'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(lat.status, 0, lat.stderr);
    assert.equal(lat.stdout.match(/^\w+: \(g=0\): rw=randread/gm)?.length, 2);
    assert.match(lat.stdout, /^paravirt: .*ioengine=pvio-paravirt/m);
    assert.match(lat.stdout, /^ {2}read: IOPS=[\d.]+[kM]?, BW=[\d.]+MiB\/s/m);
    assert.match(lat.stdout, /clat percentiles \(usec\):/);
    const bw = spawnSync(
      process.execPath,
      [PVIO, 'blk_bw', '--size', '2m', '--iodepth', '4', '--mode', 'passthrough,paravirt', '--json'],
      { encoding: 'utf8' },
    );
    assert.equal(bw.status, 0, bw.stderr);
    const doc = JSON.parse(bw.stdout) as { command: string; jobs: Array<Record<string, unknown>> };
    assert.equal(doc.command, 'pvio blk_bw');
    assert.deepEqual(
      doc.jobs.map((j) => [j.mode, j.rw, j.bs, j.iodepth, j.ios, j.bytes]),
      [
        ['passthrough', 'read', 131072, 4, 16, 2 << 20],
        ['paravirt', 'read', 131072, 4, 16, 2 << 20],
      ],
    );
    for (const j of doc.jobs) assert.ok((j.bwMiBps as number) > 0 && (j.clatUs as { n: number }).n === 16);
  });
});
