/**
 * The fio-like job on a LENT SSD (`--placement lent`): a two-host cluster (hypervisor-sim/cluster)
 * where host A lends nvme0 and host B borrows it as `nvme0@A`; the same guest program as every
 * local job (bench/programs/BlkBenchGuest.ts) runs in a domain of B through `mode`:
 *
 *  - `native`: the domain owns nvme0@A with the IOMMU in bypass (the unchanged NvmeDriver; BAR
 *    through the NTB BAR window, DMA through the lender's DMA window into B);
 *  - `passthrough`: the same, IOMMU translating (guest → IOMMU → NTB → device);
 *  - `paravirt`: B's dom0 owns nvme0@A (translate) and serves the guest a vbd from it with the
 *    unchanged driver-domain program (blkback over the lent SSD, segment grants mapped at the
 *    addresses the device uses through the window).
 *
 * The fabric is timed by `profile` (`ideal` pays nothing; `pcie3-x8-ntb` pays each link and NTB
 * hop as real delay). The lease record's counters come back twice: for the whole run (bring-up and
 * prefill included) and for the timed phase alone (the guest copies the record's words at its
 * start and end), with the timed figures per I/O — counts, never times, except the modelled ns.
 */

import { Cluster } from '../../hypervisor-sim/cluster/Cluster.js';
import { LENT_STATS_BYTES, type LentCountersSnapshot, LentStats } from '../../hypervisor-sim/cluster/LentStats.js';
import type { DomainResult } from '../../hypervisor-sim/domain/Domain.js';
import type { FabricProfileName } from '../../hypervisor-sim/pcie/Profiles.js';
import { pvError } from '../../protocol/errors.js';
import type { DeviceAttachment } from '../../protocol/Pci.js';
import { DOM0 } from '../../protocol/Types.js';
import type { BlkBenchArgs, BlkBenchResult } from '../programs/BlkBenchGuest.js';

const PROGRAM = new URL('../programs/BlkBenchGuest.js', import.meta.url);
/** The driver domain that serves vbds (blkback over every SSD it owns). */
const DRIVER_DOMAIN = new URL('../../backend/DriverDomainProgram.js', import.meta.url);

/** The lender, the borrower and the name the lent SSD has on the borrower. */
export const LENDER = 'A';
export const BORROWER = 'B';
export const LENT_SSD = `nvme0@${LENDER}`;

/** What to run on the lent SSD. */
export interface LentBlkSpec {
  readonly mode: 'paravirt' | 'passthrough' | 'native';
  readonly args: BlkBenchArgs;
  readonly memoryMiB: number;
  readonly sizeBytes: number;
  readonly backingFile?: string;
  readonly profile: FabricProfileName;
  /** Backend polls before sleeping (paravirt). */
  readonly spinBudget?: number;
  /** Fail after this long (default 10 minutes). */
  readonly timeoutMs?: number;
}

/** What the lease's fabric did, as `--json` and compare cells report it. */
export interface LentBlkCounters {
  /** The SSD's name on the borrower (`nvme0@A`). */
  readonly device: string;
  readonly lender: string;
  readonly borrower: string;
  readonly profile: FabricProfileName;
  /** The whole run: driver bring-up, prefill, warm-up and the timed I/Os. */
  readonly run: LentCountersSnapshot;
  /** The timed I/Os alone. */
  readonly timed: LentCountersSnapshot;
  /** `timed` per timed I/O: NTB crossings (MMIO + DMA), modelled fabric ns, DMA bytes. */
  readonly perIo: { readonly ntbCrossings: number; readonly fabricNs: number; readonly dmaBytes: number };
}

/** The raw outcome (BlkJob.ts turns it into fio's figures). */
export interface LentBlkRaw {
  readonly result: BlkBenchResult;
  readonly guestCpuNs: number;
  /** B's dom0 (paravirt: its blkback work; 0 when no driver domain runs). */
  readonly dom0CpuNs: number;
  readonly elapsedMs: number;
  readonly lent: LentBlkCounters;
}

/** The counters of a record given as its 32-bit words (a guest's copy). */
export function countersOfWords(words: readonly number[]): LentCountersSnapshot {
  if (words.length * 4 !== LENT_STATS_BYTES) {
    throw pvError('PV_ERR_INVALID_ARG', `a lease record has ${LENT_STATS_BYTES / 4} words, got ${words.length}`);
  }
  const buf = new SharedArrayBuffer(LENT_STATS_BYTES);
  new Int32Array(buf).set(words);
  return new LentStats(buf).snapshot();
}

/**
 * `end − start`, field by field: every numeric counter of the record (whatever the record holds),
 * a negative difference being a 32-bit counter that wrapped (the 64-bit ones do not, in practice).
 */
export function counterDelta(start: LentCountersSnapshot, end: LentCountersSnapshot): LentCountersSnapshot {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(end)) {
    const s = (start as unknown as Record<string, unknown>)[k];
    out[k] = typeof v === 'number' && typeof s === 'number' ? (v - s < 0 ? v - s + 2 ** 32 : v - s) : v;
  }
  return out as unknown as LentCountersSnapshot;
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(pvError('PV_ERR_TIMEOUT', `lent block job did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the guest on B against nvme0@A (see the file comment). */
export async function runLentBlk(spec: LentBlkSpec): Promise<LentBlkRaw> {
  const t0 = performance.now();
  const cluster = new Cluster({
    hosts: [
      { name: LENDER, nvmes: [{ name: 'nvme0', sizeBytes: spec.sizeBytes, backingFile: spec.backingFile }] },
      { name: BORROWER },
    ],
    profile: spec.profile,
  });
  try {
    await cluster.lend(LENDER, 'nvme0');
    const handle = await cluster.borrow(LENT_SSD, BORROWER);
    const b = cluster.host(BORROWER);
    const args = { ...spec.args, probe: handle.stats.buffer } as unknown as Record<string, unknown>;
    const memoryBytes = spec.memoryMiB << 20;
    let guest: DomainResult;
    let dom0CpuNs = 0;
    if (spec.mode === 'paravirt') {
      // B's dom0 owns the lent SSD and serves the guest's vbd 0 from it.
      const dom0 = b.createDomain({
        name: 'dom0',
        domid: DOM0,
        program: DRIVER_DOMAIN,
        memoryBytes: 256 << 20,
        pci: [{ device: LENT_SSD, iommu: 'translate' }],
        args: { spinBudget: spec.spinBudget, vbds: { '1/0': LENT_SSD } },
      });
      const vbd: DeviceAttachment = {
        device: LENT_SSD,
        kind: 'nvme',
        transport: 'paravirt',
        devid: 0,
        backendDomid: DOM0,
      };
      const fio = b.createDomain({ name: 'fio', domid: 1, program: PROGRAM, memoryBytes, attachments: [vbd], args });
      await b.addDevice({ type: 'vbd', devid: 0, frontDomid: fio.domid, backDomid: dom0.domid });
      guest = await withTimeout(fio.result, spec.timeoutMs ?? 600_000);
      dom0CpuNs = (await withTimeout(b.shutdownDomain(dom0.domid), 30_000)).cpuNs;
    } else {
      const fio = b.createDomain({
        name: 'fio',
        domid: 1,
        program: PROGRAM,
        memoryBytes,
        pci: [{ device: LENT_SSD, iommu: spec.mode === 'native' ? 'bypass' : 'translate' }],
        args,
      });
      guest = await withTimeout(fio.result, spec.timeoutMs ?? 600_000);
    }
    const result = guest.value as BlkBenchResult;
    const run = handle.stats.snapshot();
    if (result.probeWords === undefined) throw pvError('PV_ERR_CONFIG', 'the block guest returned no probe words');
    const timed = counterDelta(countersOfWords(result.probeWords.start), countersOfWords(result.probeWords.end));
    const ios = Math.max(result.ios, 1);
    const lent: LentBlkCounters = {
      device: LENT_SSD,
      lender: LENDER,
      borrower: BORROWER,
      profile: spec.profile,
      run,
      timed,
      perIo: {
        ntbCrossings: (timed.mmioNtbCrossings + timed.dmaNtbCrossings) / ios,
        fabricNs: timed.fabricNs / ios,
        dmaBytes: timed.dmaBytes / ios,
      },
    };
    // The probe words are an instrument, not a result: the caller gets them as counters.
    const { probeWords: _, ...plain } = result;
    return { result: plain, guestCpuNs: guest.cpuNs, dom0CpuNs, elapsedMs: performance.now() - t0, lent };
  } finally {
    await cluster.shutdown();
  }
}
