/**
 * Device-internal memory of the NVMe controller (the `dev` SharedArrayBuffer): what a real
 * controller keeps in its own SRAM — the lock, the per-queue contexts and the counters. It is
 * shared so that any thread that rings a doorbell can run the controller inline (like QEMU
 * emulating an MMIO exit) and every thread sees the same queues.
 *
 * Who may write: every "lock" field is written only while holding LOCK (a futex mutex,
 * grant/EntryLock.ts), whose seq-cst CAS/exchange also orders it. "atomic" fields are touched
 * outside the lock only through Atomics. Metrics are Float64 written under the lock and read
 * without it (a snapshot), so reading them never disturbs the data path.
 *
 * Layout (bytes; Q = maxIoQueues, queue ids 0 … Q, 0 = admin):
 * ```
 * offset        size       field        writer                  reader                 rule
 * 0             4          LOCK         every engine            every engine           atomic (mutex)
 * 4             4          DOORBELLS    doorbell writers        metrics                atomic
 * 8             4          NSQA         SET_FEATURES, reset     CREATE_IO_SQ           lock (I/O SQs allowed)
 * 12            4          NCQA         SET_FEATURES, reset     CREATE_IO_CQ           lock (I/O CQs allowed)
 * 16            48         reserved     -                       -                      zero
 * 64            8·16       metrics[16]  engine (Float64)        metrics snapshot       lock
 * 192           64·(Q+1)   queues[Q+1]  admin cmds, engine      engine                 lock
 * ```
 * Queue entry `qid` (16 words = 64 bytes): an SQ context (words 0–7) then a CQ context
 * (words 8–15), see SqCtx / CqCtx. Entry 0 is the admin pair, programmed from AQA/ASQ/ACQ when
 * CC.EN goes 0 → 1; the others by CREATE_IO_SQ / CREATE_IO_CQ.
 */

/** Header words (Int32 indices). */
export const enum NvmeDevWord {
  LOCK = 0,
  DOORBELLS = 1,
  NSQA = 2,
  NCQA = 3,
  HEADER = 16,
}

/** Float64 index of each counter (the block starts at byte 64). */
export const enum NvmeMetric {
  /** Commands completed (admin + I/O, any status). */
  COMMANDS = 0,
  ADMIN_COMMANDS = 1,
  READS = 2,
  WRITES = 3,
  FLUSHES = 4,
  BYTES_READ = 5,
  BYTES_WRITTEN = 6,
  /** Completions with a non-zero status. */
  ERRORS = 7,
  /** DMA ranges the IOMMU refused (data, PRP lists or queues). */
  DMA_FAULTS = 8,
  /** Doorbell writes dropped: unknown queue or a value beyond the queue size. */
  BAD_DOORBELLS = 9,
  /** fsync calls on the media (FLUSH and shutdown). */
  FSYNCS = 10,
  /** Controller resets (CC.EN 1 → 0 and function-level resets). */
  RESETS = 11,
  /** Times an SQ stopped because its CQ was full. */
  CQ_FULL_STALLS = 12,
  COUNT = 16,
}

/** Names of the counters, in slot order (NvmeDevice.metrics). */
export const NVME_METRIC_NAMES = [
  'commands',
  'adminCommands',
  'reads',
  'writes',
  'flushes',
  'bytesRead',
  'bytesWritten',
  'errors',
  'dmaFaults',
  'badDoorbells',
  'fsyncs',
  'resets',
  'cqFullStalls',
] as const;

/** Byte offset of the Float64 metrics block. */
export const NVME_METRICS_BYTE_OFFSET = NvmeDevWord.HEADER * 4;
/** Byte offset of the queue table. */
export const NVME_QUEUES_BYTE_OFFSET = NVME_METRICS_BYTE_OFFSET + NvmeMetric.COUNT * 8;

/**
 * SQ context, words 0–7 of a queue entry.
 * ```
 * word  field    note
 * 0     VALID    1 while the queue exists
 * 1     SIZE     entries (2 … MQES + 1)
 * 2-3   BASE     device address lo, hi (page aligned)
 * 4     HEAD     next entry the controller fetches
 * 5     TAIL     last value of the tail doorbell (< SIZE)
 * 6     CQID     the CQ its completions go to
 * 7     pad
 * ```
 */
export const enum SqCtx {
  VALID = 0,
  SIZE = 1,
  BASE_LO = 2,
  BASE_HI = 3,
  HEAD = 4,
  TAIL = 5,
  CQID = 6,
  WORDS = 8,
}

/**
 * CQ context, words 8–15 of a queue entry.
 * ```
 * word  field     note
 * 8     VALID     1 while the queue exists
 * 9     SIZE      entries
 * 10-11 BASE      device address lo, hi (page aligned)
 * 12    TAIL      next slot the controller writes
 * 13    HEAD      last value of the head doorbell (< SIZE)
 * 14    PHASE     phase tag of the current pass (1 on the first pass, flips at each wrap)
 * 15    SQ_USERS  SQs posting here (DELETE_IO_CQ refuses while > 0)
 * ```
 */
export const enum CqCtx {
  VALID = 8,
  SIZE = 9,
  BASE_LO = 10,
  BASE_HI = 11,
  TAIL = 12,
  HEAD = 13,
  PHASE = 14,
  SQ_USERS = 15,
}

/** Words per queue entry (SQ + CQ context). */
export const QUEUE_ENTRY_WORDS = 16;

/** Bytes of the `dev` buffer for queue ids 0 … maxIoQueues. */
export function nvmeDevBytes(maxIoQueues: number): number {
  return NVME_QUEUES_BYTE_OFFSET + (maxIoQueues + 1) * QUEUE_ENTRY_WORDS * 4;
}

/** Int32 index of queue `qid`'s entry (add SqCtx / CqCtx). */
export function queueBase(qid: number): number {
  return NVME_QUEUES_BYTE_OFFSET / 4 + qid * QUEUE_ENTRY_WORDS;
}

/** Joins a lo/hi word pair into a number; hi ≥ 2^21 (beyond 2^53) gives -1 (never a valid address). */
export function joinAddr(lo: number, hi: number): number {
  const h = hi >>> 0;
  if (h >= 0x20_0000) return -1;
  return h * 0x1_0000_0000 + (lo >>> 0);
}
