import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeReport } from '../../../bench/report/WriteReport.js';
import { compareFixture, pngSize } from './CompareFixture.js';

describe('report WriteReport: a results directory holds the run, the plots and the report', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'pvio-report-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('creates the directory, writes every file and returns their paths', async () => {
    const dir = join(tmp, 'results', '2025-11-22T18-30-00');
    const written = await writeReport(dir, compareFixture());
    const names = ['results.json', 'report.md'];
    for (const p of ['latency', 'bandwidth', 'cpu']) names.push(`${p}.svg`, `${p}.png`);
    assert.deepEqual([...written].sort(), names.map((n) => join(dir, n)).sort());
    for (const path of written) assert.ok(statSync(path).size > 0, `${path} is not empty`);

    for (const p of ['latency', 'bandwidth', 'cpu']) {
      assert.ok(readFileSync(join(dir, `${p}.svg`), 'utf8').startsWith('<svg'));
      assert.ok(pngSize(readFileSync(join(dir, `${p}.png`))).width > 0);
    }
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    for (const p of ['latency', 'bandwidth', 'cpu']) assert.ok(md.includes(`(${p}.png)`));
  });

  it('results.json round-trips to the same CompareResults', async () => {
    const r = compareFixture();
    const dir = join(tmp, 'roundtrip');
    await writeReport(dir, r);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')), r);
  });
});
