/**
 * Public types of the native NVMe driver.
 */

/** Options of `new NvmeDriver`. */
export interface NvmeDriverOptions {
  /** I/O queue pairs to create (qid 1 … n; fewer if the controller allocates fewer). Default 1. */
  readonly ioQueues?: number;
  /** Entries per I/O queue (outstanding commands per queue = entries − 1). Default 64. */
  readonly queueEntries?: number;
  /** Entries of the admin queues. Default 32. */
  readonly adminEntries?: number;
  /**
   * Largest transfer the driver issues, bytes (a multiple of 4 KiB; capped by the controller's
   * MDTS). PRP list pages are preallocated for it per command slot. Default 2 MiB.
   */
  readonly maxTransferBytes?: number;
  /** Polls of a completion word before sleeping (DESIGN §4). Default 1000. */
  readonly spinBudget?: number;
  /** How long a command may take before PV_ERR_TIMEOUT, ms. Default 10 000. */
  readonly timeoutMs?: number;
}

/** What Identify reported, and what the driver set up. */
export interface NvmeIdentity {
  /** Model number (Identify Controller MN), trimmed. */
  readonly model: string;
  /** Serial number (SN), trimmed. */
  readonly serial: string;
  /** Firmware revision (FR), trimmed. */
  readonly firmware: string;
  /** NVMe version (VS register). */
  readonly version: number;
  /** Bytes per logical block (from LBAF0.LBADS). */
  readonly lbaBytes: number;
  /** Namespace 1 size in logical blocks (NSZE). */
  readonly capacityBlocks: number;
  /** Largest transfer the driver will issue, bytes. */
  readonly maxTransferBytes: number;
  /** I/O queue pairs in use. */
  readonly ioQueues: number;
  /** Entries per I/O queue. */
  readonly queueEntries: number;
  /** True when the controller has a volatile write cache (FLUSH matters). */
  readonly volatileWriteCache: boolean;
}

/** One completion as the driver reaped it. */
export interface NvmeCompletion {
  /** Queue the command was submitted on. */
  readonly qid: number;
  /** Command identifier (the driver's tag). */
  readonly cid: number;
  /** `(SCT << 8) | SC`; 0 = success (protocol/nvme/NvmeCommand.ts NvmeStatus). */
  readonly status: number;
  /** Command-specific result (DW0). */
  readonly dw0: number;
  /** SQ head the controller reported. */
  readonly sqHead: number;
}

/** I/O operations of `submitIo`. */
export type NvmeIoOp = 'read' | 'write' | 'flush';
