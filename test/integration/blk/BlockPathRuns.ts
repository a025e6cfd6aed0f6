/**
 * Runs BlockPathsGuest once over a given backing file through one of six paths, and returns what
 * every conformance step checks in the same shape, whichever path ran:
 *
 *  - local (`paravirt`, `passthrough`, `native`): a one-host scenario whose nvme0 is the file;
 *  - lent (`lent-native`, `lent-passthrough`, `lent-paravirt`): a two-host cluster where A's nvme0
 *    is the file, A lends it and B borrows it as `nvme0@A`; the guest runs in a domain of B that
 *    owns nvme0@A (IOMMU bypass / translate), or, for paravirt, B's dom0 owns it (translate) and
 *    serves the guest a vbd from it with the unchanged driver-domain program — the same wiring as
 *    bench/blk/LentBlkJob.ts, with this test's guest program in place of the bench's.
 *
 * Each run is a fresh host (or cluster) over the same file, as a disk image outlives the machines
 * that used it: whatever one run reads was put there by another path's run.
 */

import { Cluster } from '../../../hypervisor-sim/cluster/Cluster.js';
import type { LentCountersSnapshot } from '../../../hypervisor-sim/cluster/LentStats.js';
import { runScenario } from '../../../hypervisor-sim/scenario/Scenario.js';
import type { DeviceAttachment, Transport } from '../../../protocol/Pci.js';
import { DOM0 } from '../../../protocol/Types.js';
import type { PathsReport, Region } from './programs/BlockPathsGuest.js';

const GUEST = new URL('./programs/BlockPathsGuest.js', import.meta.url);
const DRIVER_DOMAIN = new URL('../../../backend/DriverDomainProgram.js', import.meta.url);

export const LOCAL_PATHS = ['paravirt', 'passthrough', 'native'] as const;
export const LENT_PATHS = ['lent-native', 'lent-passthrough', 'lent-paravirt'] as const;
/** The six ways a guest reaches the SSD. */
export type BlockPath = (typeof LOCAL_PATHS)[number] | (typeof LENT_PATHS)[number];

/** One step: the regions earlier steps wrote (read first), then this step's own write. */
export interface PathStep {
  readonly path: BlockPath;
  readonly expect: readonly Region[];
  readonly write: Region;
}

/** What a step produced. */
export interface PathRun {
  readonly guest: PathsReport;
  /** The SSD's own counters (on A for a lent path: the controller is A's, whoever drives it). */
  readonly nvme: Readonly<Record<string, number>>;
  /** The backing file the SSD used. */
  readonly backingFile: string;
  /** The driver domain's report (paravirt paths), `undefined` otherwise. */
  readonly backend: Record<string, unknown> | undefined;
  /** The lease record at the end (lent paths), `undefined` otherwise. */
  readonly lease: LentCountersSnapshot | undefined;
}

/** The transport the guest's `openBlock` must report on `path`. */
export function transportOf(path: BlockPath): Transport {
  return path.startsWith('lent-') ? (path.slice('lent-'.length) as Transport) : (path as Transport);
}

async function runLocal(file: string, sizeBytes: number, s: PathStep, t: Transport): Promise<PathRun> {
  const r = await runScenario({
    host: { nics: 0, nvmes: [{ sizeBytes, backingFile: file }] },
    guests: [
      {
        name: 'g',
        program: GUEST,
        memoryMiB: 16,
        args: { expect: s.expect, write: s.write },
        devices: [{ device: 'nvme0', transport: t }],
      },
    ],
  });
  return {
    guest: r.guests.g.value as PathsReport,
    nvme: r.counters.nvmes.nvme0,
    backingFile: r.backingFiles.nvme0,
    backend: r.backend.value as Record<string, unknown> | undefined,
    lease: undefined,
  };
}

async function runLent(file: string, sizeBytes: number, s: PathStep, t: Transport): Promise<PathRun> {
  const cluster = new Cluster({
    hosts: [{ name: 'A', nvmes: [{ name: 'nvme0', sizeBytes, backingFile: file }] }, { name: 'B' }],
    profile: 'ideal',
  });
  try {
    await cluster.lend('A', 'nvme0');
    const handle = await cluster.borrow('nvme0@A', 'B');
    const b = cluster.host('B');
    const args = { expect: s.expect, write: s.write };
    let guest: PathsReport;
    let backend: Record<string, unknown> | undefined;
    if (t === 'paravirt') {
      const dom0 = b.createDomain({
        name: 'dom0',
        domid: DOM0,
        program: DRIVER_DOMAIN,
        memoryBytes: 256 << 20,
        pci: [{ device: 'nvme0@A', iommu: 'translate' }],
        args: { vbds: { '1/0': 'nvme0@A' } },
      });
      const vbd: DeviceAttachment = {
        device: 'nvme0@A',
        kind: 'nvme',
        transport: 'paravirt',
        devid: 0,
        backendDomid: DOM0,
      };
      const g = b.createDomain({
        name: 'g',
        domid: 1,
        program: GUEST,
        memoryBytes: 16 << 20,
        attachments: [vbd],
        args,
      });
      await b.addDevice({ type: 'vbd', devid: 0, frontDomid: g.domid, backDomid: dom0.domid });
      guest = (await g.result).value as PathsReport;
      backend = (await b.shutdownDomain(dom0.domid)).value as Record<string, unknown>;
    } else {
      const g = b.createDomain({
        name: 'g',
        domid: 1,
        program: GUEST,
        memoryBytes: 16 << 20,
        pci: [{ device: 'nvme0@A', iommu: t === 'native' ? 'bypass' : 'translate' }],
        args,
      });
      guest = (await g.result).value as PathsReport;
    }
    const a = cluster.host('A').devices;
    return {
      guest,
      nvme: a.nvmeMetrics().nvme0,
      backingFile: a.backingFile('nvme0'),
      backend,
      lease: handle.stats.snapshot(),
    };
  } finally {
    await cluster.shutdown();
  }
}

/** Runs one step over `file` (an SSD of `sizeBytes`). */
export function runPathStep(file: string, sizeBytes: number, s: PathStep): Promise<PathRun> {
  const t = transportOf(s.path);
  return s.path.startsWith('lent-') ? runLent(file, sizeBytes, s, t) : runLocal(file, sizeBytes, s, t);
}
