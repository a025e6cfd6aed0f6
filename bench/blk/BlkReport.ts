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
 * A job on a lent SSD is named `lent-<mode>` and ends with the lease's fabric counters:
 *
 *   lent-native: (g=0): rw=randread, bs=(R) 4096B-4096B, ioengine=pvio-lent-native, iodepth=1, size=64MiB
 *     ...
 *     fabric (nvme0@A lent by A to B, pcie3-x8-ntb): per timed I/O 5.00 NTB crossings (mmio 2.00, dma 3.00),
 *       4.61us modelled, 4.1KiB DMA; whole run 21034 crossings, 11.20ms modelled, 0 faults, 0 refused
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

/** The job's name: its mode, prefixed `lent-` on a lent SSD. */
export function blkJobName(r: Pick<BlkJobResult, 'mode' | 'placement'>): string {
  return r.placement === 'lent' ? `lent-${r.mode}` : r.mode;
}

/** The fabric lines of a job on a lent SSD (none for a local one). */
function lentLines(r: BlkJobResult): string[] {
  const l = r.lent;
  if (l === undefined) return [];
  const ios = Math.max(r.ios, 1);
  const t = l.timed;
  const run = l.run;
  const f2 = (v: number) => v.toFixed(2);
  return [
    `  fabric (${l.device} lent by ${l.lender} to ${l.borrower}, ${l.profile}): per timed I/O ` +
      `${f2(l.perIo.ntbCrossings)} NTB crossings (mmio ${f2(t.mmioNtbCrossings / ios)}, dma ${f2(t.dmaNtbCrossings / ios)}),`,
    `    ${us(l.perIo.fabricNs / 1000)}us modelled, ${(l.perIo.dmaBytes / 1024).toFixed(1)}KiB DMA; whole run ` +
      `${run.mmioNtbCrossings + run.dmaNtbCrossings} crossings, ${(run.fabricNs / 1e6).toFixed(2)}ms modelled, ` +
      `${run.dmaFaults} faults, ${run.mmioRefused} refused`,
  ];
}

/** The text block of one job. */
export function formatBlkJob(r: BlkJobResult): string {
  const name = blkJobName(r);
  const dir = r.rw.endsWith('read') ? 'read' : 'write';
  const letter = dir === 'read' ? 'R' : 'W';
  const mib = r.bytes / (1 << 20);
  const c = r.clatUs;
  const pct = Object.entries(r.percentilesUs).map(([p, v]) => `${p.padStart(5)}th=[${us(v).padStart(8)}]`);
  const half = Math.ceil(pct.length / 2);
  return [
    `${name}: (g=0): rw=${r.rw}, bs=(${letter}) ${r.bs}B-${r.bs}B, ioengine=pvio-${name}, iodepth=${r.iodepth}, size=${sizeText(r.sizeBytes)}`,
    `  ${dir}: IOPS=${formatIops(r.iops)}, BW=${r.bwMiBps.toFixed(1)}MiB/s (${((r.bwMiBps * (1 << 20)) / 1e6).toFixed(1)}MB/s)` +
      `(${mib.toFixed(1)}MiB/${(r.seconds * 1000).toFixed(0)}msec)`,
    `    clat (usec): min=${us(c.min)}, max=${us(c.max)}, avg=${us(c.mean)}, stdev=${us(c.stdev)}`,
    '     clat percentiles (usec):',
    `     | ${pct.slice(0, half).join(', ')},`,
    `     | ${pct.slice(half).join(', ')}`,
    `  cpu (whole run incl. start-up and prefill, per timed I/O): guest=${us(r.cpuNsPerIo.guest / 1000)}us, ` +
      `dom0=${us(r.cpuNsPerIo.dom0 / 1000)}us`,
    ...lentLines(r),
    '',
  ].join('\n');
}
