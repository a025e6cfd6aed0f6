/**
 * What this process's monitor socket serves (MonitorServer.ts): snapshots of every live host —
 * this thread's (LiveHosts.ts) and those of worker threads (ThreadHosts.ts: `pvio compare` runs
 * each cell's host in a pool worker) — and the console screen of any of their domains, found by
 * name, domain id, or `host/name`.
 */

import { findConsole, snapshotAll } from './LiveHosts.js';
import type { ConsoleAnswer, MonitorSource } from './MonitorServer.js';
import type { MonitorSnapshot } from './Snapshot.js';
import { ThreadHostsClient } from './ThreadHosts.js';

/** The source for a process running `command`. */
export function processSource(command: string): MonitorSource {
  const others = new ThreadHostsClient();
  return {
    async snapshot(): Promise<MonitorSnapshot> {
      const own = snapshotAll(command);
      const more = await others.hosts();
      return more.length === 0 ? own : { ...own, hosts: [...own.hosts, ...more] };
    },
    async console(domain: string): Promise<ConsoleAnswer | undefined> {
      return (await findConsole(domain)) ?? (await others.console(domain));
    },
  };
}
