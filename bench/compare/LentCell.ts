/**
 * The Device Lending rows of `pvio compare` and `pvio reproduce`: the same perftest guest pair as
 * every other cell, run in a two-host cluster (hypervisor-sim/cluster) where host A lends its NIC
 * and host B borrows it as `nic0@A`. On B the client owns the LENT NIC — natively (`lent`) or
 * passed through to a guest (`lent-passthrough`) — with the unchanged driver; every MMIO and DMA
 * of that NIC crosses the NTB. The server owns a local NIC of B (cross-host RDMA between two
 * hosts' programs is issue 6). The reference cells run the same programs on two local NICs of B
 * in the same kind of cluster, so the only difference is where the client's NIC sits.
 */

import { Cluster } from '../../hypervisor-sim/cluster/Cluster.js';
import type { LentCountersSnapshot } from '../../hypervisor-sim/cluster/LentStats.js';
import type { FabricProfileName } from '../../hypervisor-sim/pcie/Profiles.js';
import type { PerftestArgs, PerftestResult } from '../programs/PerftestGuest.js';

const PROGRAM = new URL('../programs/PerftestGuest.js', import.meta.url);

/** Where the client's NIC sits and how its domain owns it. */
export type Placement = 'local' | 'lent';

/** One lending cell to run. */
export interface LentCellSpec {
  readonly placement: Placement;
  readonly iommu: 'bypass' | 'translate';
  readonly profile: FabricProfileName;
  readonly args: PerftestArgs;
  readonly memoryMiB: number;
}

/** What a lending cell returns. */
export interface LentCellOutcome {
  readonly client: PerftestResult;
  readonly cpu: ReadonlyArray<{ readonly domain: string; readonly cpuNs: number }>;
  /** The lease's counters (NTB crossings, link hops, modelled fabric ns); undefined for local. */
  readonly lent?: LentCountersSnapshot;
  /** The client's NIC (`nic1` of B, or the lent `nic0@A`). */
  readonly device: string;
  readonly elapsedMs: number;
}

/** Runs one server/client pair on host B; the client's NIC is B's nic1 (local) or A's nic0 (lent). */
export async function runLentCell(spec: LentCellSpec): Promise<LentCellOutcome> {
  const t0 = performance.now();
  const cluster = new Cluster({
    hosts: [
      { name: 'A', nics: [{ name: 'nic0' }] },
      { name: 'B', nics: [{ name: 'nic0' }, { name: 'nic1' }] },
    ],
    profile: spec.profile,
  });
  try {
    let clientNic = 'nic1';
    let handle: Awaited<ReturnType<Cluster['borrow']>> | undefined;
    if (spec.placement === 'lent') {
      await cluster.lend('A', 'nic0');
      handle = await cluster.borrow('nic0@A', 'B');
      clientNic = handle.name;
    }
    const b = cluster.host('B');
    const peers = { server: 1, client: 2 };
    const args = spec.args as unknown as Record<string, unknown>;
    const server = b.createDomain({
      name: 'server',
      domid: 1,
      program: PROGRAM,
      memoryBytes: spec.memoryMiB << 20,
      pci: [{ device: 'nic0', iommu: 'bypass' }],
      args: { ...args, self: 'server', peers },
    });
    const client = b.createDomain({
      name: 'client',
      domid: 2,
      program: PROGRAM,
      memoryBytes: spec.memoryMiB << 20,
      pci: [{ device: clientNic, iommu: spec.iommu }],
      args: { ...args, self: 'client', peers },
    });
    const [s, c] = await Promise.all([server.result, client.result]);
    return {
      client: c.value as PerftestResult,
      cpu: [
        { domain: 'client', cpuNs: c.cpuNs },
        { domain: 'server', cpuNs: s.cpuNs },
      ],
      lent: handle?.stats.snapshot(),
      device: clientNic,
      elapsedMs: performance.now() - t0,
    };
  } finally {
    await cluster.shutdown();
  }
}
