/**
 * The three plots of a `pvio compare` run: latency and bandwidth against message size, and the
 * CPU time per message stacked by stage. `plotSpecs` builds Vega-Lite specs from the results
 * (pure, with the data inline); `renderPlot` turns a spec into SVG with Vega's headless view and
 * into PNG with resvg, with no browser, no canvas and no network.
 */
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import type { TopLevelSpec } from 'vega-lite';
import { compile } from 'vega-lite';
import { pvError } from '../../protocol/errors.js';
import type { CompareKind, CompareOp, CompareResults } from '../compare/Results.js';
import { STAGES } from '../compare/Results.js';
import { formatBytes, orderDomains, presentOps, presentTransports, sortCells, testName } from './Markdown.js';

/** A Vega-Lite specification, as `compile()` takes it. */
export type VegaLiteSpec = TopLevelSpec;
/** The plots of a report, also their file base names. */
export type PlotName = 'latency' | 'bandwidth' | 'cpu';
/** Every plot, in the order the report shows them. */
export const PLOT_NAMES: readonly PlotName[] = ['latency', 'bandwidth', 'cpu'];

/** One rendered plot; width and height are the PNG's, in pixels. */
export interface RenderedPlot {
  readonly svg: string;
  readonly png: Buffer;
  readonly width: number;
  readonly height: number;
}

/** Plot area of one panel, px (before the PNG is scaled to the requested width). */
const PANEL = { width: 420, height: 280 } as const;
/** Height of one bar of the CPU plot, px. */
const BAR_STEP = 32;
/** The widest PNG renderPlot makes; larger requests are a mistake, not a wish for detail. */
const MAX_WIDTH_PX = 16384;
/** Fonts: the SVG names DejaVu Sans and resvg falls back to it, so text measures the same everywhere. */
const FONT = 'DejaVu Sans';
const CONFIG = { font: FONT, view: { stroke: '#ccc' } } as const;

/** Vega expression that labels a size axis tick like formatBytes (2, 64, 4K, 1M). */
const BYTES_LABEL =
  "datum.value >= 1048576 && datum.value % 1048576 === 0 ? (datum.value / 1048576) + 'M' : " +
  "datum.value >= 1024 && datum.value % 1024 === 0 ? (datum.value / 1024) + 'K' : '' + datum.value";

/** The sizes that appear in `kind` cells, ascending: the size axis ticks exactly at them. */
function sizesOf(r: CompareResults, kind: CompareKind): number[] {
  return [...new Set(r.cells.filter((c) => c.kind === kind).map((c) => c.size))].sort((a, b) => a - b);
}

/** Message size on a log2 axis with a tick per measured size. */
function sizeEncoding(sizes: number[]) {
  return {
    field: 'size',
    type: 'quantitative',
    title: 'message size [bytes]',
    scale: { type: 'log', base: 2 },
    axis: { values: sizes, labelExpr: BYTES_LABEL },
  } as const;
}

/** One color per transport, the same in every plot of a run. */
function transportColor(r: CompareResults) {
  const transports = presentTransports(r);
  return {
    field: 'transport',
    type: 'nominal',
    title: 'transport',
    sort: transports,
    scale: { domain: transports },
  } as const;
}

/*
 * Vega-Lite types every spec as a deep union that plain object literals built piecewise do not
 * narrow to, so the specs below are cast once at the end; the tests compile and render each
 * of them, which is the check that matters.
 */

/**
 * A layered chart of `rows`, one panel per op when several ops ran (one op: no facet, and the
 * op goes in the title unless it is plain write).
 */
function perOp(title: string, ops: CompareOp[], kind: CompareKind, rows: object[], layer: object[]): VegaLiteSpec {
  const single = ops.length <= 1;
  const suffix = single && ops[0] !== undefined && ops[0] !== 'write' ? ` (${testName(ops[0], kind)})` : '';
  const base = { background: 'white', title: `${title}${suffix}`, config: CONFIG, data: { values: rows } };
  if (single) return { ...base, ...PANEL, layer } as VegaLiteSpec;
  const column = { field: 'op', type: 'nominal', sort: ops, title: null, header: { labelFontSize: 13 } };
  return { ...base, facet: { column }, spec: { ...PANEL, layer } } as VegaLiteSpec;
}

/** Median and p99 against size: solid line with points for the median, dashed line for p99. */
function latencySpec(r: CompareResults): VegaLiteSpec {
  const rows: object[] = [];
  for (const c of r.cells) {
    if (c.kind !== 'lat' || c.error !== undefined || c.lat === undefined) continue;
    for (const [stat, us] of [
      ['median', c.lat.usec.median],
      ['p99', c.lat.usec.p99],
    ] as const) {
      // A log axis cannot place 0 or NaN; such a point would only produce a Vega warning.
      if (Number.isFinite(us) && us > 0) rows.push({ transport: c.transport, op: c.op, size: c.size, stat, us });
    }
  }
  const x = sizeEncoding(sizesOf(r, 'lat'));
  const y = { field: 'us', type: 'quantitative', title: 'latency [µs]', scale: { type: 'log' } };
  const color = transportColor(r);
  const dash = {
    field: 'stat',
    type: 'nominal',
    title: 'statistic',
    scale: {
      domain: ['median', 'p99'],
      range: [
        [1, 0],
        [6, 4],
      ],
    },
  };
  const layer = [
    { mark: { type: 'line', strokeWidth: 2 }, encoding: { x, y, color, strokeDash: dash } },
    {
      mark: { type: 'point', filled: true, size: 40 },
      transform: [{ filter: "datum.stat === 'median'" }],
      encoding: { x, y, color },
    },
  ];
  return perOp('Latency vs message size', presentOps(r, 'lat'), 'lat', rows, layer);
}

/** Average bandwidth against size, with the in-run memcpy floor as a labelled rule. */
function bandwidthSpec(r: CompareResults): VegaLiteSpec {
  const rows: object[] = [];
  for (const c of r.cells) {
    if (c.kind !== 'bw' || c.error !== undefined || c.bw === undefined) continue;
    const mibps = c.bw.avgMiBps;
    if (Number.isFinite(mibps) && mibps > 0) rows.push({ transport: c.transport, op: c.op, size: c.size, mibps });
  }
  const x = sizeEncoding(sizesOf(r, 'bw'));
  const y = { field: 'mibps', type: 'quantitative', title: 'average bandwidth [MiB/s]', scale: { type: 'log' } };
  const layer: object[] = [
    {
      mark: { type: 'line', point: { filled: true, size: 40 }, strokeWidth: 2 },
      encoding: { x, y, color: transportColor(r) },
    },
  ];
  const floor = r.floors.memcpyMiBps;
  if (Number.isFinite(floor) && floor > 0) {
    // One row per panel (the aggregate collapses the panel's data), carrying the floor: a rule
    // drawn from the shared data stays inside each facet, which a separate data source would not.
    const once = [{ aggregate: [{ op: 'count', as: 'n' }] }, { calculate: String(floor), as: 'mibps' }];
    layer.push(
      { mark: { type: 'rule', strokeDash: [4, 4], color: '#444' }, transform: once, encoding: { y } },
      {
        mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 4, dy: -3, color: '#444' },
        transform: once,
        encoding: { y, x: { value: 0 }, text: { value: 'memcpy floor' } },
      },
    );
  }
  return perOp('Bandwidth vs message size', presentOps(r, 'bw'), 'bw', rows, layer);
}

/** A bar of the CPU plot: which run it is, which part of the bar, how many ns per message. */
interface BarPiece {
  readonly bar: string;
  readonly part: string;
  readonly index: number;
  readonly ns: number;
}

/**
 * Horizontal stacked bars, one per transport: the instrumented run's ns per message by stage
 * (STAGES order, as the seed paper stacks them). Without a breakdown, each measured cell's
 * per-domain CPU time is stacked instead, one bar per cell.
 */
function cpuSpec(r: CompareResults): VegaLiteSpec {
  const pieces: BarPiece[] = [];
  let parts: string[];
  let title: string;
  const runs = sortCells(r.breakdown.filter((b) => b.error === undefined));
  if (runs.length > 0) {
    // Name a bar by its transport alone unless a transport has several instrumented runs.
    const unique = new Set(runs.map((b) => b.transport)).size === runs.length;
    for (const b of runs) {
      const bar = unique ? b.transport : `${b.transport} ${testName(b.op, b.kind)} ${formatBytes(b.size)}`;
      for (const [index, stage] of STAGES.entries()) pieces.push({ bar, part: stage, index, ns: b.nsPerMsg[stage] });
    }
    parts = [...STAGES];
    const keys = new Set(runs.map((b) => `${testName(b.op, b.kind)}, ${formatBytes(b.size)} B`));
    title = `CPU time per message by stage${keys.size === 1 ? ` (${[...keys][0]})` : ''}`;
  } else {
    const cells = sortCells(r.cells.filter((c) => c.error === undefined && c.cpu.length > 0));
    parts = orderDomains(cells.flatMap((c) => c.cpu.map((d) => d.domain)));
    for (const c of cells) {
      const bar = `${c.transport} ${testName(c.op, c.kind)} ${formatBytes(c.size)}`;
      for (const d of c.cpu) pieces.push({ bar, part: d.domain, index: parts.indexOf(d.domain), ns: d.nsPerMsg });
    }
    title = 'CPU time per message by domain (no stage breakdown)';
  }
  const values = pieces.filter((p) => Number.isFinite(p.ns));
  const bars = [...new Set(values.map((p) => p.bar))];
  return {
    background: 'white',
    title,
    config: CONFIG,
    data: { values },
    width: PANEL.width + 120,
    height: { step: BAR_STEP },
    mark: { type: 'bar' },
    encoding: {
      y: { field: 'bar', type: 'nominal', sort: bars, title: null, axis: { labelLimit: 320 } },
      x: { field: 'ns', type: 'quantitative', stack: 'zero', title: 'CPU time per message [ns]' },
      color: {
        field: 'part',
        type: 'nominal',
        sort: parts,
        scale: { domain: parts },
        title: runs.length > 0 ? 'stage' : 'domain',
      },
      order: { field: 'index', type: 'quantitative', sort: 'ascending' },
    },
  } as VegaLiteSpec;
}

/** The three plots of a run. */
export function plotSpecs(r: CompareResults): Record<PlotName, VegaLiteSpec> {
  return { latency: latencySpec(r), bandwidth: bandwidthSpec(r), cpu: cpuSpec(r) };
}

/**
 * A Vega loader that refuses every URL and notes it in `refused`: the specs carry their data
 * inline, and a report run must not reach out. Vega only logs a failed load and renders an empty
 * chart, so renderPlot checks `refused` afterwards to turn that into an error.
 */
function offlineLoader(refused: string[]): vega.Loader {
  const refuse = async (uri: string): Promise<never> => {
    refused.push(uri);
    throw pvError('PV_ERR_NOT_SUPPORTED', `plot rendering loads nothing from outside (asked for ${uri})`);
  };
  return { ...vega.loader(), load: refuse, sanitize: refuse, http: refuse, file: refuse };
}

/**
 * Renders a spec to SVG (Vega, headless) and to a PNG `widthPx` wide (resvg keeps the aspect
 * ratio). A spec that asks for external data or images is refused (PV_ERR_NOT_SUPPORTED).
 */
export async function renderPlot(spec: VegaLiteSpec, widthPx: number): Promise<RenderedPlot> {
  if (!Number.isInteger(widthPx) || widthPx <= 0 || widthPx > MAX_WIDTH_PX) {
    throw pvError('PV_ERR_INVALID_ARG', `plot width must be an integer in 1..${MAX_WIDTH_PX} px, got ${widthPx}`);
  }
  const refused: string[] = [];
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none', loader: offlineLoader(refused) });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  if (refused.length > 0) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `plot spec refers to external resources: ${refused.join(', ')}`);
  }
  const image = new Resvg(svg, {
    fitTo: { mode: 'width', value: widthPx },
    font: { loadSystemFonts: true, defaultFontFamily: FONT, sansSerifFamily: FONT },
  }).render();
  return { svg, png: image.asPng(), width: image.width, height: image.height };
}
