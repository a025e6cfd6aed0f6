/**
 * Driver-domain program of the fault tests: the real RDMA backend (every rdma-nic it owns) and
 * the real blkback (one FileBlockDevice at `args.path`, shared by every vbd) on ONE RingServer,
 * each on its own xenbus watcher — as backend/DriverDomainProgram.ts composes them, but with a
 * file-backed disk (its media must survive the backend's death) and one addition the tests need:
 * a probe. The toolstack writes a number to `data/probe`; the program answers at
 * `data/counters` with `{ probe, liveMappings, rdmaConnections, blkConnections, … }` read in
 * its own thread, so a test sees the backend's counters while it is serving other guests.
 *
 * Arguments: `path`, `sizeBytes` (disk), `spinBudget`. Runs until `control/shutdown` (or it is
 * killed); returns the same counters.
 */

import { BlkBackend } from '../../../../backend/blk/BlkBackend.js';
import { FileBlockDevice } from '../../../../backend/blk/FileBlockDevice.js';
import { type BackendNic, RdmaBackend } from '../../../../backend/rdma/RdmaBackend.js';
import { RingServer } from '../../../../backend/ring/RingServer.js';
import { BackendDirWatcher } from '../../../../backend/xenbus/BackendDirWatcher.js';
import { RdmaNicDriver } from '../../../../drivers/rdma-nic/RdmaNicDriver.js';
import { VBD_DEVICE_TYPE } from '../../../../protocol/blkif/BlkifConstants.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { VRDMA_DEVICE_TYPE } from '../../../../protocol/rdma/pv/PvConstants.js';
import { waitForShutdown } from '../../../../protocol/xenbus/control.js';

/** What the probe answers (and the program returns). */
export interface Dom0Counters {
  readonly probe: string;
  readonly liveMappings: number;
  readonly rdmaConnections: number;
  readonly blkConnections: number;
  readonly rdma: Record<string, number> | undefined;
  readonly blk: Record<string, number>;
  readonly watcherErrors: string[];
}

export default async function main(env: DomainEnv): Promise<Dom0Counters> {
  const hc = env.hypercalls;
  const args = env.args as { path: string; sizeBytes?: number; spinBudget?: number };
  const nics: BackendNic[] = [];
  for (const d of env.devices) {
    if (d.pci !== undefined && d.kind === 'rdma-nic') {
      nics.push({ name: d.device, driver: new RdmaNicDriver(d.pci, hc.memory) });
    }
  }
  const disk = new FileBlockDevice({ path: args.path, sizeBytes: args.sizeBytes });
  const server = new RingServer(hc.evtchn, { spinBudget: args.spinBudget });
  const log = (line: string) => env.log(line);
  const rdma = nics.length === 0 ? undefined : new RdmaBackend(hc, nics, server, { log });
  const blk = new BlkBackend(hc, server, () => disk, log);
  const watchers = [new BackendDirWatcher(hc.store, hc.domid, VBD_DEVICE_TYPE, blk.hooks)];
  if (rdma !== undefined) watchers.push(new BackendDirWatcher(hc.store, hc.domid, VRDMA_DEVICE_TYPE, rdma.hooks));
  const counters = (probe: string): Dom0Counters => {
    const totals = blk.totals();
    return {
      probe,
      liveMappings: hc.grant.liveMappings(),
      rdmaConnections: rdma?.connections ?? 0,
      blkConnections: blk.connections,
      rdma: rdma === undefined ? undefined : { ...rdma.stats },
      blk: { ...totals.stats, ...blk.events },
      watcherErrors: watchers.flatMap((w) => w.errors.map((e) => e.message)),
    };
  };
  const data = `/local/domain/${hc.domid}/data`;
  // Answered in this thread, between serving rounds: the RingServer yields to the event loop.
  const unwatch = await hc.store.watch(`${data}/probe`, () => {
    void hc.store.tryRead(`${data}/probe`).then(async (probe) => {
      if (probe !== undefined) await hc.store.write(`${data}/counters`, JSON.stringify(counters(probe)));
    });
  });
  try {
    for (const w of watchers) await w.start();
    const stopped = waitForShutdown(hc.store, hc.domid).then(() => server.stop());
    await server.run();
    await stopped;
    await unwatch();
    for (const w of watchers) await w.stop();
    return counters('shutdown');
  } finally {
    // Each release stands alone (a revoked lent NIC refuses its teardown commands).
    const attempt = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        env.log(`close ${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    attempt('rdma backend', () => rdma?.close());
    for (const n of nics) attempt(n.name, () => n.driver.close());
    attempt('disk', () => disk.close());
  }
}
