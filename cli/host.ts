/**
 * `pvio host`: runs one host of a multi-machine cluster in this process until SIGINT/SIGTERM or
 * a controller's `shutdown`. It joins etcd (host directory + device registry), listens for host
 * links, lends its NVMe SSD when asked (`--lend`), borrows from others on a controller's request,
 * and runs its side of cross-host perftest cells.
 *
 *   pvio host --name A --listen 127.0.0.1:7001 --registry etcd://127.0.0.1:2379 [--peers B,C]
 *
 * It prints one `ready` line (`pvio host A ready: host id 1, link 127.0.0.1:7001, …`) once it
 * can be reached; the local launcher (`pvio cluster`) waits for that line.
 */

import { parseArgs } from 'node:util';
import { installBlkCheck } from '../bench/cluster/BlkCheck.js';
import { installClusterCells } from '../bench/cluster/ClusterCell.js';
import { HostDaemon } from '../hypervisor-sim/hostd/HostDaemon.js';
import { PORTS_PER_HOST } from '../hypervisor-sim/hostd/HostDirectory.js';
import { installLending } from '../hypervisor-sim/hostd/HostLending.js';
import { pvError } from '../protocol/errors.js';

/** `etcd://HOST:PORT[,HOST:PORT…]` or `http://…` → etcd client URLs. */
export function etcdEndpoints(registry: string): string[] {
  const list = registry.replace(/^etcd:\/\//, '').split(',');
  return list.map((e) => {
    const url = e.startsWith('http://') || e.startsWith('https://') ? e : `http://${e}`;
    if (!/^https?:\/\/[^/\s:]+:\d{1,5}$/.test(url)) {
      throw pvError(
        'PV_ERR_INVALID_ARG',
        `--registry ${registry}: expected etcd://HOST:PORT (e.g. etcd://127.0.0.1:2379)`,
      );
    }
    return url;
  });
}

/** `HOST:PORT` → parts. */
export function hostPort(text: string, flag: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const port = Number(text.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw pvError('PV_ERR_INVALID_ARG', `${flag} ${text}: expected HOST:PORT (e.g. 127.0.0.1:7001; port 0 = any)`);
  }
  return { host: text.slice(0, i), port };
}

export async function hostMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      advertise: { type: 'string' },
      registry: { type: 'string' },
      cluster: { type: 'string', default: 'default' },
      peers: { type: 'string' },
      ttl: { type: 'string', default: '5' },
      lend: { type: 'string' },
      'nvme-mib': { type: 'string', default: '64' },
    },
    strict: true,
  });
  if (values.name === undefined)
    throw pvError('PV_ERR_INVALID_ARG', '--name is required (a name unique in the cluster)');
  if (values.registry === undefined) {
    throw pvError('PV_ERR_INVALID_ARG', '--registry etcd://HOST:PORT is required (start etcd, or use `pvio cluster`)');
  }
  const listen = hostPort(values.listen, '--listen');
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 1) throw pvError('PV_ERR_INVALID_ARG', `--ttl ${values.ttl}: whole seconds ≥ 1`);
  const nvmeMiB = Number(values['nvme-mib']);
  if (!Number.isInteger(nvmeMiB) || nvmeMiB < 1) throw pvError('PV_ERR_INVALID_ARG', '--nvme-mib: whole MiB ≥ 1');

  if (values.lend !== undefined && values.lend !== 'nvme0') {
    throw pvError('PV_ERR_INVALID_ARG', `--lend ${values.lend}: this host lends nvme0 (its one NVMe SSD)`);
  }
  const daemon = await HostDaemon.start({
    name: values.name,
    listenHost: listen.host,
    listenPort: listen.port,
    advertiseHost: values.advertise,
    etcd: etcdEndpoints(values.registry),
    cluster: values.cluster,
    ttl,
  });
  installClusterCells(daemon);
  const lending = await installLending(daemon, { nvmeBytes: nvmeMiB << 20, lend: values.lend === 'nvme0' });
  installBlkCheck(daemon, lending);
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`pvio host ${daemon.name}: stopping (${why})`);
    await lending.close();
    await daemon.stop();
    process.exit(0);
  };
  daemon.registerControl('shutdown', async () => {
    setTimeout(() => void stop('shutdown requested'), 10);
    return { stopping: true };
  });
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  daemon.directory.watch((name, rec) => {
    if (name !== daemon.name)
      console.log(`pvio host ${daemon.name}: ${rec ? `host ${name} at ${rec.link}` : `host ${name} left`}`);
  });
  for (const peer of (values.peers ?? '').split(',').filter((p) => p !== '')) {
    daemon.linkTo(peer).then(
      () => console.log(`pvio host ${daemon.name}: linked to ${peer}`),
      (err) =>
        console.log(
          `pvio host ${daemon.name}: ${peer} not reachable yet (${(err as Error).message}); links are made on first use`,
        ),
    );
  }
  const first = daemon.hostId * PORTS_PER_HOST + 1;
  console.log(
    `pvio host ${daemon.name} ready: host id ${daemon.hostId}, link ${daemon.link}, registry ${values.registry} (cluster ${values.cluster}), NIC port ${first}${values.lend ? `, lending ${daemon.name}/nvme0` : ''}`,
  );
  await new Promise(() => {});
}
