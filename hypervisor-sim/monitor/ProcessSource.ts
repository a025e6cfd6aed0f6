/**
 * What this process's monitor socket serves (MonitorServer.ts): snapshots of every live host
 * (LiveHosts.ts) and the console screen of any of their domains, found by name, domain id, or
 * `host/name`.
 */

import { liveHosts, snapshotAll } from './LiveHosts.js';
import type { ConsoleAnswer, MonitorSource } from './MonitorServer.js';

/** The source for a process running `command`. */
export function processSource(command: string): MonitorSource {
  return {
    snapshot: () => snapshotAll(command),
    async console(domain: string): Promise<ConsoleAnswer | undefined> {
      const slash = domain.indexOf('/');
      const hostName = slash < 0 ? undefined : domain.slice(0, slash);
      const want = slash < 0 ? domain : domain.slice(slash + 1);
      for (const h of liveHosts()) {
        if (hostName !== undefined && h.name !== hostName) continue;
        const d = h.domains().find((x) => x.name === want || String(x.domid) === want);
        if (d === undefined) continue;
        return { host: h.name, domid: d.domid, name: d.name, state: d.state, screen: await d.screen() };
      }
      return undefined;
    },
  };
}
