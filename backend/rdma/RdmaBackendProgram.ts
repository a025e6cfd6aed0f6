/**
 * Driver-domain program serving the `vrdma` device (paravirt and paravirt-copy transports) and
 * the `virtio-rdma` device (virtio and virtio-packed; virtio/VirtioRdmaBackend.ts) to
 * every frontend the toolstack attaches: it attaches the native driver to each rdma-nic this
 * domain owns (`env.devices` entries with a PCI function), runs the backend service
 * (RdmaBackend.ts) under one RingServer loop until the host writes `control/shutdown`, then
 * disconnects every guest, closes the drivers and returns its counters.
 *
 * Arguments: `nic` (default NIC name; default the first owned), `spinBudget`, `batchLimit`,
 * `idleTimeoutMs` (RingServer tuning), `limits` (per-guest limit overrides, see Limits.ts),
 * `featureCopy` (serve mode=copy, default true).
 */

import { RdmaNicDriver } from '../../drivers/rdma-nic/RdmaNicDriver.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { VRDMA_DEVICE_TYPE } from '../../protocol/rdma/pv/PvConstants.js';
import { waitForShutdown } from '../../protocol/xenbus/control.js';
import { RingServer } from '../ring/RingServer.js';
import { BackendDirWatcher } from '../xenbus/BackendDirWatcher.js';
import { type BackendNic, RdmaBackend } from './RdmaBackend.js';
import { VirtioRdmaBackend } from './virtio/VirtioRdmaBackend.js';

/** Arguments of the backend program. */
export interface RdmaBackendArgs {
  readonly nic?: string;
  readonly spinBudget?: number;
  readonly batchLimit?: number;
  readonly idleTimeoutMs?: number;
  readonly limits?: Record<string, unknown>;
  readonly featureCopy?: boolean;
}

/** Runs the backend until `control/shutdown`; returns its counters (see the file comment). */
export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const args = env.args as RdmaBackendArgs;
  const nics: BackendNic[] = [];
  for (const d of env.devices) {
    if (d.kind === 'rdma-nic' && d.pci !== undefined) {
      nics.push({ name: d.device, driver: new RdmaNicDriver(d.pci, hc.memory) });
    }
  }
  if (nics.length === 0) throw pvError('PV_ERR_CONFIG', `${env.name} owns no rdma-nic to serve vrdma devices on`);
  const server = new RingServer(hc.evtchn, {
    spinBudget: args.spinBudget,
    batchLimit: args.batchLimit,
    idleTimeoutMs: args.idleTimeoutMs,
  });
  const backend = new RdmaBackend(hc, nics, server, {
    limits: args.limits,
    featureCopy: args.featureCopy,
    defaultNic: args.nic,
    log: (line) => env.log(line),
  });
  const watcher = new BackendDirWatcher(hc.store, hc.domid, VRDMA_DEVICE_TYPE, backend.hooks);
  await watcher.start();
  // virtio-rdma devices on the same NICs, limits and loop (VirtioRdmaBackend.ts).
  const virtio = new VirtioRdmaBackend(hc, backend, server, {
    log: (line) => env.log(line),
    batchLimit: args.batchLimit,
  });
  await virtio.start();
  const stopped = waitForShutdown(hc.store, hc.domid).then(() => server.stop());
  await server.run();
  await stopped;
  // What guests left behind when the shutdown came: after every guest closed or died, nothing.
  const liveMappings = (): number => hc.grant.liveMappings() + (hc.foreign?.liveDeviceMappings() ?? 0);
  const atShutdown = { connections: backend.connections + virtio.connections, liveMappings: liveMappings() };
  await watcher.stop();
  await virtio.stop();
  backend.close();
  const closeErrors: string[] = [];
  for (const n of nics) {
    try {
      n.driver.close();
    } catch (err) {
      closeErrors.push(`${n.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return {
    ...backend.stats,
    connectionsAtShutdown: atShutdown.connections,
    liveMappingsAtShutdown: atShutdown.liveMappings,
    virtio: { ...virtio.stats },
    nics: nics.map((n) => n.name),
    liveMappings: liveMappings(),
    watcherErrors: watcher.errors.map((e) => e.message),
    closeErrors,
    server: { ...server.stats },
  };
}
