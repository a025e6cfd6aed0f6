/**
 * Main-thread side of the monitor: turns one host's shared state into a `HostSnapshot`
 * (Snapshot.ts) without messaging any domain. Domains come from the host's table (name and
 * state), their CPU time from `/proc/self/task/<tid>/schedstat` (TID stored by the domain thread),
 * grant and notify counters and the live ring ends from the monitor buffer (MonitorSpace.ts),
 * devices from the counters each device already keeps in its shared state.
 */

import { DomainCounter } from '../../protocol/monitor/MonitorLayout.js';
import { RingCounter } from '../../protocol/ring/RingCounters.js';
import { isLentNic, type LentData } from '../cluster/LentDevices.js';
import { isLentNvme } from '../cluster/LentNvme.js';
import { LentStats } from '../cluster/LentStats.js';
import { SharedRnicMetrics } from '../devices/rnic/RnicMetrics.js';
import type { Host } from '../domain/Host.js';
import type { DeviceSnapshot, DomainSnapshot, HostSnapshot, RingSnapshot } from './Snapshot.js';
import { threadCpuNs } from './ThreadStat.js';

/** One host's snapshot, taken now. */
export function snapshotHost(host: Host): HostSnapshot {
  return {
    name: host.name,
    domains: domainSnapshots(host),
    rings: ringSnapshots(host),
    devices: deviceSnapshots(host),
  };
}

/** Every live domain of `host`, by domid. */
export function domainSnapshots(host: Host): DomainSnapshot[] {
  const space = host.monitor;
  return host
    .domains()
    .sort((a, b) => a.domid - b.domid)
    .map((d) => {
      // A plain copy: the domain thread keeps counting while we read (MonitorLayout.ts).
      const c = space.domainCounters(d.domid).slice();
      return {
        domid: d.domid,
        name: d.name,
        state: d.state,
        cpuNs: threadCpuNs(space.tid(d.domid)),
        grantMaps: c[DomainCounter.GRANT_MAPS],
        grantUnmaps: c[DomainCounter.GRANT_UNMAPS],
        grantCopies: c[DomainCounter.GRANT_COPIES],
        grantCopyBytes: c[DomainCounter.GRANT_COPY_BYTES],
        notifies: c[DomainCounter.NOTIFIES],
      };
    });
}

/** Every live ring end of `host`, by owner, kind and end. */
export function ringSnapshots(host: Host): RingSnapshot[] {
  return host.monitor
    .liveRings()
    .map((r) => {
      const c = r.counters;
      return {
        kind: r.kind,
        owner: r.owner,
        peer: r.peer,
        end: r.end,
        requests: c[RingCounter.REQUESTS],
        responses: c[RingCounter.RESPONSES],
        notifies: c[RingCounter.NOTIFIES],
        suppressed: c[RingCounter.SUPPRESSED],
        fullStalls: c[RingCounter.FULL_STALLS],
        batches: c[RingCounter.BATCHES],
        batchedItems: c[RingCounter.BATCHED_ITEMS],
      };
    })
    .sort((a, b) => a.owner - b.owner || a.kind.localeCompare(b.kind) || a.end.localeCompare(b.end));
}

/** The NICs, NVMe SSDs and accelerators of `host`, their counters mapped to the common fields. */
export function deviceSnapshots(host: Host): DeviceSnapshot[] {
  const devs = host.devices;
  const out: DeviceSnapshot[] = [];
  const owner = (name: string): number => devs.owner(name) ?? -1;
  const depth = devs.queueDepths();
  for (const [name, m] of Object.entries(devs.metrics())) {
    out.push(
      device(
        name,
        'rdma-nic',
        owner(name),
        m,
        { ops: ['wrs'], dmaBytes: ['bytes'], faults: ['faults'] },
        depth[name] ?? 0,
      ),
    );
  }
  for (const [name, m] of Object.entries(devs.nvmeMetrics())) {
    out.push(
      device(
        name,
        'nvme',
        owner(name),
        m,
        {
          ops: ['commands'],
          dmaBytes: ['bytesRead', 'bytesWritten'],
          faults: ['dmaFaults'],
        },
        depth[name] ?? 0,
      ),
    );
  }
  for (const [name, m] of Object.entries(devs.accelMetrics())) {
    out.push(
      device(
        name,
        'accel',
        owner(name),
        m,
        {
          ops: ['kernels'],
          dmaBytes: ['bytesToDevice', 'bytesFromDevice'],
          faults: ['dmaFaults'],
        },
        0,
      ),
    );
  }
  for (const b of devs.borrowedDevices()) out.push(borrowedDevice(b.data, b.owner ?? -1));
  return out;
}

/**
 * A borrowed device's row: its fabric counts from the lease record (LentStats.ts), a NIC's own
 * counters too (its state buffers are shared with the lender); an SSD's or accelerator's
 * commands run in the lender's model, so its ops are the MMIO writes that reached it.
 */
function borrowedDevice(data: LentData, owner: number): DeviceSnapshot {
  const lease = new LentStats(data.stats).snapshot();
  const hops =
    lease.mmioNtbCrossings +
    lease.mmioLinkHops +
    lease.dmaNtbCrossings +
    lease.dmaLinkHops +
    lease.p2pNtbCrossings +
    lease.p2pLinkHops;
  const nic = isLentNic(data) ? new SharedRnicMetrics(data.state.dev).snapshot() : undefined;
  const kind = isLentNic(data) ? 'rdma-nic' : isLentNvme(data) ? 'nvme' : 'accel';
  const { revoked, ...counts } = lease;
  return {
    name: data.name,
    kind,
    owner,
    ops: nic?.wrs ?? lease.mmioWrites,
    dmaBytes: lease.dmaBytes,
    doorbells: nic?.doorbells ?? 0,
    faults: lease.dmaFaults + lease.mmioRefused + (nic?.faults ?? 0),
    queueDepth: 0,
    fabricHops: hops,
    extra: { ...counts, revoked: revoked ? 1 : 0 },
  };
}

/** Which of a device's own counters make up each common field (summed); `doorbells` is common to all. */
interface FieldMap {
  readonly ops: readonly string[];
  readonly dmaBytes: readonly string[];
  readonly faults: readonly string[];
}

function device(
  name: string,
  kind: string,
  owner: number,
  metrics: Record<string, number>,
  map: FieldMap,
  queueDepth: number,
): DeviceSnapshot {
  const used = new Set<string>([...map.ops, ...map.dmaBytes, ...map.faults, 'doorbells']);
  const sum = (keys: readonly string[]): number => keys.reduce((n, k) => n + (metrics[k] ?? 0), 0);
  const extra: Record<string, number> = {};
  for (const [k, v] of Object.entries(metrics)) if (!used.has(k)) extra[k] = v;
  return {
    name,
    kind,
    owner,
    ops: sum(map.ops),
    dmaBytes: sum(map.dmaBytes),
    doorbells: metrics.doorbells ?? 0,
    faults: sum(map.faults),
    queueDepth,
    fabricHops: 0,
    extra,
  };
}
