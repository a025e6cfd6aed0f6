/**
 * The table `pvio compare --cluster` prints: per cell group, one row per transport with the
 * single-process figure, the two-process figure, their ratio, and the two-process latency as a
 * multiple of the host link round trip measured in the same run (the floor every cross-host
 * message pays at least once).
 */

import type { ClusterCompareResults, ClusterRow } from './ClusterCompare.js';

const OPS: Record<string, string> = { write: 'RDMA WRITE', read: 'RDMA READ', send: 'SEND' };

function num(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

function group(rows: readonly ClusterRow[], r: ClusterCompareResults): string[] {
  const first = rows[0];
  const lat = first.kind === 'lat';
  const unit = lat ? (first.op === 'read' ? 'µs, round trip' : 'µs, half round trip') : 'MiB/s';
  const out = [`${OPS[first.op]} ${lat ? 'latency' : 'bandwidth'} ${first.size} B (${unit})`];
  if (lat) {
    out.push(
      `  ${'transport'.padEnd(15)}${'1 process'.padStart(11)}${'p99'.padStart(9)}${'2 processes'.padStart(13)}${'p99'.padStart(9)}${'×1 proc'.padStart(9)}${'×link rtt'.padStart(11)}`,
    );
  } else {
    out.push(
      `  ${'transport'.padEnd(15)}${'1 process'.padStart(11)}${'2 processes'.padStart(13)}${'×1 proc'.padStart(9)}`,
    );
  }
  for (const row of rows) {
    const one = row.oneProcess;
    const two = row.twoProcesses;
    if (two.error !== undefined || one.error !== undefined) {
      out.push(`  ${row.transport.padEnd(15)}FAILED ${two.error ?? one.error}`);
      continue;
    }
    if (lat) {
      const ratio = two.medianUs !== undefined && one.medianUs ? two.medianUs / one.medianUs : undefined;
      const link = two.medianUs !== undefined && r.linkRttUs.median > 0 ? two.medianUs / r.linkRttUs.median : undefined;
      out.push(
        `  ${row.transport.padEnd(15)}${num(one.medianUs, 2).padStart(11)}${num(one.p99Us, 1).padStart(9)}${num(two.medianUs, 2).padStart(13)}${num(two.p99Us, 1).padStart(9)}${num(ratio, 1).padStart(9)}${num(link, 2).padStart(11)}`,
      );
    } else {
      const ratio = two.avgMiBps !== undefined && one.avgMiBps ? two.avgMiBps / one.avgMiBps : undefined;
      out.push(
        `  ${row.transport.padEnd(15)}${num(one.avgMiBps, 0).padStart(11)}${num(two.avgMiBps, 0).padStart(13)}${num(ratio, 2).padStart(9)}`,
      );
    }
  }
  return out;
}

export function formatClusterTable(r: ClusterCompareResults): string {
  const lines = [
    `pvio compare --cluster — guests on hosts ${r.hosts[0]} (server) and ${r.hosts[1]} (client), each its own OS process, linked over TCP`,
    `floor (this run): host link round trip ${r.linkRttUs.median.toFixed(1)} µs median, p99 ${r.linkRttUs.p99.toFixed(1)} µs (${r.linkRttUs.n} pings)`,
    '',
  ];
  const groups = new Map<string, ClusterRow[]>();
  for (const row of r.rows) {
    const key = `${row.op}-${row.kind}-${row.size}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  for (const rows of groups.values()) lines.push(...group(rows, r), '');
  return `${lines.join('\n')}\n`;
}
