/**
 * What a monitor (`pvio top`, `pvio console`, tests) sees of a running process: plain JSON-ready
 * objects, built on the main thread from the hosts' shared-memory counters (MonitorLayout.ts) —
 * never by messaging a domain, so looking does not disturb the data path. Counters are
 * cumulative; a viewer turns two snapshots into rates.
 */

/** The whole process: every live host. */
export interface MonitorSnapshot {
  /** Wall-clock time of the snapshot (ms since the epoch, fractional). */
  readonly t: number;
  readonly pid: number;
  /** The command line that runs (for the title bar). */
  readonly command: string;
  readonly hosts: readonly HostSnapshot[];
}

/** One simulated machine. */
export interface HostSnapshot {
  readonly name: string;
  readonly domains: readonly DomainSnapshot[];
  readonly rings: readonly RingSnapshot[];
  readonly devices: readonly DeviceSnapshot[];
}

/** One domain (a Worker thread). */
export interface DomainSnapshot {
  readonly domid: number;
  readonly name: string;
  /** 'running' | 'finished' | 'failed' | 'crashed' | 'destroyed'. */
  readonly state: string;
  /** CPU time of the domain thread so far (ns, /proc/<pid>/task/<tid>/schedstat); 0 if unknown. */
  readonly cpuNs: number;
  /** Grant operations this domain made as the grantee (a backend mapping or copying guest pages). */
  readonly grantMaps: number;
  readonly grantUnmaps: number;
  readonly grantCopies: number;
  readonly grantCopyBytes: number;
  /** Event-channel notifications this domain sent. */
  readonly notifies: number;
}

/** One end of one shared ring. */
export interface RingSnapshot {
  /** 'blkif' | 'vrdma-ctrl' | 'vrdma-data' | 'io' | 'virtio-ctrl' | 'virtio-data' … */
  readonly kind: string;
  /** The domain that writes this end's counters. */
  readonly owner: number;
  /** The domain at the other end. */
  readonly peer: number;
  readonly end: 'front' | 'back';
  /** Requests produced (front) or consumed (back). */
  readonly requests: number;
  /** Responses consumed (front) or produced (back). */
  readonly responses: number;
  /** Pushes that notified the peer, and pushes whose notify the peer's event index suppressed. */
  readonly notifies: number;
  readonly suppressed: number;
  /** Attempts to produce into a full ring. */
  readonly fullStalls: number;
  /** Non-empty batches consumed, and the requests in them (batch size = batchedItems / batches). */
  readonly batches: number;
  readonly batchedItems: number;
}

/** One device of a host. */
export interface DeviceSnapshot {
  readonly name: string;
  /** 'rdma-nic' | 'nvme' | 'accel'. */
  readonly kind: string;
  /** Owning domain, or -1 when unowned. */
  readonly owner: number;
  /** Work items executed (NIC WRs, NVMe commands, accelerator jobs). */
  readonly ops: number;
  /** Bytes moved by DMA. */
  readonly dmaBytes: number;
  readonly doorbells: number;
  readonly faults: number;
  /** Work rung and not yet taken by the device, now (NIC send WQEs, NVMe commands; 0 for others). */
  readonly queueDepth: number;
  /**
   * A borrowed device (Device Lending): PCIe hops its MMIO, DMA and peer-to-peer accesses took
   * through the fabric — NTB crossings plus link hops, from the lease record. 0 for local devices.
   */
  readonly fabricHops: number;
  /** Every other counter the device keeps, by name. */
  readonly extra: Readonly<Record<string, number>>;
}
