/**
 * fio's terse-but-readable text for one job, trimmed to what a block benchmark reports:
 *
 *   paravirt: (g=0): rw=randread, bs=(R) 4096B-4096B, ioengine=pvio-paravirt, iodepth=1, size=64MiB
 *     read: IOPS=21.3k, BW=83.2MiB/s (87.2MB/s)(19.5MiB/235msec)
 *       clat (usec): min=30.12, max=812.40, avg=46.01, stdev=12.30
 *        clat percentiles (usec):
 *        |  1.00th=[   33.10],  5.00th=[   34.02], 10.00th=[   35.11], 50.00th=[   41.20],
 *        | 90.00th=[   60.30], 99.00th=[   98.70], 99.50th=[  120.00], 99.90th=[  310.00]
 *     cpu (whole run incl. start-up and prefill, per timed I/O): guest=20.10us, dom0=18.30us
 *
 * Pure: returns text. IOPS takes fio's k/M suffixes, bandwidth is MiB/s with MB/s beside it.
 */

import type { BlkJobResult } from './BlkJob.js';

/** `812`, `21.3k`, `1.20M`: fio's IOPS notation. */
export function formatIops(iops: number): string {
  if (!Number.isFinite(iops)) return '—';
  if (iops >= 1e6) return `${(iops / 1e6).toFixed(2)}M`;
  if (iops >= 1e3) return `${(iops / 1e3).toFixed(1)}k`;
  return iops.toFixed(0);
}

function sizeText(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)}GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)}MiB`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)}KiB`;
  return `${bytes}B`;
}

const us = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '—');

/** The text block of one job. */
export function formatBlkJob(r: BlkJobResult): string {
  const dir = r.rw.endsWith('read') ? 'read' : 'write';
  const letter = dir === 'read' ? 'R' : 'W';
  const mib = r.bytes / (1 << 20);
  const c = r.clatUs;
  const pct = Object.entries(r.percentilesUs).map(([p, v]) => `${p.padStart(5)}th=[${us(v).padStart(8)}]`);
  const half = Math.ceil(pct.length / 2);
  return [
    `${r.mode}: (g=0): rw=${r.rw}, bs=(${letter}) ${r.bs}B-${r.bs}B, ioengine=pvio-${r.mode}, iodepth=${r.iodepth}, size=${sizeText(r.sizeBytes)}`,
    `  ${dir}: IOPS=${formatIops(r.iops)}, BW=${r.bwMiBps.toFixed(1)}MiB/s (${((r.bwMiBps * (1 << 20)) / 1e6).toFixed(1)}MB/s)` +
      `(${mib.toFixed(1)}MiB/${(r.seconds * 1000).toFixed(0)}msec)`,
    `    clat (usec): min=${us(c.min)}, max=${us(c.max)}, avg=${us(c.mean)}, stdev=${us(c.stdev)}`,
    '     clat percentiles (usec):',
    `     | ${pct.slice(0, half).join(', ')},`,
    `     | ${pct.slice(half).join(', ')}`,
    `  cpu (whole run incl. start-up and prefill, per timed I/O): guest=${us(r.cpuNsPerIo.guest / 1000)}us, ` +
      `dom0=${us(r.cpuNsPerIo.dom0 / 1000)}us`,
    '',
  ].join('\n');
}
