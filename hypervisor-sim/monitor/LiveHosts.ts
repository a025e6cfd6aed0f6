/**
 * The process-wide registry of live hosts: a Host registers itself when it is constructed and
 * unregisters when `shutdown()` starts, so a monitor server in the same process (`pvio top`)
 * can snapshot every simulated machine without being handed them. Only live hosts: a finished
 * run's figures are in its results, not here.
 */

import type { Host } from '../domain/Host.js';
import { snapshotHost } from './HostMonitor.js';
import type { MonitorSnapshot } from './Snapshot.js';

const live = new Set<Host>();

/** Called by the Host constructor. */
export function registerHost(host: Host): void {
  live.add(host);
}

/** Called by `Host.shutdown()`; idempotent. */
export function unregisterHost(host: Host): void {
  live.delete(host);
}

/** The hosts alive now, in creation order. */
export function liveHosts(): Host[] {
  return [...live];
}

/** A snapshot of every live host, taken now on the calling (main) thread. */
export function snapshotAll(command: string): MonitorSnapshot {
  return {
    t: performance.timeOrigin + performance.now(),
    pid: process.pid,
    command,
    hosts: liveHosts().map(snapshotHost),
  };
}
