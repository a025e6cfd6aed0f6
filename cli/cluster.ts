/**
 * `pvio cluster`: a 2–3 host cluster on this machine in one command — a private etcd (temp data
 * dir, 127.0.0.1 only) and one `pvio host` process per host, their output prefixed `[A] …`.
 * It prints how to reach each host and runs until Ctrl-C (then stops the hosts and etcd and
 * removes etcd's data). `--check` instead runs a short end-to-end check and exits: an RDMA
 * WRITE latency cell between guests on A and B, then A borrows C's NVMe SSD and writes and reads
 * it back.
 *
 * `pvio ctl HOST:PORT OP [JSON]`: sends one control request to a running host and prints the
 * answer (ops: status, borrow, return, blk-check, perftest-cell, shutdown).
 */

import { parseArgs } from 'node:util';
import { runClusterPair } from '../bench/cluster/ClusterPair.js';
import { ControlClient } from '../hypervisor-sim/hostd/ControlClient.js';
import { LocalCluster } from '../hypervisor-sim/hostd/LocalCluster.js';
import { pvError } from '../protocol/errors.js';

const NAMES = ['A', 'B', 'C'];

export async function clusterMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      hosts: { type: 'string', default: '3' },
      ttl: { type: 'string', default: '5' },
      check: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const n = Number(values.hosts);
  if (!Number.isInteger(n) || n < 2 || n > 3) throw pvError('PV_ERR_INVALID_ARG', `--hosts ${values.hosts}: 2 or 3`);
  const names = NAMES.slice(0, n);
  const lender = names[names.length - 1];
  console.log(`pvio cluster: starting etcd and ${n} hosts (${names.join(', ')}) on 127.0.0.1 …`);
  const cluster = await LocalCluster.start({
    hosts: names,
    lenders: [lender],
    ttl: Number(values.ttl),
    echo: values.quiet ? undefined : (line) => console.log(line),
  });
  console.log(`\npvio cluster: up — registry ${cluster.registry}`);
  for (const h of [...cluster.hosts.values()].sort((x, y) => x.name.localeCompare(y.name)))
    console.log(`  host ${h.name}: id ${h.hostId}, link ${h.link}, pid ${h.proc.pid}`);
  const a = cluster.hosts.get('A')?.link;
  console.log(
    `\n  try: node dist/cli/pvio.js ctl ${a} status\n       node dist/cli/pvio.js ctl ${a} borrow '{"device":"${lender}/nvme0"}'\n       node dist/cli/pvio.js compare --cluster --registry ${cluster.registry} --hosts A,B\n`,
  );
  if (values.check) {
    try {
      await check(cluster, lender);
    } finally {
      await cluster.stop();
    }
    return;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  console.log('pvio cluster: stopping hosts and etcd …');
  await cluster.stop();
}

async function check(cluster: LocalCluster, lender: string): Promise<void> {
  const a = await cluster.control('A');
  const b = await cluster.control('B');
  try {
    const lat = await runClusterPair(b, a, { transport: 'native', test: 'write_lat', size: 64, iters: 200 });
    console.log(
      `check: RDMA WRITE 64 B between a guest on A and a guest on B: median ${lat.medianUs.toFixed(2)} µs half round trip (${lat.iters} iters)`,
    );
    const lease = await a.call<{ lease: { generation: number } }>('borrow', { device: `${lender}/nvme0` });
    const blk = await a.call<{ bytes: number; ok: boolean }>('blk-check', { device: `${lender}/nvme0`, blocks: 64 });
    console.log(
      `check: A borrowed ${lender}/nvme0 (lease ${lease.lease.generation}), wrote and read back ${blk.bytes} bytes: ${blk.ok ? 'data matches' : 'MISMATCH'}`,
    );
    await a.call('return', { device: `${lender}/nvme0` });
    if (!blk.ok) throw pvError('PV_ERR_BLK_IO', 'lent NVMe data did not match');
    console.log('check: ok');
  } finally {
    a.close();
    b.close();
  }
}

export async function ctlMain(argv: string[]): Promise<void> {
  const [address, op, json] = argv;
  if (address === undefined || op === undefined) {
    throw pvError(
      'PV_ERR_INVALID_ARG',
      'usage: pvio ctl HOST:PORT OP [JSON-ARGS]  (op: status, borrow, return, blk-check, shutdown)',
    );
  }
  let args: Record<string, unknown> = {};
  if (json !== undefined) {
    try {
      args = JSON.parse(json) as Record<string, unknown>;
    } catch {
      throw pvError('PV_ERR_INVALID_ARG', `arguments must be a JSON object, got ${json}`);
    }
  }
  const c = await ControlClient.connect(address);
  try {
    console.log(JSON.stringify(await c.call(op, args), null, 2));
  } finally {
    c.close();
  }
}
