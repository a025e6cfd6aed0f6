/**
 * The data model of one `pvio compare` run: what `results/<timestamp>/results.json` holds, what
 * the table, the plots and the Markdown report are rendered from. Plain JSON (no classes, no
 * Maps) so a cell's result crosses from its worker by structured clone and a later tool can
 * re-render a report from the file alone.
 */

/** The schema tag written in every results file; bump when a field changes meaning. */
import type { RegMrRow } from '../regmr/RegMrBench.js';
import type { Summary } from '../stats/Summary.js';

export const RESULTS_SCHEMA = 'pvio-compare/1';

/** The I/O paths compared (the perftest `--mode` values). */
export type CompareTransport =
  | 'native'
  | 'passthrough'
  | 'paravirt'
  | 'paravirt-copy'
  /** virtio-rdma: the vrdma verbs over virtio-mmio split virtqueues and guest-physical addresses. */
  | 'virtio'
  /** The same over packed virtqueues (VIRTIO_F_RING_PACKED). */
  | 'virtio-packed'
  | 'tcp'
  /** A device lent by another host over an NTB (Device Lending), owned natively on the borrower. */
  | 'lent'
  /** The same lent device passed through to a guest of the borrower (guest → IOMMU → NTB → device). */
  | 'lent-passthrough';

/**
 * The Device Lending transports: cells run in a two-host cluster, a NIC (bench/compare/LentCell.ts)
 * or an NVMe SSD (bench/blk/LentBlkJob.ts) of host A borrowed by host B.
 */
export const LENT_TRANSPORTS: readonly CompareTransport[] = ['lent', 'lent-passthrough'];
/**
 * The operation a cell times: an RDMA op (perftest), or a block job over nvme0 (fio) —
 * `blk-randread` (4 KiB random reads at iodepth 1: completion latency in `lat`) and
 * `blk-seqread` (128 KiB sequential reads at iodepth 16: bandwidth in `bw`, iodepth as
 * `txDepth`, IOPS / 10^6 as `mpps`). Block cells run over paravirt, passthrough and native, and
 * over an SSD lent by another host (lent, lent-passthrough).
 */
export type CompareOp = 'write' | 'read' | 'send' | BlockCompareOp;
/** The block ops of `CompareOp`. */
export type BlockCompareOp = 'blk-randread' | 'blk-seqread';

/** True for a block cell's op. */
export function isBlockOp(op: CompareOp): op is BlockCompareOp {
  return op === 'blk-randread' || op === 'blk-seqread';
}
/** Latency (ping-pong / read round trip) or bandwidth (streaming with tx depth). */
export type CompareKind = 'lat' | 'bw';

/**
 * Stages of the per-stage breakdown, in the order the seed paper's CPU-time figures stack them.
 * `frontend` and `backend` are the rest of the guest and driver-domain CPU time once the
 * instrumented stages are taken out.
 */
export const STAGES = ['frontend', 'ring+notify', 'backend', 'grant map/copy', 'device', 'fabric'] as const;
/** One stage name. */
export type StageName = (typeof STAGES)[number];

/** Which cell: transport × op × kind × message size. */
export interface CellKey {
  readonly transport: CompareTransport;
  readonly op: CompareOp;
  readonly kind: CompareKind;
  readonly size: number;
}

/** CPU time a domain (or the device engine thread) spent during a cell. */
export interface DomainCpu {
  /** `client`, `server`, `dom0` (driver domain) or `device` (dedicated engine thread). */
  readonly domain: string;
  /** Thread CPU time from /proc/thread-self/schedstat (or process.cpuUsage() off Linux). */
  readonly cpuNs: number;
  /** cpuNs divided by the messages the cell moved. */
  readonly nsPerMsg: number;
  /**
   * Hypervisor events over the whole run (setup and teardown included), for domains: event-channel
   * notifies sent, grant maps and grant copies made (Scenario.ts DomainEvents).
   */
  readonly events?: { readonly notifies: number; readonly grantMaps: number; readonly grantCopies: number };
}

/** A latency cell: perftest semantics (write/send = half round trip, read = full round trip). */
export interface LatencyResult {
  readonly iters: number;
  /** perftest's statistics of the one-way (or read round-trip) samples, µs. */
  readonly usec: Summary;
  /** perftest's t_typical (median after dropping the 2-sample tail), µs. */
  readonly tTypical: number;
}

/** A bandwidth cell. */
export interface BandwidthResult {
  readonly iters: number;
  readonly txDepth: number;
  /** Average bandwidth, MiB/s (2^20 bytes). */
  readonly avgMiBps: number;
  /** perftest's BW peak, MiB/s. */
  readonly peakMiBps: number;
  /** Messages per second / 10^6. */
  readonly mpps: number;
  readonly seconds: number;
}

/** What the NTB path of a lent device did during a cell (the lease record's counts). */
export interface LentFabricCounts {
  /** The lent device's name on the borrower (`nic0@A`, `nvme0@A`). */
  readonly device: string;
  /** Fabric timing profile the cell ran with. */
  readonly profile: string;
  /** What the counts cover: the timed I/Os alone (block cells) or the whole run (RDMA cells). */
  readonly scope: 'timed' | 'run';
  /** NTB crossings of MMIO and DMA. */
  readonly ntbCrossings: number;
  /** Modelled fabric time paid, ns. */
  readonly fabricNs: number;
  /** Bytes the device moved through the DMA window. */
  readonly dmaBytes: number;
  /** DMAs refused and MMIOs refused (0 in a healthy run). */
  readonly faults: number;
}

/** One measured cell. */
export interface CellResult extends CellKey {
  readonly lat?: LatencyResult;
  readonly bw?: BandwidthResult;
  /** Per-domain CPU time during the cell (the measuring run: instrumentation off). */
  readonly cpu: readonly DomainCpu[];
  /** Wall time of the cell's scenario, including domain start-up, ms. */
  readonly elapsedMs: number;
  /** Lent transports: what the NTB path did. */
  readonly lent?: LentFabricCounts;
  /** Set when the cell failed; the other fields are then absent or partial. */
  readonly error?: { readonly code: string; readonly message: string };
  /**
   * Final console screen of each domain that wrote one (by domain name). Not part of
   * results.json: writeReport saves them as `consoles/<cellId>/<domain>.txt`.
   */
  readonly consoles?: Readonly<Record<string, readonly string[]>>;
}

/** A cell's folder name under `consoles/`: `paravirt-write-lat-4096`. */
export function cellId(key: CellKey): string {
  return `${key.transport}-${key.op}-${key.kind}-${key.size}`;
}

/** Per-stage breakdown of one transport (from a separate instrumented run). */
export interface StageBreakdown {
  readonly transport: CompareTransport;
  readonly op: CompareOp;
  readonly kind: CompareKind;
  readonly size: number;
  readonly messages: number;
  /** Nanoseconds per message in each stage, summed over every thread of the run. */
  readonly nsPerMsg: Readonly<Record<StageName, number>>;
  /** Per-domain CPU time of the instrumented run. */
  readonly cpu: readonly DomainCpu[];
  readonly error?: { readonly code: string; readonly message: string };
}

/** Floors measured in the same run. */
export interface CompareFloors {
  /** Thread hand-off round trip, spinning, µs. */
  readonly handoffSpinRttUs: Summary;
  /** Thread hand-off round trip with Atomics.wait/notify, µs. */
  readonly handoffWaitRttUs: Summary;
  /** SharedArrayBuffer → SharedArrayBuffer copy bandwidth at 4 MiB, MiB/s. */
  readonly memcpyMiBps: number;
  /**
   * Raw SPSC ring rate, millions of 64 B messages per second (median of 3 runs): the main thread
   * producing and a Worker consuming through a 256-slot SharedArrayBuffer ring, both spinning,
   * batched publication of free-running u32 indices — no grants, no event channel, no xenbus
   * (bench/floor/Floor.ts `measureRing`). Absent in results written before issue 9.
   */
  readonly ringMps?: number;
}

/**
 * The scale cell (issue 9): N paravirt guests on ONE backend (one host, one NIC, one dom0), each
 * doing 4 KiB RDMA WRITEs at queue depth 1 over a QP looped back to itself (the fairness
 * benchmark's neighbour), their timed phases started together by a shared start gate; beside
 * the same program run alone on a fresh host (bench/compare/ScaleCell.ts).
 */
export interface ScaleCellResult {
  /** Guests run at once (16 in `pvio compare`). */
  readonly guests: number;
  /** Length of each timed phase, s. */
  readonly seconds: number;
  /** The one guest alone: its ops / its timed seconds. */
  readonly oneGuestOpsPerSec: number;
  /** Each of the N guests: its own ops / its own timed seconds, in guest order. */
  readonly perGuestOpsPerSec: readonly number[];
  /** Sum of `perGuestOpsPerSec`. */
  readonly aggregateOpsPerSec: number;
  /** `aggregateOpsPerSec / oneGuestOpsPerSec`: how much of one guest's rate N guests get together. */
  readonly aggregateOverOne: number;
  /** Jain's fairness index over `perGuestOpsPerSec`: (Σx)² / (n·Σx²), in (0, 1], 1 = all equal. */
  readonly jain: number;
}

/** Where and how the run happened. */
export interface CompareEnvironment {
  readonly cpuModel: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
  readonly pvioVersion: string;
  readonly fabric: string;
  readonly spinUs: number;
  readonly deviceEngine: 'inline' | 'dedicated';
  readonly concurrency: number;
  readonly quick: boolean;
}

/** Everything one `pvio compare` run produced. */
export interface CompareResults {
  readonly schema: typeof RESULTS_SCHEMA;
  readonly command: string;
  readonly startedAt: string;
  readonly durationS: number;
  readonly environment: CompareEnvironment;
  readonly floors: CompareFloors;
  readonly cells: readonly CellResult[];
  readonly breakdown: readonly StageBreakdown[];
  /** The scale cell; absent when the run had no paravirt RDMA WRITE (or was written before issue 9). */
  readonly scale?: ScaleCellResult;
  /**
   * Memory registration per transport and size (bench/regmr/RegMrBench.ts): the control path the
   * split designs differ in. Absent with `--no-reg-mr`, without an RDMA op, or in older files.
   */
  readonly regMr?: readonly RegMrRow[];
}

/** The cell of `results` matching a key, if it ran. */
export function findCell(results: CompareResults, key: CellKey): CellResult | undefined {
  return results.cells.find(
    (c) => c.transport === key.transport && c.op === key.op && c.kind === key.kind && c.size === key.size,
  );
}
