import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REPRO_ROWS, signedUs } from '../../../bench/compare/Reproduce.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));

describe('pvio reproduce', () => {
  it('carries the published figures of the reference and names what is not built yet', () => {
    const nanos = REPRO_ROWS.find((r) => r.source.startsWith('Nanos & Koziris'));
    assert.ok(nanos);
    assert.equal(nanos.a.published, '28 µs');
    assert.equal(nanos.b.published, '77 µs');
    assert.equal(nanos.a.transport, 'paravirt');
    assert.equal(nanos.b.transport, 'tcp');
    assert.ok(Math.abs(nanos.publishedRatio - 28 / 77) < 1e-12);
    // The three published Device Lending rows (reference §6): bandwidth runs on a lent NIC, NVMe
    // read latency on a lent SSD and the GPU ping-pong on lent accelerators (added latencies:
    // differences, not ratios).
    const lending = REPRO_ROWS.filter((r) => /Device Lending|lender/.test(r.source + r.metric));
    assert.equal(lending.length, 3);
    const [bw, nvme, gpu] = lending;
    assert.equal(bw.a.transport, 'lent');
    assert.equal(bw.notBuilt, undefined);
    assert.equal(nvme.notBuilt, undefined);
    assert.equal(nvme.shape, 'difference');
    assert.equal(nvme.publishedDifferenceUs, 0.7);
    assert.deepEqual([nvme.a.transport, nvme.a.op, nvme.a.kind, nvme.a.size], ['lent', 'blk-randread', 'lat', 4096]);
    assert.deepEqual([nvme.b.transport, nvme.b.op, nvme.b.kind, nvme.b.size], ['native', 'blk-randread', 'lat', 4096]);
    assert.equal(gpu.notBuilt, undefined);
    assert.equal(gpu.custom, 'accel-pingpong');
    assert.equal(gpu.publishedDifferenceUs, 0.7);
    assert.deepEqual([signedUs(0.7), signedUs(-0.125)], ['+0.70 µs', '-0.13 µs']);
  });

  it('prints each buildable row with both sides measured and each unbuilt row without a number', function () {
    this.timeout(120_000);
    const r = spawnSync(process.execPath, [PVIO, 'reproduce', '--lat-iters', '100'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const measured = r.stdout.match(/^ {2}pvio: {6}.+ → ratio \d+\.\d\d$/gm) ?? [];
    const ratioRows = REPRO_ROWS.filter((x) => !x.notBuilt && x.shape !== 'difference');
    assert.equal(measured.length, ratioRows.length, r.stdout);
    // The NVMe row: both medians and their difference beside the published +0.7 µs.
    assert.match(r.stdout, /^ {2}published: lent local \+ 0\.7 µs vs local \(reference\) → difference \+0\.70 µs$/m);
    assert.match(
      r.stdout,
      /^ {2}pvio: {6}lent \d+\.\d\d µs \(lent\) vs local \d+\.\d\d µs \(native\) → difference [+-]\d+\.\d\d µs$/m,
      r.stdout,
    );
    assert.match(
      r.stdout,
      /^ {13}nvme0@A per I\/O: \d+\.\d\d NTB crossings, \d+\.\d\d µs modelled fabric time \(pcie3-x8-ntb\)$/m,
    );
    // The GPU row: one and two lenders measured, and the NTB crossings that make the difference.
    assert.match(
      r.stdout,
      /^ {2}pvio: {6}two lenders \d+\.\d\d µs vs one lender \d+\.\d\d µs \(median round trip\) → difference [+-]\d+\.\d\d µs$/m,
    );
    assert.match(r.stdout, /^ {13}NTB crossings per one-way trip: 1 vs 0; modelled one-way trip \d+ vs \d+ ns/m);
    const unbuilt = r.stdout.match(/pvio: not built yet — /g) ?? [];
    assert.equal(unbuilt.length, REPRO_ROWS.filter((x) => x.notBuilt).length);
    assert.doesNotMatch(r.stdout, /FAILED/);
  });
});
