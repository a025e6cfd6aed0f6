/**
 * The Markdown report of one `pvio compare` run (`report.md` next to `results.json` and the
 * plots). Pure: a CompareResults in, a string out, so a report can be re-rendered from a results
 * file alone and every table is testable without running a benchmark.
 */

import { ALL_TRANSPORTS } from '../compare/Matrix.js';
import type {
  CellKey,
  CellResult,
  CompareKind,
  CompareOp,
  CompareResults,
  CompareTransport,
} from '../compare/Results.js';
import { findCell, STAGES } from '../compare/Results.js';
import { floorFor, ratios } from './Ratios.js';

/** Transports in the order tables and plots show them: the matrix's order, reference paths first. */
export const TRANSPORT_ORDER: readonly CompareTransport[] = ALL_TRANSPORTS;
/** Ops in the order perftest's tools are usually listed. */
export const OP_ORDER: readonly CompareOp[] = ['write', 'read', 'send', 'blk-randread', 'blk-seqread'];
/** Domains in the order the CPU table lists them; others follow in order of appearance. */
const DOMAIN_ORDER = ['client', 'server', 'dom0', 'device'];
/** What a missing number prints as. */
export const MISSING = '—';

/** Orders `items` by their position in `order`; unknown items go last, in order of appearance. */
function byOrder<T>(items: Iterable<T>, order: readonly T[]): T[] {
  const unique = [...new Set(items)];
  const rank = (x: T) => (order.includes(x) ? order.indexOf(x) : order.length + unique.indexOf(x));
  return unique.sort((a, b) => rank(a) - rank(b));
}

/** The transports that appear anywhere in the run, in TRANSPORT_ORDER. */
export function presentTransports(r: CompareResults): CompareTransport[] {
  return byOrder([...r.cells.map((c) => c.transport), ...r.breakdown.map((b) => b.transport)], TRANSPORT_ORDER);
}

/** The ops that appear in cells of `kind`, in OP_ORDER. */
export function presentOps(r: CompareResults, kind: CompareKind): CompareOp[] {
  return byOrder(
    r.cells.filter((c) => c.kind === kind).map((c) => c.op),
    OP_ORDER,
  );
}

/** The message sizes run for `kind` × `op`, ascending. */
export function presentSizes(r: CompareResults, kind: CompareKind, op: CompareOp): number[] {
  const sizes = r.cells.filter((c) => c.kind === kind && c.op === op).map((c) => c.size);
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** Cells (or breakdown runs) in table order: latency before bandwidth, then op, size, and transport, so rows that compare sit together. */
export function sortCells<T extends CellKey>(cells: readonly T[]): T[] {
  const rank = <U>(order: readonly U[], x: U) => (order.includes(x) ? order.indexOf(x) : order.length);
  return [...cells].sort(
    (a, b) =>
      (a.kind === b.kind ? 0 : a.kind === 'lat' ? -1 : 1) ||
      rank(OP_ORDER, a.op) - rank(OP_ORDER, b.op) ||
      a.size - b.size ||
      rank(TRANSPORT_ORDER, a.transport) - rank(TRANSPORT_ORDER, b.transport),
  );
}

/** Domain names in the order the CPU table and plot list them (client, server, dom0, device, then others). */
export function orderDomains(names: Iterable<string>): string[] {
  return byOrder(names, DOMAIN_ORDER);
}

/** Message size the way perftest users read it: 2, 64, 4K, 1M. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)}M`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)}K`;
  return String(bytes);
}

/** A number with fixed decimals, or MISSING when absent or not finite. */
export function formatNumber(x: number | undefined, decimals: number): string {
  return x === undefined || !Number.isFinite(x) ? MISSING : x.toFixed(decimals);
}

/** Microseconds: 2 decimals. */
export const formatUs = (x: number | undefined) => formatNumber(x, 2);
/** MiB/s and ns per message: whole numbers. */
export const formatWhole = (x: number | undefined) => formatNumber(x, 0);
/** Ratios: 2 decimals (the column header says what they are times). */
export const formatRatio = (x: number | undefined) => formatNumber(x, 2);

/** Keeps a cell's text from breaking the table: pipes escaped, newlines flattened. */
function escapeCell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** A GitHub-flavoured Markdown table; `right` marks the numeric columns to right-align. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[], right?: boolean[]) {
  const line = (cells: readonly string[]) => `| ${cells.map(escapeCell).join(' | ')} |`;
  const rule = headers.map((_, i) => (right?.[i] ? '---:' : '---'));
  return [line(headers), `|${rule.join('|')}|`, ...rows.map(line)].join('\n');
}

/** `write_lat`, the perftest tool name of an op × kind. */
export function testName(op: CompareOp, kind: CompareKind): string {
  return `${op}_${kind}`;
}

/** Why a table row has no numbers. */
function note(cell: CellResult | undefined): string {
  if (cell === undefined) return 'not run';
  return cell.error === undefined ? '' : `failed: ${cell.error.code}`;
}

/**
 * The side-by-side table of one op × kind: for every size, one row per transport of the run
 * (a transport that did not run this cell still gets its row, with MISSING), so the rows of one
 * size read as a comparison.
 */
export function comparisonTable(r: CompareResults, op: CompareOp, kind: CompareKind): string {
  const transports = presentTransports(r);
  const rows: string[][] = [];
  for (const size of presentSizes(r, kind, op)) {
    for (const transport of transports) {
      const cell = findCell(r, { transport, op, kind, size });
      const q = cell === undefined ? {} : ratios(r, cell);
      const ok = cell !== undefined && cell.error === undefined;
      const figures =
        kind === 'lat' ? [formatUs(q.value), formatUs(ok ? cell.lat?.usec.p99 : undefined)] : [formatWhole(q.value)];
      const ratioCells = [q.toNative, q.toPassthrough, q.toFloor].map(formatRatio);
      rows.push([String(size), transport, ...figures, ...ratioCells, note(cell)]);
    }
  }
  const figureHeads = kind === 'lat' ? ['median µs', 'p99 µs'] : ['avg MiB/s'];
  const headers = ['bytes', 'transport', ...figureHeads, '× native', '× passthrough', '× floor', 'note'];
  return markdownTable(
    headers,
    rows,
    headers.map((h) => h !== 'transport' && h !== 'note'),
  );
}

/** Per-domain CPU time of every cell: ns per message for each domain, then the total. */
export function cpuTable(r: CompareResults): string {
  const domains = orderDomains(r.cells.flatMap((c) => c.cpu.map((d) => d.domain)));
  const rows = sortCells(r.cells).map((c) => {
    const per = domains.map((name) => c.cpu.find((d) => d.domain === name)?.nsPerMsg);
    const total = c.cpu.length === 0 ? undefined : c.cpu.reduce((s, d) => s + d.nsPerMsg, 0);
    return [
      c.transport,
      testName(c.op, c.kind),
      String(c.size),
      ...per.map(formatWhole),
      formatWhole(total),
      formatWhole(c.elapsedMs),
    ];
  });
  const headers = ['transport', 'test', 'bytes', ...domains.map((d) => `${d} ns/msg`), 'total ns/msg', 'elapsed ms'];
  return markdownTable(
    headers,
    rows,
    headers.map((_, i) => i >= 2),
  );
}

/** The instrumented run's ns per message in each stage, in STAGES order, plus the total. */
export function breakdownTable(r: CompareResults): string {
  const rows = sortCells(r.breakdown).map((b) => {
    const ok = b.error === undefined;
    const stages = STAGES.map((s) => (ok ? b.nsPerMsg[s] : undefined));
    const total = ok ? STAGES.reduce((sum, s) => sum + b.nsPerMsg[s], 0) : undefined;
    return [
      b.transport,
      testName(b.op, b.kind),
      String(b.size),
      String(b.messages),
      ...stages.map(formatWhole),
      formatWhole(total),
      ok ? '' : `failed: ${b.error?.code}`,
    ];
  });
  const headers = ['transport', 'test', 'bytes', 'messages', ...STAGES, 'total ns/msg', 'note'];
  return markdownTable(
    headers,
    rows,
    headers.map((_, i) => i >= 2 && i < headers.length - 1),
  );
}

function environmentTable(r: CompareResults): string {
  const e = r.environment;
  const rows = [
    ['CPU', `${e.cpuModel} (${e.cores} cores)`],
    ['Node', `${e.node} on ${e.platform}`],
    ['pvio', e.pvioVersion],
    ['fabric', e.fabric],
    ['spin budget', `${e.spinUs} µs`],
    ['device engine', e.deviceEngine],
    ['concurrency', `${e.concurrency} cell(s) at a time${e.quick ? ', quick mode' : ''}`],
    ['started', r.startedAt],
    ['duration', `${formatNumber(r.durationS, 1)} s`],
    ['command', `\`${r.command}\``],
  ];
  return markdownTable(['', 'value'], rows);
}

function floorsTable(r: CompareResults): string {
  const f = r.floors;
  const rows = [
    ['thread hand-off round trip, spinning', formatUs(f.handoffSpinRttUs.median), formatUs(f.handoffSpinRttUs.p99)],
    ['thread hand-off round trip, Atomics.wait', formatUs(f.handoffWaitRttUs.median), formatUs(f.handoffWaitRttUs.p99)],
    ['latency floor, write/send (half spin round trip)', formatUs(floorFor(r, { op: 'write', kind: 'lat' })), ''],
    ['latency floor, read (spin round trip)', formatUs(floorFor(r, { op: 'read', kind: 'lat' })), ''],
  ];
  const latency = markdownTable(['floor', 'median µs', 'p99 µs'], rows, [false, true, true]);
  return `${latency}\n\nBandwidth floor (SharedArrayBuffer copy at 4 MiB): **${formatWhole(f.memcpyMiBps)} MiB/s**.`;
}

function failuresList(r: CompareResults): string {
  const lines = [
    ...r.cells
      .filter((c) => c.error !== undefined)
      .map((c) => `- ${c.transport} ${testName(c.op, c.kind)} ${c.size} B: \`${c.error?.code}\` ${c.error?.message}`),
    ...r.breakdown
      .filter((b) => b.error !== undefined)
      .map(
        (b) =>
          `- breakdown ${b.transport} ${testName(b.op, b.kind)} ${b.size} B: \`${b.error?.code}\` ${b.error?.message}`,
      ),
  ];
  return lines.length === 0 ? 'None.' : lines.map((l) => l.replace(/\r?\n/g, ' ')).join('\n');
}

/** Captions of the plots writeReport renders; an unknown name is captioned with itself. */
const PLOT_CAPTIONS: Readonly<Record<string, string>> = {
  latency: 'Latency vs message size',
  bandwidth: 'Bandwidth vs message size',
  cpu: 'CPU time per message',
};

/**
 * The whole report. `plots` are the base names of the plots written next to it (`latency`
 * embeds `latency.png` and links `latency.svg`).
 */
export function renderReport(r: CompareResults, plots: readonly string[]): string {
  const out: string[] = [`# pvio compare: ${r.startedAt}`, '', '## Environment', '', environmentTable(r)];
  out.push('', '## Floors', '', floorsTable(r));
  out.push(
    '',
    '## Results',
    '',
    'Ratios are this cell / the reference cell of the same size: for latency (median) above 1 is slower, ' +
      'for bandwidth (average) below 1 is less bandwidth.',
  );
  for (const kind of ['lat', 'bw'] as const) {
    for (const op of presentOps(r, kind)) out.push('', `### ${testName(op, kind)}`, '', comparisonTable(r, op, kind));
  }
  out.push('', '## CPU time per domain', '', r.cells.length === 0 ? 'No cells ran.' : cpuTable(r));
  out.push('', '## Per-stage breakdown', '');
  out.push(r.breakdown.length === 0 ? 'No instrumented run.' : breakdownTable(r));
  out.push('', '## Failed cells', '', failuresList(r));
  if (plots.length > 0) out.push('', '## Plots');
  for (const name of plots) {
    const caption = PLOT_CAPTIONS[name] ?? name;
    out.push('', `![${caption}](${name}.png)`, '', `Vector version: [${name}.svg](${name}.svg)`);
  }
  return `${out.join('\n')}\n`;
}
