/**
 * The shapes a Cluster (Cluster.ts) is built from and hands out: host and cluster options,
 * lend/borrow options, the handle of a live borrow, and the records the cluster keeps per borrow.
 */

import type { AccelSpec } from '../devices/accel/HostAccels.js';
import type { Host, HostOptions } from '../domain/Host.js';
import type { NicSpec, NvmeSpec } from '../domain/HostDevices.js';
import type { DeviceRegistry, Lease, LeaseMode } from '../lending/Types.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import type { ApertureSpace, Placement } from './FabricPlan.js';
import type { LentDevices } from './LentDevices.js';
import type { LentStats } from './LentStats.js';

/** One host of the cluster. */
export interface ClusterHostSpec {
  readonly name: string;
  /** NICs (`portId` defaults to a cluster-unique one). */
  readonly nics?: readonly NicSpec[];
  /** NVMe SSDs (file-backed; lendable with kind 'nvme'). */
  readonly nvmes?: readonly NvmeSpec[];
  /** Accelerators (lendable with kind 'accel'; default device memory 64 MiB). */
  readonly accels?: readonly AccelSpec[];
  /** Bus-address space of the host in the fabric (default 1 GiB). */
  readonly ramBytes?: number;
  /**
   * Top of `ramBytes` reserved for exported segments (a multiple of 64 KiB; 0: none). Default
   * 16 MiB, or ramBytes / 16 when that is less. Domain memory plus IOMMU window must stay below it.
   */
  readonly segmentBytes?: number;
  /** Other host options (the engine is always inline). */
  readonly options?: Omit<HostOptions, 'name' | 'nics' | 'nvmes' | 'accels' | 'deviceEngine'>;
}

/** What a cluster is built from. */
export interface ClusterOptions {
  readonly hosts: readonly ClusterHostSpec[];
  /** NTB links; default: every pair of hosts. */
  readonly links?: readonly (readonly [string, string])[];
  /** Fabric timing profile (default `ideal`). */
  readonly profile?: FabricProfileName;
  /** Default: a new InMemoryRegistry. */
  readonly registry?: DeviceRegistry;
}

/** Options of `borrow`. */
export interface ClusterBorrowOptions {
  /** Bytes of the borrower's bus space the lender's DMA window covers (default: all of it). */
  readonly dmaWindowBytes?: number;
  /** 'exclusive' (default) or 'shared' (an NVMe lent shareable: one I/O queue pair, SharedNvme.ts). */
  readonly mode?: LeaseMode;
}

/** Options of `lend`. */
export interface ClusterLendOptions {
  /** NVMe only: several hosts may borrow it at once, each one I/O queue pair (SmartIO). */
  readonly shareable?: boolean;
}

/** A live borrow, as `borrow` returns it. */
export interface LentHandle {
  readonly lease: Lease;
  /** Name on the borrower (= registry id), e.g. `nic0@A`. */
  readonly name: string;
  readonly kind: LentKind;
  /** Shared NVMe lease: the I/O queue id the borrower uses (lease.queue + 1). */
  readonly qid?: number;
  readonly lender: string;
  readonly device: string;
  readonly borrower: string;
  /** The lease record (revocation and fabric counts). */
  readonly stats: LentStats;
  readonly barWindowBase: number;
  readonly dmaWindowBase: number;
  readonly dmaWindowBytes: number;
}

/** What can be lent. */
export type LentKind = 'rdma-nic' | 'nvme' | 'accel';

/** A live borrow with what the cluster keeps to tear it down. */
export interface Active extends LentHandle {
  /** Accelerator leases: the P2P permission table of the lease (NtbDmaResolver `peerAllow`). */
  readonly peerAllow?: SharedArrayBuffer;
  readonly slots: {
    readonly host: string;
    readonly slot: number;
    readonly space: ApertureSpace;
    readonly p: Placement;
  }[];
}

/** One host of the cluster with its lending state. */
export interface Member {
  readonly host: Host;
  readonly lending: LentDevices;
  readonly ramBytes: number;
}

/** Key of a live borrow: one per (device, borrower) — a host holds at most one lease on a device. */
export function activeKey(id: string, holder: string): string {
  return `${id}|${holder}`;
}
