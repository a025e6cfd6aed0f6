/**
 * The driver domain when it serves more than one kind of split device: the RDMA backend
 * (`vrdma`, over every rdma-nic it owns) and blkback (`vbd`, over every NVMe SSD it owns) at
 * once, each on its own xenbus watcher, both on ONE RingServer loop — so dom0 polls in one place
 * (DESIGN §4: two pollers on two cores make each other's stalls) and one `batchLimit` keeps a
 * flooding guest from starving the others whatever device they use.
 *
 * Each owned NVMe is brought up with the native driver and served through NvmeBlockDevice
 * (zero copy: segment grants mapped for the device, their device addresses in the PRPs). Which
 * SSD backs a vbd: `args.vbds["<front>/<devid>"]` names it, else the first owned SSD.
 *
 * Arguments: `spinBudget`, `batchLimit`, `idleTimeoutMs` (RingServer), `rdma` (`nic`, `limits`,
 * `featureCopy`: as RdmaBackendProgram), `blk` (`queueEntries` of the NVMe I/O queue,
 * `readOnly`), `vbds`. Runs until `control/shutdown`; returns `{ rdma?, blk?, … }` counters.
 */

import { NvmeDriver } from '../drivers/nvme/NvmeDriver.js';
import { RdmaNicDriver } from '../drivers/rdma-nic/RdmaNicDriver.js';
import { VBD_DEVICE_TYPE } from '../protocol/blkif/BlkifConstants.js';
import { pvError } from '../protocol/errors.js';
import type { DomainEnv } from '../protocol/Program.js';
import { VRDMA_DEVICE_TYPE } from '../protocol/rdma/pv/PvConstants.js';
import type { DomId } from '../protocol/Types.js';
import { waitForShutdown } from '../protocol/xenbus/control.js';
import { BlkBackend } from './blk/BlkBackend.js';
import { NvmeBlockDevice } from './blk/NvmeBlockDevice.js';
import { type BackendNic, RdmaBackend } from './rdma/RdmaBackend.js';
import { VirtioRdmaBackend } from './rdma/virtio/VirtioRdmaBackend.js';
import { RingServer } from './ring/RingServer.js';
import { BackendDirWatcher } from './xenbus/BackendDirWatcher.js';

/** Arguments of the driver-domain program. */
export interface DriverDomainArgs {
  readonly spinBudget?: number;
  readonly batchLimit?: number;
  readonly idleTimeoutMs?: number;
  readonly rdma?: { readonly nic?: string; readonly limits?: Record<string, unknown>; readonly featureCopy?: boolean };
  readonly blk?: { readonly queueEntries?: number; readonly readOnly?: boolean };
  /** `"<frontDomid>/<devid>"` → NVMe name serving that vbd (default: the first owned SSD). */
  readonly vbds?: Record<string, string>;
}

interface Ssd {
  readonly name: string;
  readonly driver: NvmeDriver;
  readonly dev: NvmeBlockDevice;
}

/** Runs both backends until `control/shutdown` (see the file comment). */
export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const args = env.args as DriverDomainArgs;
  const nics: BackendNic[] = [];
  const ssds: Ssd[] = [];
  for (const d of env.devices) {
    if (d.pci === undefined) continue;
    if (d.kind === 'rdma-nic') nics.push({ name: d.device, driver: new RdmaNicDriver(d.pci, hc.memory) });
    if (d.kind === 'nvme') {
      const driver = new NvmeDriver(d.pci, hc.memory, { queueEntries: args.blk?.queueEntries ?? 256 });
      ssds.push({
        name: d.device,
        driver,
        dev: new NvmeBlockDevice(driver, hc.memory, { readOnly: args.blk?.readOnly }),
      });
    }
  }
  if (nics.length === 0 && ssds.length === 0) {
    throw pvError('PV_ERR_CONFIG', `${env.name} owns no rdma-nic and no nvme: nothing to serve`);
  }
  const server = new RingServer(hc.evtchn, {
    spinBudget: args.spinBudget,
    batchLimit: args.batchLimit,
    idleTimeoutMs: args.idleTimeoutMs,
  });
  const log = (line: string) => env.log(line);
  const rdma =
    nics.length === 0
      ? undefined
      : new RdmaBackend(hc, nics, server, {
          limits: args.rdma?.limits,
          featureCopy: args.rdma?.featureCopy,
          defaultNic: args.rdma?.nic,
          log,
        });
  const ssdFor = (front: DomId, devid: number): NvmeBlockDevice => {
    const want = args.vbds?.[`${front}/${devid}`];
    const ssd = want === undefined ? ssds[0] : ssds.find((s) => s.name === want);
    if (ssd === undefined) throw pvError('PV_ERR_CONFIG', `vbd ${front}/${devid}: ${env.name} owns no nvme '${want}'`);
    return ssd.dev;
  };
  const blk = ssds.length === 0 ? undefined : new BlkBackend(hc, server, ssdFor, log);
  const virtio =
    rdma === undefined ? undefined : new VirtioRdmaBackend(hc, rdma, server, { log, batchLimit: args.batchLimit });
  const watchers: BackendDirWatcher[] = [];
  if (rdma !== undefined) watchers.push(new BackendDirWatcher(hc.store, hc.domid, VRDMA_DEVICE_TYPE, rdma.hooks));
  if (blk !== undefined) watchers.push(new BackendDirWatcher(hc.store, hc.domid, VBD_DEVICE_TYPE, blk.hooks));
  const closeErrors: string[] = [];
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      closeErrors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  let result: Record<string, unknown>;
  try {
    for (const w of watchers) await w.start();
    await virtio?.start();
    const stopped = waitForShutdown(hc.store, hc.domid).then(() => server.stop());
    await server.run();
    await stopped;
    // What guests left behind when the shutdown came: after every guest closed or died, nothing.
    const atShutdown = {
      connections: (rdma?.connections ?? 0) + (blk?.connections ?? 0) + (virtio?.connections ?? 0),
      liveMappings: hc.grant.liveMappings() + (hc.foreign?.liveDeviceMappings() ?? 0),
    };
    for (const w of watchers) await w.stop();
    await virtio?.stop();
    const blkTotals = blk?.totals();
    result = {
      rdma: rdma === undefined ? undefined : { ...rdma.stats, nics: nics.map((n) => n.name) },
      virtio: virtio === undefined ? undefined : { ...virtio.stats },
      blk:
        blkTotals === undefined
          ? undefined
          : {
              ...blkTotals.stats,
              refusals: blkTotals.refusals,
              ...blk?.events,
              ssds: ssds.map((s) => ({ name: s.name, ...s.dev.stats })),
            },
      connectionsAtShutdown: atShutdown.connections,
      liveMappingsAtShutdown: atShutdown.liveMappings,
      liveMappings: hc.grant.liveMappings() + (hc.foreign?.liveDeviceMappings() ?? 0),
      watcherErrors: watchers.flatMap((w) => w.errors.map((e) => e.message)),
      server: { ...server.stats },
    };
  } finally {
    if (rdma !== undefined) attempt('rdma backend', () => rdma.close());
    for (const n of nics) attempt(n.name, () => n.driver.close());
    for (const s of ssds) {
      attempt(`${s.name} device`, () => s.dev.close());
      attempt(s.name, () => s.driver.close());
    }
  }
  return { ...result, closeErrors };
}
