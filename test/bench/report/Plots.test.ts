import assert from 'node:assert/strict';
import type { CompareResults } from '../../../bench/compare/Results.js';
import { STAGES } from '../../../bench/compare/Results.js';
import { plotSpecs, renderPlot, type VegaLiteSpec } from '../../../bench/report/Plots.js';
import { compareFixture, pngSize } from './CompareFixture.js';

/** Walks a path through a spec (the Vega-Lite types are too wide to index directly). */
function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) {
    assert.ok(v !== null && typeof v === 'object', `no ${String(key)} in ${JSON.stringify(v)}`);
    v = (v as Record<string | number, unknown>)[key];
  }
  return v;
}

function rows(spec: VegaLiteSpec): Record<string, unknown>[] {
  return at(spec, 'data', 'values') as Record<string, unknown>[];
}

/** The fixture with a read_lat/read_bw copy of every write cell, to exercise the per-op facet. */
function withReadOps(): CompareResults {
  const r = compareFixture();
  return { ...r, cells: [...r.cells, ...r.cells.map((c) => ({ ...c, op: 'read' as const }))] };
}

describe('report Plots: specs', () => {
  it('latency: log2 size axis, log µs axis, median line with points and a dashed p99 line per transport', () => {
    const spec = plotSpecs(compareFixture()).latency;
    assert.equal(at(spec, 'background'), 'white');
    const [line, points] = at(spec, 'layer') as unknown[];
    assert.equal(at(line, 'mark', 'type'), 'line');
    assert.equal(at(line, 'encoding', 'x', 'field'), 'size');
    assert.deepEqual(at(line, 'encoding', 'x', 'scale'), { type: 'log', base: 2 });
    assert.deepEqual(at(line, 'encoding', 'x', 'axis', 'values'), [2, 4096]);
    assert.equal(at(line, 'encoding', 'y', 'field'), 'us');
    assert.equal(at(line, 'encoding', 'y', 'scale', 'type'), 'log');
    assert.equal(at(line, 'encoding', 'color', 'field'), 'transport');
    assert.deepEqual(at(line, 'encoding', 'color', 'scale', 'domain'), ['native', 'passthrough', 'paravirt']);
    assert.equal(at(line, 'encoding', 'strokeDash', 'field'), 'stat');
    assert.deepEqual(at(line, 'encoding', 'strokeDash', 'scale', 'domain'), ['median', 'p99']);
    assert.equal(at(points, 'mark', 'type'), 'point');
    // 5 successful lat cells × (median, p99); the failed bw cell and every bw cell stay out.
    const data = rows(spec);
    assert.equal(data.length, 10);
    assert.ok(data.some((d) => d.transport === 'paravirt' && d.size === 2 && d.stat === 'median' && d.us === 10));
    assert.ok(data.some((d) => d.transport === 'paravirt' && d.size === 2 && d.stat === 'p99' && d.us === 25));
  });

  it('bandwidth: avg MiB/s per transport and a rule labelled "memcpy floor" at floors.memcpyMiBps', () => {
    const spec = plotSpecs(compareFixture()).bandwidth;
    const layers = at(spec, 'layer') as unknown[];
    assert.equal(at(layers[0], 'mark', 'type'), 'line');
    assert.equal(at(layers[0], 'encoding', 'y', 'field'), 'mibps');
    const rule = layers.find((l) => at(l, 'mark', 'type') === 'rule');
    assert.ok(rule, 'a rule layer');
    assert.deepEqual(at(rule, 'transform', 1), { calculate: '22000', as: 'mibps' });
    assert.equal(at(rule, 'encoding', 'y', 'field'), 'mibps');
    const label = layers.find((l) => at(l, 'mark', 'type') === 'text');
    assert.equal(at(label, 'encoding', 'text', 'value'), 'memcpy floor');
    const data = rows(spec);
    assert.equal(data.length, 5, 'five successful bw cells; the failed paravirt 64K is not plotted');
    assert.ok(!data.some((d) => d.transport === 'paravirt' && d.size === 65536));
  });

  it('bandwidth: no rule when the memcpy floor was not measured', () => {
    const r = compareFixture();
    const spec = plotSpecs({ ...r, floors: { ...r.floors, memcpyMiBps: Number.NaN } }).bandwidth;
    assert.equal((at(spec, 'layer') as unknown[]).length, 1);
  });

  it('several ops: one column panel per op, write first', () => {
    const specs = plotSpecs(withReadOps());
    for (const spec of [specs.latency, specs.bandwidth]) {
      assert.equal(at(spec, 'facet', 'column', 'field'), 'op');
      assert.deepEqual(at(spec, 'facet', 'column', 'sort'), ['write', 'read']);
      assert.ok(Array.isArray(at(spec, 'spec', 'layer')));
    }
  });

  it('cpu: one horizontal bar per transport, ns/msg stacked by stage in STAGES order', () => {
    const spec = plotSpecs(compareFixture()).cpu;
    assert.equal(at(spec, 'mark', 'type'), 'bar');
    assert.equal(at(spec, 'encoding', 'y', 'field'), 'bar');
    assert.equal(at(spec, 'encoding', 'x', 'field'), 'ns');
    assert.equal(at(spec, 'encoding', 'x', 'stack'), 'zero');
    assert.deepEqual(at(spec, 'encoding', 'color', 'scale', 'domain'), [...STAGES]);
    assert.equal(at(spec, 'encoding', 'order', 'field'), 'index');
    const data = rows(spec);
    assert.deepEqual([...new Set(data.map((d) => d.bar))], ['native', 'passthrough', 'paravirt']);
    assert.equal(data.length, 3 * STAGES.length);
    const backend = data.find((d) => d.bar === 'paravirt' && d.part === 'backend');
    assert.deepEqual(backend, { bar: 'paravirt', part: 'backend', index: STAGES.indexOf('backend'), ns: 3100 });
  });

  it('cpu without a breakdown: per-domain ns/msg of each successful cell', () => {
    const spec = plotSpecs({ ...compareFixture(), breakdown: [] }).cpu;
    assert.deepEqual(at(spec, 'encoding', 'color', 'scale', 'domain'), ['client', 'server', 'dom0']);
    assert.match(String(at(spec, 'title')), /domain/);
    const bars = new Set(rows(spec).map((d) => d.bar));
    assert.equal(bars.size, 10, 'ten successful cells');
    assert.ok(bars.has('paravirt write_lat 2'));
    assert.ok(!bars.has('paravirt write_bw 64K'));
  });
});

describe('report Plots: renderPlot', () => {
  it('an SVG and a PNG whose IHDR matches the returned size, exactly the requested width', async () => {
    const specs = plotSpecs(compareFixture());
    const plot = await renderPlot(specs.bandwidth, 640);
    assert.match(plot.svg, /^<svg/);
    assert.ok(plot.svg.includes('memcpy floor'), 'the floor label is drawn');
    assert.ok(plot.svg.includes('passthrough'), 'the legend names the transports');
    assert.deepEqual(pngSize(plot.png), { width: plot.width, height: plot.height });
    assert.equal(plot.width, 640);
    assert.ok(plot.height > 100 && plot.height < 640, `landscape plot, got height ${plot.height}`);
  });

  it('the faceted latency and the stacked cpu plots render too', async () => {
    const specs = plotSpecs(withReadOps());
    for (const spec of [specs.latency, specs.cpu]) {
      const plot = await renderPlot(spec, 300);
      assert.ok(plot.svg.includes('<svg'));
      assert.deepEqual(pngSize(plot.png), { width: 300, height: plot.height });
    }
  });

  it('a width that is not a positive integer is refused (PV_ERR_INVALID_ARG)', async () => {
    const spec = plotSpecs(compareFixture()).cpu;
    for (const w of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(renderPlot(spec, w), { code: 'PV_ERR_INVALID_ARG' });
    }
  });

  it('a spec that asks for data from a URL is refused instead of fetched (PV_ERR_NOT_SUPPORTED)', async () => {
    const spec: VegaLiteSpec = {
      data: { url: 'http://127.0.0.1:9/results.json' },
      mark: 'point',
      encoding: { x: { field: 'a', type: 'quantitative' } },
    };
    await assert.rejects(renderPlot(spec, 100), { code: 'PV_ERR_NOT_SUPPORTED' });
  });
});
