/**
 * Runs a scenario: builds the host with its NICs, starts the driver domain (the RDMA backend
 * when some guest uses a paravirtual transport), gives each guest its devices — owned through
 * passthrough or native, served by the backend over rings, or none for tcp — runs every guest
 * program to completion, shuts the driver domain down and returns every result.
 *
 * Guests learn each other's domain ids from `args.peers` (name → domid) and their own name
 * from `args.self`, so programs can meet through the store (perftest's out-of-band exchange).
 */

import { DomainCounter } from '../../protocol/monitor/MonitorLayout.js';
import type { DeviceAttachment } from '../../protocol/Pci.js';
import { VIRTIO_RDMA_DEVICE_TYPE } from '../../protocol/rdma/virtio/VirtioRdma.js';
import { DOM0 } from '../../protocol/Types.js';
import { WIRE_IB_EDR, WIRE_IDEAL } from '../devices/rnic/RnicFabric.js';
import type { DomainResult } from '../domain/Domain.js';
import { Host, type HostOptions } from '../domain/Host.js';
import { DEFAULT_NVME_BYTES, isServedTransport, type ScenarioSpec, validateScenario } from './ScenarioSpec.js';

/** The RDMA backend program (compiled), run in dom0 when a guest uses paravirt. */
export const RDMA_BACKEND_PROGRAM = new URL('../../backend/rdma/RdmaBackendProgram.js', import.meta.url);
/**
 * The driver-domain program serving vrdma AND vbd devices on one loop, run in dom0 when a guest
 * uses an NVMe SSD through paravirt (blkback over the SSD, plus the RDMA backend if NICs are served).
 */
export const DRIVER_DOMAIN_PROGRAM = new URL('../../backend/DriverDomainProgram.js', import.meta.url);
/** dom0's program when no guest needs a backend: waits for shutdown. */
export const IDLE_PROGRAM = new URL('./IdleProgram.js', import.meta.url);

/** What one domain returned. */
export interface DomainOutcome {
  readonly domid: number;
  readonly value: unknown;
  readonly cpuNs: number;
  readonly console: readonly string[];
  /**
   * The domain's final console screen (its @xterm/headless terminal, 100 × 30): what a person
   * watching `pvio console` would have seen last, trailing blank lines trimmed.
   */
  readonly screen: readonly string[];
  /**
   * With `host.instrumentStages`: wall ns per stage of the domain's thread, indexed by `Stage`
   * (protocol/stage/StageLedger.ts), from its `main()` to its return — or, when a program opened
   * the host's stage window (`stages.openWindow()` / `closeWindow()`), within that window. HOME
   * is the domain's own work: frontend in a guest, backend in the driver domain. Absent when not
   * instrumented.
   */
  readonly stagesNs?: readonly number[];
  /**
   * Hypervisor events the domain caused over its whole run (its monitor record): event-channel
   * notifies it sent (a vrdma push or response that needed one, a virtio kick, trap or
   * interrupt), grant maps and grant copies it made.
   */
  readonly events?: DomainEvents;
}

/** Counts from a domain's monitor record (protocol/monitor/MonitorLayout.ts). */
export interface DomainEvents {
  readonly notifies: number;
  readonly grantMaps: number;
  readonly grantCopies: number;
}

/** A thread that is not a domain: the dedicated device thread, a tcp provider's NIC thread. */
export interface DeviceThreadOutcome {
  /** `device-engine`, or `tcp-nic <guest>/<device>`. */
  readonly name: string;
  /** CPU time of the thread, ns (-1 if it could not be read). */
  readonly cpuNs: number;
  /** With `host.instrumentStages`: ns per stage; the thread's own work is DEVICE (HOME is 0). */
  readonly stagesNs?: readonly number[];
}

/** What a scenario run returns. */
export interface ScenarioResult {
  readonly guests: Readonly<Record<string, DomainOutcome>>;
  readonly backend: DomainOutcome;
  /**
   * Device counters at the end of the run (per NIC: WRs, bytes, CQEs, faults, doorbells, …; per
   * NVMe SSD: commands, bytes, flushes, errors, …).
   */
  readonly counters: {
    readonly nics: Readonly<Record<string, Readonly<Record<string, number>>>>;
    readonly nvmes: Readonly<Record<string, Readonly<Record<string, number>>>>;
  };
  /** Backing file of each NVMe SSD (a temporary one is gone once the run returns). */
  readonly backingFiles: Readonly<Record<string, string>>;
  readonly elapsedMs: number;
  readonly deviceEngine: 'inline' | 'dedicated';
  readonly wire: string;
  /**
   * Threads outside the domains: the dedicated device thread (when `deviceEngine` is
   * 'dedicated' and it stopped cleanly) and each tcp guest's NIC thread (filed by the guest when
   * its provider closed; a guest that never closes its device reports none).
   */
  readonly deviceThreads?: readonly DeviceThreadOutcome[];
}

/** Options of a run. */
export interface RunOptions {
  /** Print every domain's console lines as they arrive. */
  readonly echoConsole?: boolean;
  /** Crash everything and fail after this long (default 10 minutes). */
  readonly timeoutMs?: number;
  /**
   * Merged over the options the scenario builds its Host with (a host process adds
   * `wireMailboxes` and `onWireMailbox` to run a cell whose peer guest is on another host).
   */
  readonly hostOptions?: Partial<HostOptions>;
  /** Called right after the Host is built, before any domain starts (e.g. to attach a WireResponder). */
  readonly onHost?: (host: Host) => void;
}

/** Validates and runs a scenario. */
export async function runScenario(spec: ScenarioSpec, opts: RunOptions = {}): Promise<ScenarioResult> {
  validateScenario(spec);
  const nics = spec.host?.nics ?? 2;
  const deviceEngine = spec.host?.deviceEngine ?? 'inline';
  const wire = spec.host?.wire === 'ib-edr' ? WIRE_IB_EDR : WIRE_IDEAL;
  const portBase = spec.host?.portBase ?? 1;
  const host = new Host({
    name: spec.host?.name ?? 'host0',
    nics: Array.from({ length: nics }, (_, i) => ({ name: `nic${i}`, portId: portBase + i })),
    nvmes: (spec.host?.nvmes ?? []).map((n, i) => ({
      name: `nvme${i}`,
      sizeBytes: n.sizeBytes ?? DEFAULT_NVME_BYTES,
      backingFile: n.backingFile,
    })),
    deviceEngine,
    wire,
    fabric: spec.host?.fabric ?? 'ideal',
    echoConsole: opts.echoConsole,
    instrumentStages: spec.host?.instrumentStages === true,
    ...opts.hostOptions,
  });
  const t0 = performance.now();
  try {
    opts.onHost?.(host);
    const served = new Set<string>();
    // Which SSD serves each vbd (`"<front>/<devid>"`), numbered per guest as the plugging below does.
    const vbds: Record<string, string> = {};
    spec.guests.forEach((g, i) => {
      let vbd = 0;
      for (const d of g.devices ?? []) {
        if (isServedTransport(d.transport)) served.add(d.device);
        if (d.transport === 'paravirt' && d.device.startsWith('nvme')) vbds[`${i + 1}/${vbd++}`] = d.device;
      }
    });
    // A served SSD needs blkback: the driver-domain program runs it beside the RDMA backend.
    const servesBlock = [...served].some((d) => d.startsWith('nvme'));
    const dom0 = host.createDomain({
      name: 'dom0',
      domid: DOM0,
      program: servesBlock ? DRIVER_DOMAIN_PROGRAM : served.size > 0 ? RDMA_BACKEND_PROGRAM : IDLE_PROGRAM,
      args: { spinBudget: spec.backend?.spinBudget, batchLimit: spec.backend?.batchLimit, vbds },
      memoryBytes: (spec.backend?.memoryMiB ?? 256) << 20,
      pci: [...served].sort().map((device) => ({ device, iommu: 'translate' as const })),
    });
    const peers: Record<string, number> = {};
    spec.guests.forEach((g, i) => {
      peers[g.name] = i + 1;
    });
    const guests = spec.guests.map((g, i) => {
      const attachments: DeviceAttachment[] = [];
      const pci: Array<{ device: string; iommu: 'translate' | 'bypass' }> = [];
      let devid = 0;
      let vbd = 0;
      let vio = 0;
      const plug: Array<{ type: string; devid: number }> = [];
      for (const d of g.devices ?? []) {
        if (d.transport === 'passthrough') pci.push({ device: d.device, iommu: 'translate' });
        else if (d.transport === 'native') pci.push({ device: d.device, iommu: 'bypass' });
        else if (d.transport === 'tcp') attachments.push({ device: d.device, kind: 'rdma-nic', transport: 'tcp' });
        else if (d.device.startsWith('nvme')) {
          // INVARIANT: validateScenario allowed only paravirt for an SSD served by dom0.
          attachments.push({ device: d.device, kind: 'nvme', transport: d.transport, devid: vbd, backendDomid: DOM0 });
          plug.push({ type: 'vbd', devid: vbd });
          vbd++;
        } else if (d.transport === 'virtio' || d.transport === 'virtio-packed') {
          // virtio-rdma: its own device class (and devid space), probed without xenbus.
          attachments.push({
            device: d.device,
            kind: 'rdma-nic',
            transport: d.transport,
            devid: vio,
            backendDomid: DOM0,
          });
          plug.push({ type: VIRTIO_RDMA_DEVICE_TYPE, devid: vio });
          vio++;
        } else {
          attachments.push({ device: d.device, kind: 'rdma-nic', transport: d.transport, devid, backendDomid: DOM0 });
          plug.push({ type: 'vrdma', devid });
          devid++;
        }
      }
      const domain = host.createDomain({
        name: g.name,
        domid: i + 1,
        program: g.program,
        // A guest may name peers outside this host (proxy ids of guests on other hosts: hostd/CmRelay.ts).
        args: {
          ...(g.args ?? {}),
          self: g.name,
          peers: { ...((g.args?.peers as Record<string, number>) ?? {}), ...peers },
        },
        memoryBytes: (g.memoryMiB ?? 64) << 20,
        pci,
        attachments,
      });
      return { spec: g, domain, plug };
    });
    for (const g of guests) {
      for (const p of g.plug) {
        await host.addDevice({ type: p.type, devid: p.devid, frontDomid: g.domain.domid, backDomid: dom0.domid });
      }
    }
    const results = await withTimeout(
      Promise.all(
        guests.map((g) =>
          g.domain.result.catch((err: Error) => {
            err.message = `guest '${g.spec.name}' failed: ${err.message}`;
            throw err;
          }),
        ),
      ),
      opts.timeoutMs ?? 600_000,
    );
    const backend = await withTimeout(host.shutdownDomain(dom0.domid), 30_000);
    // Every domain has returned: its record holds its final counts (records are zeroed only
    // when a domain id is opened again).
    const events = [dom0, ...guests.map((g) => g.domain)].map((d) => domainEvents(host, d.domid));
    const elapsedMs = performance.now() - t0;
    const counters = { nics: host.devices.metrics(), nvmes: host.devices.nvmeMetrics() };
    const backingFiles = Object.fromEntries(host.devices.nvmeNames().map((n) => [n, host.devices.backingFile(n)]));
    // Every domain has finished: stopping the host now (again in `finally`, a no-op) lets the
    // device thread report what it spent.
    await host.shutdown();
    const out: Record<string, DomainOutcome> = {};
    const threads: DeviceThreadOutcome[] = [];
    const engine = host.engineThread?.report;
    if (engine !== undefined) threads.push({ name: 'device-engine', ...engine });
    for (const [i, g] of guests.entries()) {
      out[g.spec.name] = {
        ...outcome(g.domain.domid, results[i], g.domain.console, await g.domain.screen()),
        events: events[i + 1],
      };
      for (const t of results[i].threads ?? []) threads.push(t);
    }
    return {
      guests: out,
      backend: { ...outcome(dom0.domid, backend, dom0.console, await dom0.screen()), events: events[0] },
      counters,
      backingFiles,
      elapsedMs,
      deviceEngine,
      wire: wire.name,
      deviceThreads: threads.length > 0 ? threads : undefined,
    };
  } finally {
    await host.shutdown();
  }
}

function domainEvents(host: Host, domid: number): DomainEvents {
  const c = host.monitor.domainCounters(domid);
  return {
    notifies: c[DomainCounter.NOTIFIES],
    grantMaps: c[DomainCounter.GRANT_MAPS],
    grantCopies: c[DomainCounter.GRANT_COPIES],
  };
}

function outcome(domid: number, r: DomainResult, console: readonly string[], screen: readonly string[]): DomainOutcome {
  const o = { domid, value: r.value, cpuNs: r.cpuNs, console, screen };
  return r.stagesNs === undefined ? o : { ...o, stagesNs: r.stagesNs };
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`scenario did not finish within ${ms} ms`), { code: 'PV_ERR_TIMEOUT' })),
      ms,
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
