import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REPRO_ROWS } from '../../../bench/compare/Reproduce.js';

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
    // The three published Device Lending rows (reference §6): bandwidth runs on a lent NIC; the
    // NVMe and GPU rows say what they still need instead of printing a number.
    const lending = REPRO_ROWS.filter((r) => /Device Lending|lender/.test(r.source + r.metric));
    assert.equal(lending.length, 3);
    const [bw, nvme, gpu] = lending;
    assert.equal(bw.a.transport, 'lent');
    assert.equal(bw.notBuilt, undefined);
    assert.match(nvme.notBuilt ?? '', /lent NVMe/);
    assert.match(gpu.notBuilt ?? '', /accelerator lending/);
  });

  it('prints each buildable row with both sides measured and each unbuilt row without a number', function () {
    this.timeout(120_000);
    const r = spawnSync(process.execPath, [PVIO, 'reproduce', '--lat-iters', '100'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const measured = r.stdout.match(/^ {2}pvio: {6}.+ → ratio \d+\.\d\d$/gm) ?? [];
    assert.equal(measured.length, REPRO_ROWS.filter((x) => !x.notBuilt).length, r.stdout);
    const unbuilt = r.stdout.match(/pvio: not built yet — /g) ?? [];
    assert.equal(unbuilt.length, REPRO_ROWS.filter((x) => x.notBuilt).length);
    assert.doesNotMatch(r.stdout, /FAILED/);
  });
});
