/**
 * Device-internal control memory of the accelerator (the `ctl` SharedArrayBuffer): what a real
 * device keeps in its own SRAM besides the memory it exposes — the engine lock and the counters.
 * It is shared so that any thread that rings a doorbell runs the engines inline (like QEMU
 * emulating an MMIO exit) and every thread sees the same counters.
 *
 * Who may write: LOCK is a futex mutex (grant/EntryLock.ts); DOORBELLS is touched only through
 * Atomics; metrics are Float64 written under the lock and read without it (a snapshot).
 *
 * Layout (bytes):
 * ```
 * offset  size   field        writer              reader            rule
 * 0       4      LOCK         every engine        every engine      atomic (mutex)
 * 4       4      DOORBELLS    doorbell writers    metrics           atomic
 * 8       56     reserved     -                   -                 zero
 * 64      8·16   metrics[16]  engines (Float64)   metrics snapshot  lock
 * ```
 * Total ACCEL_CTL_BYTES = 192.
 */

/** Header words (Int32 indices). */
export const enum AccelCtlWord {
  LOCK = 0,
  DOORBELLS = 1,
  HEADER = 16,
}

/** Float64 index of each counter (the block starts at byte 64). */
export const enum AccelMetric {
  /** DMA transfers finished (any status). */
  DMA_TRANSFERS = 0,
  /** Bytes moved host → device. */
  BYTES_TO_DEVICE = 1,
  /** Bytes moved device → host. */
  BYTES_FROM_DEVICE = 2,
  /** Host-side ranges the IOMMU refused. */
  DMA_FAULTS = 3,
  /** Kernel launches finished (any status). */
  KERNELS = 4,
  CHECKSUMS = 5,
  VECTOR_ADDS = 6,
  MATMULS = 7,
  /** DMA transfers and launches that completed with a status other than OK. */
  ERRORS = 8,
  /** RESET writes and function-level resets. */
  RESETS = 9,
  COUNT = 16,
}

/** Names of the counters, in slot order (AccelDevice.metrics). */
export const ACCEL_METRIC_NAMES = [
  'dmaTransfers',
  'bytesToDevice',
  'bytesFromDevice',
  'dmaFaults',
  'kernels',
  'checksums',
  'vectorAdds',
  'matmuls',
  'errors',
  'resets',
] as const;

/** Byte offset of the Float64 metrics block. */
export const ACCEL_METRICS_BYTE_OFFSET = AccelCtlWord.HEADER * 4;
/** Bytes of the `ctl` buffer. */
export const ACCEL_CTL_BYTES = ACCEL_METRICS_BYTE_OFFSET + AccelMetric.COUNT * 8;
