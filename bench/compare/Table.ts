/**
 * The terminal rendering of a comparison: one block per (op, test, size) with the transports side
 * by side, each with its median and p99 (latency) or average bandwidth and message rate, and its
 * ratios to native, to passthrough and to the floor measured in the same run; then the per-domain
 * CPU and the per-stage breakdown. Pure: returns text.
 */

import { ratios } from '../report/Ratios.js';
import { formatSize } from './Matrix.js';
import { type CellResult, type CompareResults, isBlockOp, STAGES } from './Results.js';

/** Width of the transport column: the longest name (`lent-passthrough`) plus two spaces. */
const TRANSPORT_COL = 18;

const OP_NAMES = {
  write: 'RDMA WRITE',
  read: 'RDMA READ',
  send: 'SEND',
  'blk-randread': 'NVMe random read (fio, iodepth 1)',
  'blk-seqread': 'NVMe sequential read (fio, iodepth 16)',
} as const;

const num = (v: number | undefined, digits: number, width: number): string =>
  (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits)).padStart(width);

/** Threads that are devices rather than domains: the dedicated engine, tcp software NICs. */
function isDeviceThread(name: string): boolean {
  return name.startsWith('device') || name.startsWith('tcp-nic');
}

/** The header lines: machine, run parameters and floors. */
export function formatPreamble(r: CompareResults): string {
  const e = r.environment;
  const f = r.floors;
  return [
    `pvio compare${e.quick ? ' --quick' : ''} — ${e.cpuModel}, ${e.cores} cores, Node ${e.node}, ${e.platform}`,
    `fabric ${e.fabric}, device engine ${e.deviceEngine}, spin ${e.spinUs > 0 ? `${e.spinUs} µs` : 'default'}, ` +
      `cells in a piscina pool of ${e.concurrency}`,
    `floors (this run): thread hand-off round trip ${f.handoffSpinRttUs.median.toFixed(2)} µs spinning ` +
      `(p99 ${f.handoffSpinRttUs.p99.toFixed(2)}), ${f.handoffWaitRttUs.median.toFixed(2)} µs with wait/notify; ` +
      `memcpy ${f.memcpyMiBps.toFixed(0)} MiB/s`,
    '',
  ].join('\n');
}

function latLine(r: CompareResults, c: CellResult): string {
  const x = ratios(r, c);
  const lat = c.lat;
  return (
    `  ${c.transport.padEnd(TRANSPORT_COL)}${num(lat?.usec.median, 2, 10)}${num(lat?.usec.p99, 2, 10)}${num(lat?.usec.p999, 2, 10)}` +
    `${num(x.toNative, 2, 9)}${num(x.toPassthrough, 2, 9)}${num(x.toFloor, 1, 9)}` +
    (c.error ? `   ${c.error.code}: ${c.error.message.slice(0, 60)}` : '')
  );
}

function bwLine(r: CompareResults, c: CellResult): string {
  const x = ratios(r, c);
  const bw = c.bw;
  return (
    `  ${c.transport.padEnd(TRANSPORT_COL)}${num(bw?.avgMiBps, 0, 10)}${num(bw?.peakMiBps, 0, 10)}${num(bw?.mpps, 3, 10)}` +
    `${num(x.toNative, 2, 9)}${num(x.toPassthrough, 2, 9)}${num(x.toFloor, 2, 9)}` +
    (c.error ? `   ${c.error.code}: ${c.error.message.slice(0, 60)}` : '')
  );
}

/** The side-by-side table of every cell, grouped by op, test and size in matrix order. */
export function formatCells(r: CompareResults): string {
  const out: string[] = [];
  let group = '';
  for (const c of r.cells) {
    const key = `${c.op} ${c.kind} ${c.size}`;
    if (key !== group) {
      group = key;
      const what = `${OP_NAMES[c.op]} ${c.kind === 'lat' ? 'latency' : 'bandwidth'} ${formatSize(c.size)}`;
      if (c.kind === 'lat') {
        const half = isBlockOp(c.op) ? 'completion latency' : c.op === 'read' ? 'round trip' : 'half round trip';
        out.push('', `${what} (µs, ${half})`);
        out.push(
          `  ${'transport'.padEnd(TRANSPORT_COL)}${'median'.padStart(10)}${'p99'.padStart(10)}${'p99.9'.padStart(10)}` +
            `${'×native'.padStart(9)}${'×passth'.padStart(9)}${'×floor'.padStart(9)}`,
        );
      } else {
        out.push('', `${what} (MiB/s)`);
        out.push(
          `  ${'transport'.padEnd(TRANSPORT_COL)}${'average'.padStart(10)}${'peak'.padStart(10)}${'Mpps'.padStart(10)}` +
            `${'×native'.padStart(9)}${'×passth'.padStart(9)}${'×memcpy'.padStart(9)}`,
        );
      }
    }
    out.push(c.kind === 'lat' ? latLine(r, c) : bwLine(r, c));
  }
  return `${out.join('\n')}\n`;
}

/** Per-domain CPU time per message of the first latency and the first bandwidth row, per transport. */
export function formatCpu(r: CompareResults): string {
  const out = ['', 'CPU time per message, µs (per domain, /proc/thread-self/schedstat)'];
  const firstLat = r.cells.find((c) => c.kind === 'lat' && !c.error);
  const firstBw = r.cells.find((c) => c.kind === 'bw' && !c.error);
  for (const pick of [firstLat, firstBw]) {
    if (!pick) continue;
    out.push(`  ${pick.op} ${pick.kind} ${formatSize(pick.size)}:`);
    out.push(
      `  ${'transport'.padEnd(TRANSPORT_COL)}${'client'.padStart(10)}${'server'.padStart(10)}${'dom0'.padStart(10)}${'device'.padStart(10)}`,
    );
    for (const c of r.cells) {
      if (c.op !== pick.op || c.kind !== pick.kind || c.size !== pick.size) continue;
      // Device threads: the dedicated NIC engine, or each guest's tcp software-NIC thread (summed).
      const us = (d: string) => {
        const rows = c.cpu.filter((x) => (d === 'device' ? isDeviceThread(x.domain) : x.domain === d));
        if (rows.length === 0) return num(undefined, 2, 10);
        return num(rows.reduce((t, x) => t + x.nsPerMsg, 0) / 1000, 2, 10);
      };
      out.push(`  ${c.transport.padEnd(TRANSPORT_COL)}${us('client')}${us('server')}${us('dom0')}${us('device')}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/**
 * Hypervisor events per message of the same rows as formatCpu: event-channel notifies each domain
 * sent (a vrdma push or response that needed one; a virtio kick — the trap of QueueNotify — or
 * interrupt), and the grant maps and copies dom0 made. Counted over the whole run, so setup
 * (a virtio guest's register writes, MR registration) is included.
 */
export function formatEvents(r: CompareResults): string {
  const out = ['', 'Hypervisor events per message (event-channel notifies sent; dom0 grant maps and copies)'];
  const firstLat = r.cells.find((c) => c.kind === 'lat' && !c.error);
  const firstBw = r.cells.find((c) => c.kind === 'bw' && !c.error);
  for (const pick of [firstLat, firstBw]) {
    if (!pick) continue;
    out.push(`  ${pick.op} ${pick.kind} ${formatSize(pick.size)}:`);
    const head = ['client', 'server', 'dom0', 'grant maps', 'grant copies'].map((h) => h.padStart(13)).join('');
    out.push(`  ${'transport'.padEnd(TRANSPORT_COL)}${head}`);
    for (const c of r.cells) {
      if (c.op !== pick.op || c.kind !== pick.kind || c.size !== pick.size) continue;
      const msgs = c.kind === 'lat' ? c.lat?.iters : c.bw?.iters;
      const ev = (d: string) => c.cpu.find((x) => x.domain === d)?.events;
      const per = (v: number | undefined) => num(v === undefined || !msgs ? undefined : v / msgs, 3, 13);
      const dom0 = ev('dom0');
      out.push(
        `  ${c.transport.padEnd(TRANSPORT_COL)}${per(ev('client')?.notifies)}${per(ev('server')?.notifies)}` +
          `${per(dom0?.notifies)}${per(dom0?.grantMaps)}${per(dom0?.grantCopies)}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

/** The per-stage breakdown: ns per message in each stage, per transport and instrumented run. */
export function formatBreakdown(r: CompareResults): string {
  if (r.breakdown.length === 0) return '';
  const out = [
    '',
    'Per-stage time per message, µs (separate instrumented runs; wall time in each stage, idle excluded)',
  ];
  let group = '';
  for (const b of r.breakdown) {
    const key = `${b.op} ${b.kind} ${b.size}`;
    if (key !== group) {
      group = key;
      out.push(`  ${OP_NAMES[b.op]} ${b.kind === 'lat' ? 'latency' : 'bandwidth'} ${formatSize(b.size)}:`);
      out.push(
        `  ${'transport'.padEnd(TRANSPORT_COL)}${STAGES.map((s) => s.padStart(15)).join('')}${'total'.padStart(10)}`,
      );
    }
    if (b.error) {
      out.push(`  ${b.transport.padEnd(TRANSPORT_COL)}${b.error.code}: ${b.error.message.slice(0, 80)}`);
      continue;
    }
    let total = 0;
    const cols = STAGES.map((s) => {
      total += b.nsPerMsg[s];
      return num(b.nsPerMsg[s] / 1000, 2, 15);
    }).join('');
    out.push(`  ${b.transport.padEnd(TRANSPORT_COL)}${cols}${num(total / 1000, 2, 10)}`);
  }
  return `${out.join('\n')}\n`;
}
