/**
 * The registry of live hosts of this thread: a Host registers itself when it is constructed and
 * unregisters when `shutdown()` starts, so a monitor server in the same process (`pvio top`)
 * can snapshot every simulated machine without being handed them. A worker thread with hosts
 * (a `pvio compare` cell) also answers the main thread over ThreadHosts.ts. Only live hosts: a
 * finished run's figures are in its results, not here.
 */

import type { Host } from '../domain/Host.js';
import { snapshotHost } from './HostMonitor.js';
import type { ConsoleAnswer } from './MonitorServer.js';
import type { MonitorSnapshot } from './Snapshot.js';
import { announceDown, announceUp } from './ThreadHosts.js';

const live = new Set<Host>();

/** Called by the Host constructor. */
export function registerHost(host: Host): void {
  live.add(host);
  announceUp({ hosts: () => liveHosts().map(snapshotHost), console: findConsole });
}

/** Called by `Host.shutdown()`; idempotent. */
export function unregisterHost(host: Host): void {
  live.delete(host);
  if (live.size === 0) announceDown();
}

/** The console of a domain of this thread's hosts, by name, domain id, or `host/name`. */
export async function findConsole(domain: string): Promise<ConsoleAnswer | undefined> {
  const slash = domain.indexOf('/');
  const hostName = slash < 0 ? undefined : domain.slice(0, slash);
  const want = slash < 0 ? domain : domain.slice(slash + 1);
  for (const h of live) {
    if (hostName !== undefined && h.name !== hostName) continue;
    const d = h.domains().find((x) => x.name === want || String(x.domid) === want);
    if (d === undefined) continue;
    return { host: h.name, domid: d.domid, name: d.name, state: d.state, screen: await d.screen() };
  }
  return undefined;
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
