/**
 * Block rows of `pvio compare`: the cell worker runs a real fio-like job per block op and
 * returns a cell that results.json's schema accepts, and the table and Markdown render it
 * beside the RDMA rows — structure only, never timings.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import cellTask from '../../../bench/compare/CellWorker.js';
import type { CellPlan } from '../../../bench/compare/Matrix.js';
import type { CellResult, CompareResults } from '../../../bench/compare/Results.js';
import { formatCells } from '../../../bench/compare/Table.js';
import { renderReport } from '../../../bench/report/Markdown.js';
import { compareFixture } from '../report/CompareFixture.js';

const SCHEMA = fileURLToPath(new URL('../../../../bench/schema/compare-results.schema.json', import.meta.url));

async function cell(plan: CellPlan): Promise<CellResult> {
  const o = await cellTask({ plan, deviceEngine: 'inline', instrument: false, fabric: 'ideal' });
  assert.ok('cell' in o);
  return o.cell;
}

describe('pvio compare block rows (blk-randread, blk-seqread)', function () {
  this.timeout(60_000);

  it('cells of both block ops are real measurements in the cell shape, schema-valid beside RDMA cells, rendered', async () => {
    const lat = await cell({
      transport: 'paravirt',
      op: 'blk-randread',
      kind: 'lat',
      size: 4096,
      iters: 100,
      txDepth: 1,
      deviceBytes: 1 << 20,
    });
    const bw = await cell({
      transport: 'native',
      op: 'blk-seqread',
      kind: 'bw',
      size: 131072,
      iters: 16,
      txDepth: 4,
      deviceBytes: 2 << 20,
    });
    assert.equal(lat.error, undefined, JSON.stringify(lat.error));
    assert.equal(bw.error, undefined, JSON.stringify(bw.error));
    assert.equal(lat.lat?.iters, 100);
    assert.equal(lat.lat?.usec.n, 100);
    assert.equal(lat.lat?.tTypical, lat.lat?.usec.median);
    assert.deepEqual(
      lat.cpu.map((c) => c.domain),
      ['client', 'dom0'],
    );
    assert.equal(bw.bw?.iters, 16);
    assert.equal(bw.bw?.txDepth, 4);
    assert.ok((bw.bw?.avgMiBps ?? 0) > 0 && (bw.bw?.mpps ?? 0) > 0);

    const base = compareFixture();
    const r: CompareResults = { ...base, cells: [...base.cells, lat, bw] };
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
    const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')));
    assert.ok(validate(JSON.parse(JSON.stringify(r))), ajv.errorsText(validate.errors));

    const text = formatCells(r);
    assert.match(text, /^NVMe random read \(fio, iodepth 1\) latency 4 KiB \(µs, completion latency\)$/m);
    assert.match(text, /^NVMe sequential read \(fio, iodepth 16\) bandwidth 128 KiB \(MiB\/s\)$/m);
    assert.match(text, /^ {2}paravirt +\d+\.\d\d/m);
    assert.match(renderReport(r, []), /blk-randread_lat/);
  });
});
