/**
 * `pvio compare --cluster`: the RDMA rows with the two guests on two `pvio host` processes —
 * every message crossing a real TCP host link — beside the same cells in one process, and the
 * host link's own round trip measured in the same run as the floor.
 *
 *   pvio compare --cluster [--registry etcd://HOST:PORT --hosts A,B] [--transports native,paravirt]
 *                [--lat-iters N] [--out DIR]
 *
 * Without `--registry` it starts its own two-host cluster (LocalCluster: etcd + 2 processes) and
 * stops it afterwards; with it, it uses two running hosts (the first two in the directory, or
 * `--hosts`). Writes `<out>/cluster.json`.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ControlClient } from '../../hypervisor-sim/hostd/ControlClient.js';
import { HostDirectory } from '../../hypervisor-sim/hostd/HostDirectory.js';
import { LocalCluster } from '../../hypervisor-sim/hostd/LocalCluster.js';
import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';
import { CellRunner } from '../compare/CellRunner.js';
import type { CellPlan } from '../compare/Matrix.js';
import { Progress } from '../compare/Progress.js';
import type { CellResult, CompareOp } from '../compare/Results.js';
import type { PerftestTestName } from '../programs/PerftestGuest.js';
import { CLUSTER_TRANSPORTS } from './ClusterCell.js';
import { type PairResult, runClusterPair } from './ClusterPair.js';
import { formatClusterTable } from './ClusterTable.js';

/** One cell of the cluster comparison. */
export interface ClusterCellSpec {
  readonly transport: Transport;
  readonly op: CompareOp;
  readonly kind: 'lat' | 'bw';
  readonly size: number;
  readonly iters: number;
}

/** One row: the same cell in one process and across two host processes. */
export interface ClusterRow extends ClusterCellSpec {
  readonly oneProcess: {
    readonly medianUs?: number;
    readonly p99Us?: number;
    readonly avgMiBps?: number;
    readonly error?: string;
  };
  readonly twoProcesses: {
    readonly medianUs?: number;
    readonly p99Us?: number;
    readonly avgMiBps?: number;
    readonly error?: string;
  };
}

export interface ClusterCompareResults {
  readonly schema: 'pvio-compare-cluster/1';
  readonly startedAt: string;
  readonly hosts: readonly string[];
  /** Host link round trip between the two hosts (`noop` control request), µs. */
  readonly linkRttUs: { readonly median: number; readonly p99: number; readonly n: number };
  readonly rows: readonly ClusterRow[];
}

function plan(transports: readonly Transport[], latIters: number): ClusterCellSpec[] {
  const out: ClusterCellSpec[] = [];
  for (const op of ['write', 'read', 'send'] as const) {
    for (const t of transports) out.push({ transport: t, op, kind: 'lat', size: 64, iters: latIters });
  }
  for (const t of transports) out.push({ transport: t, op: 'write', kind: 'bw', size: 65536, iters: 400 });
  return out;
}

function oneProcessOf(c: CellResult): ClusterRow['oneProcess'] {
  if (c.error) return { error: `${c.error.code}: ${c.error.message}` };
  if (c.lat) return { medianUs: c.lat.usec.median, p99Us: c.lat.usec.p99 };
  return { avgMiBps: c.bw?.avgMiBps };
}

function twoProcessesOf(p: PairResult): ClusterRow['twoProcesses'] {
  if (p.usec !== undefined) return { medianUs: p.usec.median, p99Us: p.usec.p99 };
  return { avgMiBps: p.avgMiBps };
}

export async function clusterCompareMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv.filter((a) => a !== '--cluster'),
    options: {
      registry: { type: 'string' },
      hosts: { type: 'string' },
      transports: { type: 'string' },
      'lat-iters': { type: 'string', default: '1000' },
      out: { type: 'string' },
      quick: { type: 'boolean' },
    },
    strict: true,
  });
  const transports = (values.transports?.split(',') ?? CLUSTER_TRANSPORTS) as Transport[];
  for (const t of transports) {
    if (!CLUSTER_TRANSPORTS.includes(t)) {
      throw pvError('PV_ERR_CONFIG', `--transports: '${t}' does not cross hosts (${CLUSTER_TRANSPORTS.join(', ')})`);
    }
  }
  const latIters = Number(values['lat-iters']);
  if (!Number.isInteger(latIters) || latIters < 3) throw pvError('PV_ERR_CONFIG', '--lat-iters: an integer ≥ 3');
  const startedAt = new Date();
  const cells = plan(transports, latIters);
  const progress = new Progress(cells.length * 2 + 2, process.stderr);

  let local: LocalCluster | undefined;
  let links: string[];
  if (values.registry === undefined) {
    progress.start('starting etcd and hosts A, B');
    local = await LocalCluster.start({ hosts: ['A', 'B'] });
    links = [...local.hosts.values()].map((h) => h.link);
    progress.done('cluster', `A at ${links[0]}, B at ${links[1]}`);
  } else {
    const endpoints = values.registry
      .replace(/^etcd:\/\//, '')
      .split(',')
      .map((e) => (e.startsWith('http') ? e : `http://${e}`));
    const dir = await HostDirectory.connect({ endpoints });
    const names = values.hosts?.split(',') ?? dir.hosts().map((h) => h.name);
    links = names.slice(0, 2).map((n) => {
      const rec = dir.byName(n);
      if (rec === undefined) throw pvError('PV_ERR_CONFIG', `host ${n} is not in the registry's directory`);
      return rec.link;
    });
    await dir.close();
    if (links.length < 2) throw pvError('PV_ERR_CONFIG', 'the cluster needs two running hosts (pvio host …)');
  }
  const [server, client] = await Promise.all(links.map((l) => ControlClient.connect(l)));
  const runner = new CellRunner(1, 'inline', undefined, progress);
  try {
    // Warm-up, not reported: the first cells of fresh host processes run cold code (JIT) on
    // both sides of the link and measured 1.5–2× slower here.
    progress.start('warm-up (not reported)');
    for (const t of transports) {
      await runClusterPair(server, client, { transport: t, test: 'write_lat', size: 64, iters: 300 });
    }
    progress.done('warm-up (not reported)', `${transports.length} short cells`);
    const ping = await client.call<{ median: number; p99: number; n: number }>('ping-peer', {
      peer: server.host,
      count: 500,
    });
    const rows: ClusterRow[] = [];
    for (const c of cells) {
      const name = `${c.transport} ${c.op} ${c.kind} ${c.size} B`;
      progress.start(`${name}, one process`);
      const cellPlan: CellPlan = { ...c, txDepth: c.kind === 'bw' ? 128 : 1 };
      const [one] = await runner.cells([cellPlan]);
      progress.start(`${name}, two host processes`);
      let two: ClusterRow['twoProcesses'];
      try {
        const test = `${c.op}_${c.kind}` as PerftestTestName;
        two = twoProcessesOf(
          await runClusterPair(server, client, { transport: c.transport, test, size: c.size, iters: c.iters }),
        );
      } catch (err) {
        const e = err as { code?: string; message: string };
        two = { error: `${e.code ?? 'PV_ERR_UNKNOWN'}: ${e.message}` };
      }
      progress.done(
        `${name}, two host processes`,
        two.error ??
          (two.medianUs !== undefined ? `median ${two.medianUs.toFixed(2)} µs` : `${two.avgMiBps?.toFixed(0)} MiB/s`),
      );
      rows.push({ ...c, oneProcess: oneProcessOf(one), twoProcesses: two });
    }
    progress.finish();
    const r: ClusterCompareResults = {
      schema: 'pvio-compare-cluster/1',
      startedAt: startedAt.toISOString(),
      hosts: [server.host, client.host],
      linkRttUs: ping,
      rows,
    };
    process.stdout.write(formatClusterTable(r));
    const dir = resolve(
      values.out ??
        join(
          'results',
          `${startedAt
            .toISOString()
            .replace(/\.\d+Z$/, 'Z')
            .replaceAll(':', '-')}-cluster`,
        ),
    );
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cluster.json'), `${JSON.stringify(r, null, 2)}\n`);
    process.stdout.write(`\nwrote ${join(dir, 'cluster.json')}\n`);
    if (rows.some((x) => x.oneProcess.error || x.twoProcesses.error)) process.exitCode = 1;
  } finally {
    server.close();
    client.close();
    await runner.close();
    await local?.stop();
  }
}
