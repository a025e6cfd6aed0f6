/**
 * Driver-domain program serving `vbd` devices (Xen blkif) from a file: opens one
 * FileBlockDevice, watches this domain's `backend/vbd` directory, serves every vbd the toolstack
 * attaches under one RingServer loop until the host writes `control/shutdown`, then disconnects
 * everything, closes the image and returns its counters.
 *
 * Arguments: `path` (image; default a sparse temp file, deleted at exit), `sizeBytes` (size to
 * create or extend to; default 64 MiB for a temp file), `sectorSize` (512), `readOnly`,
 * `spinBudget`, `batchLimit`, `idleTimeoutMs` (RingServer tuning). `disks` maps
 * `"<frontDomid>/<devid>"` to per-vbd `{ path, sizeBytes, sectorSize, readOnly }`; a vbd not
 * listed there is served from the default image.
 */

import { VBD_DEVICE_TYPE } from '../../protocol/blkif/BlkifConstants.js';
import type { DomainEnv } from '../../protocol/Program.js';
import type { DomId } from '../../protocol/Types.js';
import { waitForShutdown } from '../../protocol/xenbus/control.js';
import { RingServer } from '../ring/RingServer.js';
import { BackendDirWatcher } from '../xenbus/BackendDirWatcher.js';
import { BlkBackend } from './BlkBackend.js';
import { FileBlockDevice, type FileBlockDeviceOptions } from './FileBlockDevice.js';

/** Arguments of the blkback program. */
export interface BlkBackendArgs extends FileBlockDeviceOptions {
  readonly disks?: Record<string, FileBlockDeviceOptions>;
  readonly spinBudget?: number;
  readonly batchLimit?: number;
  readonly idleTimeoutMs?: number;
}

/** Default size of a temporary image. */
export const DEFAULT_TEMP_DISK_BYTES = 64 << 20;

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const a = env.args as BlkBackendArgs;
  const images: FileBlockDevice[] = [];
  const open = (o: FileBlockDeviceOptions): FileBlockDevice => {
    const d = new FileBlockDevice({
      ...o,
      sizeBytes: o.sizeBytes ?? (o.path === undefined ? DEFAULT_TEMP_DISK_BYTES : undefined),
    });
    images.push(d);
    return d;
  };
  const fallback = open(a);
  const perVbd = new Map<string, FileBlockDevice>();
  for (const [key, o] of Object.entries(a.disks ?? {})) perVbd.set(key, open(o));
  const server = new RingServer(hc.evtchn, {
    spinBudget: a.spinBudget,
    batchLimit: a.batchLimit,
    idleTimeoutMs: a.idleTimeoutMs,
  });
  const backend = new BlkBackend(
    hc,
    server,
    (front: DomId, devid: number) => perVbd.get(`${front}/${devid}`) ?? fallback,
    (line) => env.log(line),
  );
  const watcher = new BackendDirWatcher(hc.store, hc.domid, VBD_DEVICE_TYPE, backend.hooks);
  try {
    await watcher.start();
    const stopped = waitForShutdown(hc.store, hc.domid).then(() => server.stop());
    await server.run();
    await stopped;
    const atShutdown = { connections: backend.connections, liveMappings: hc.grant.liveMappings() };
    await watcher.stop();
    const totals = backend.totals();
    return {
      ...totals.stats,
      refusals: totals.refusals,
      ...backend.events,
      connectionsAtShutdown: atShutdown.connections,
      liveMappingsAtShutdown: atShutdown.liveMappings,
      liveMappings: hc.grant.liveMappings(),
      watcherErrors: watcher.errors.map((e) => e.message),
      images: images.map((d) => ({ path: d.path, sectors: d.sectors, ...d.stats })),
      server: { ...server.stats },
    };
  } finally {
    for (const d of images) d.close();
  }
}
