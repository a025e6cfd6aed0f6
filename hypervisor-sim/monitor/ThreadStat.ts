/**
 * Linux thread identity and CPU time, for the monitor: a domain thread stores its TID once at
 * start (`currentTid`), and the main thread reads that thread's CPU time from
 * `/proc/self/task/<tid>/schedstat` (`threadCpuNs`) whenever it takes a snapshot, without
 * asking the thread (xentop reads the hypervisor's vCPU time the same way, from outside).
 */

import { readFileSync, readlinkSync } from 'node:fs';

/** The calling thread's Linux TID, from `/proc/thread-self` → `<pid>/task/<tid>`; 0 where unknown. */
export function currentTid(): number {
  try {
    const link = readlinkSync('/proc/thread-self');
    const m = /\/task\/(\d+)$/.exec(link);
    return m === null ? 0 : Number(m[1]);
  } catch {
    // Not Linux, or /proc not mounted: the monitor then shows 0 CPU time for this thread.
    return 0;
  }
}

/** CPU time (ns) of thread `tid` of this process so far (schedstat's first field); 0 if unknown or gone. */
export function threadCpuNs(tid: number): number {
  if (!Number.isInteger(tid) || tid <= 0) return 0;
  try {
    const text = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8');
    const ns = Number(text.split(' ', 1)[0]);
    return Number.isFinite(ns) ? ns : 0;
  } catch {
    // The thread has exited (its task directory is gone) or /proc is missing.
    return 0;
  }
}
