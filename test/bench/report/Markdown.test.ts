import assert from 'node:assert/strict';
import { STAGES } from '../../../bench/compare/Results.js';
import {
  formatBytes,
  formatRatio,
  formatUs,
  formatWhole,
  markdownTable,
  renderReport,
  sortCells,
} from '../../../bench/report/Markdown.js';
import { compareFixture, FAILED_ERROR } from './CompareFixture.js';

const PLOTS = ['latency', 'bandwidth', 'cpu'];

/** The table row that starts with these cells. */
function row(md: string, ...first: string[]): string {
  const prefix = `| ${first.join(' | ')} |`;
  const found = md.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(found, `a row starting ${prefix}`);
  return found;
}

describe('report Markdown: renderReport', () => {
  const md = renderReport(compareFixture(), PLOTS);

  it('titles the run and lists the environment, floors and command', () => {
    assert.match(md, /^# pvio compare: 2025-11-22T18:30:00.000Z\n/);
    assert.ok(row(md, 'CPU').includes('Intel(R) Xeon(R) CPU @ 2.20GHz (2 cores)'));
    assert.ok(row(md, 'Node').includes('v20.20.2'));
    assert.ok(row(md, 'fabric').includes('ideal'));
    assert.ok(row(md, 'spin budget').includes('10 µs'));
    assert.ok(row(md, 'device engine').includes('inline'));
    assert.ok(row(md, 'duration').includes('94.2 s'));
    assert.ok(row(md, 'command').includes('`pvio compare --modes native,passthrough,paravirt --sizes 2,4096`'));
    assert.equal(
      row(md, 'thread hand-off round trip, spinning'),
      '| thread hand-off round trip, spinning | 0.20 | 0.90 |',
    );
    assert.ok(row(md, 'latency floor, write/send (half spin round trip)').includes('| 0.10 |'));
    assert.ok(md.includes('**22000 MiB/s**'));
  });

  it('the side-by-side tables: median/p99 or avg MiB/s with ratios to native, passthrough and floor', () => {
    assert.ok(md.includes('| bytes | transport | median µs | p99 µs | × native | × passthrough | × floor | note |'));
    assert.ok(md.includes('| bytes | transport | avg MiB/s | × native | × passthrough | × floor | note |'));
    assert.equal(row(md, '2', 'paravirt'), '| 2 | paravirt | 10.00 | 25.00 | 5.00 | 4.55 | 100.00 |  |');
    const bw = md.slice(md.indexOf('### write_bw'));
    assert.equal(row(bw, '4096', 'paravirt'), '| 4096 | paravirt | 1200 | 0.39 | 0.41 | 0.05 |  |');
  });

  it('a cell that never ran keeps its row, with — in every figure', () => {
    assert.equal(row(md, '4096', 'passthrough', '—'), '| 4096 | passthrough | — | — | — | — | — | not run |');
    // Its absence also leaves the other transports of that size without a ratio to passthrough.
    assert.equal(row(md, '4096', 'native', '2.60'), '| 4096 | native | 2.60 | 4.10 | 1.00 | — | 26.00 |  |');
  });

  it('a failed cell shows — and its error code in the table, and code + message under Failed cells', () => {
    assert.equal(row(md, '65536', 'paravirt'), `| 65536 | paravirt | — | — | — | — | failed: ${FAILED_ERROR.code} |`);
    const failed = md.slice(md.indexOf('## Failed cells'));
    assert.ok(failed.includes(`- paravirt write_bw 65536 B: \`${FAILED_ERROR.code}\` ${FAILED_ERROR.message}`));
  });

  it('per-domain CPU and per-stage breakdown tables', () => {
    assert.ok(md.includes('| transport | test | bytes | client ns/msg | server ns/msg | dom0 ns/msg | total ns/msg |'));
    assert.equal(
      row(md, 'paravirt', 'write_lat', '2'),
      '| paravirt | write_lat | 2 | 5200 | 5000 | 9800 | 20000 | 180 |',
    );
    assert.equal(row(md, 'native', 'write_lat', '2'), '| native | write_lat | 2 | 2100 | 2000 | — | 4100 | 180 |');
    assert.ok(md.includes(`| transport | test | bytes | messages | ${STAGES.join(' | ')} | total ns/msg | note |`));
    assert.equal(
      row(md, 'paravirt', 'write_lat', '2', '2000'),
      '| paravirt | write_lat | 2 | 2000 | 1700 | 2400 | 3100 | 450 | 900 | 0 | 8550 |  |',
    );
  });

  it('embeds the three PNGs and links their SVGs', () => {
    for (const name of PLOTS) {
      assert.match(md, new RegExp(`!\\[[^\\]]+\\]\\(${name}\\.png\\)`));
      assert.ok(md.includes(`[${name}.svg](${name}.svg)`));
    }
    assert.ok(!renderReport(compareFixture(), []).includes('!['), 'no plots, no images');
  });

  it('an empty run still renders, saying so instead of printing empty tables', () => {
    const empty = renderReport({ ...compareFixture(), cells: [], breakdown: [] }, []);
    assert.ok(empty.includes('No cells ran.'));
    assert.ok(empty.includes('No instrumented run.'));
    assert.ok(empty.includes('## Failed cells\n\nNone.'));
  });
});

describe('report Markdown: formatting helpers', () => {
  it('µs with 2 decimals, MiB/s and ns whole, ratios 2 decimals, — for missing or non-finite', () => {
    assert.equal(formatUs(1.234), '1.23');
    assert.equal(formatWhole(3099.6), '3100');
    assert.equal(formatRatio(5), '5.00');
    for (const f of [formatUs, formatWhole, formatRatio]) {
      assert.equal(f(undefined), '—');
      assert.equal(f(Number.NaN), '—');
      assert.equal(f(Number.POSITIVE_INFINITY), '—');
    }
  });

  it('sizes read like perftest users write them', () => {
    assert.deepEqual([2, 1000, 4096, 65536, 1 << 20, 3 << 20].map(formatBytes), ['2', '1000', '4K', '64K', '1M', '3M']);
  });

  it('a pipe or newline in a cell cannot break the table', () => {
    const t = markdownTable(['a', 'b'], [['x|y', 'line\nbreak']], [false, true]);
    assert.equal(t, '| a | b |\n|---|---:|\n| x\\|y | line break |');
  });

  it('cells sort latency first, then op, size and transport (reference paths first)', () => {
    const sorted = sortCells(compareFixture().cells).map((c) => `${c.kind} ${c.size} ${c.transport}`);
    assert.deepEqual(sorted.slice(0, 5), [
      'lat 2 native',
      'lat 2 passthrough',
      'lat 2 paravirt',
      'lat 4096 native',
      'lat 4096 paravirt',
    ]);
    assert.equal(sorted.at(-1), 'bw 65536 paravirt');
  });
});
