/**
 * Per-thread CPU time from `/proc/thread-self/schedstat` (first field: nanoseconds on CPU), the
 * figure DESIGN §6 reports per domain. Read at a domain's start and end (≈ 12 µs per read), never
 * on the fast path. Where the file is missing (not Linux), falls back to process-wide
 * `process.cpuUsage()` and says so in `source`.
 */

import { readFileSync } from 'node:fs';

/** A CPU-time reading in nanoseconds and where it came from. */
export interface CpuReading {
  readonly ns: number;
  readonly source: 'schedstat' | 'process';
}

/** Reads the calling thread's CPU time. */
export function threadCpuTime(): CpuReading {
  try {
    const text = readFileSync('/proc/thread-self/schedstat', 'utf8');
    const ns = Number(text.split(' ', 1)[0]);
    if (Number.isFinite(ns)) return { ns, source: 'schedstat' };
  } catch {
    // Not Linux, or /proc not mounted: fall through to the process-wide figure.
  }
  const u = process.cpuUsage();
  return { ns: (u.user + u.system) * 1000, source: 'process' };
}
