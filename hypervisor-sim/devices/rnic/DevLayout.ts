/**
 * Device-internal memory of the RDMA NIC (the `dev` SharedArrayBuffer): everything a real HCA
 * keeps in its own SRAM and context tables. It is shared so that ANY thread can run the device —
 * the thread that rings a doorbell (inline engine) or a dedicated device thread — and every one
 * of them sees the same tables.
 *
 * Who may write: every field marked "lock" is written only while holding the host's fabric lock
 * (RnicFabric), which is also what orders it (the lock's CAS/exchange are seq-cst). Fields marked
 * "atomic" are touched outside the lock and only through `Atomics`.
 *
 * Layout (bytes; P = maxQp PDs, M = maxMr, C = maxCq, Q = maxQp, B = ⌈Q / 32⌉):
 * ```
 * offset              size      field          writer               reader
 * 0                   4         DB_SEQ         doorbell writers     engine (Atomics.wait)   atomic
 * 4                   4         DB_SLEEP       engine               doorbell writers        atomic
 * 8                   4         DOORBELLS      doorbell writers     metrics                 atomic
 * 12                  52        reserved       -                    -                       zero
 * 64                  64        metrics[8]     engine (Float64)     metrics                 lock
 * 128                 16·P      pd[P]          commands             commands, engine        lock
 * 128+16P             64·M      mr[M]          commands             engine                  lock
 * …+64M               32·C      cq[C]          commands, engine     engine                  lock
 * …+32C               128·Q     qp[Q]          commands, engine     engine, doorbells       lock (STATE, RNR_WAITERS atomic too)
 * …+128Q              4·B       pending[B]     doorbells, engine    engine                  atomic (one bit per QP)
 * ```
 * Entry 0 of every table is never used: handle 0 is invalid everywhere, so zeroed memory never
 * names a live object.
 */

/** Header words (Int32 indices). */
export const enum DevWord {
  /** Bumped by every dedicated-mode doorbell; the engine sleeps on it. */
  DB_SEQ = 0,
  /** Where the engine sleeps: EngineSleep. */
  DB_SLEEP = 1,
  /** Doorbell writes seen (u32, wraps). */
  DOORBELLS = 2,
  /** Header size in words. */
  HEADER = 16,
}

/** Values of DB_SLEEP: how a doorbell must wake the engine. */
export const enum EngineSleep {
  AWAKE = 0,
  /** Sleeping on this device's DB_SEQ. */
  ON_DEVICE = 1,
  /** Sleeping on the fabric's shared wake word (one engine serving several devices). */
  ON_FABRIC = 2,
}

/** Float64 index of each metrics counter (the metrics block starts at byte 64). */
export const enum MetricSlot {
  WRS = 0,
  BYTES = 1,
  CQES = 2,
  FAULTS = 3,
  RNR_RETRIES = 4,
  ERRORS = 5,
  FLUSHED = 6,
  COMMANDS = 7,
  COUNT = 8,
}

/** Byte offset of the Float64 metrics block. */
export const METRICS_BYTE_OFFSET = 64;
/** Byte offset of the PD table. */
export const TABLES_BYTE_OFFSET = METRICS_BYTE_OFFSET + MetricSlot.COUNT * 8;

/**
 * PD entry, 4 words.
 * ```
 * word  field   note
 * 0     VALID   1 while allocated
 * 1     USERS   MRs + QPs that name this PD (DESTROY_PD refuses while > 0)
 * 2-3   pad
 * ```
 */
export const enum PdCtx {
  VALID = 0,
  USERS = 1,
  STRIDE = 4,
}

/**
 * MR entry, 16 words. `key` survives destruction and changes on every registration of the
 * slot, so a stale lkey/rkey (same index, old key byte) never matches a new region.
 * ```
 * word  field     note
 * 0     VALID
 * 1     KEY       low byte of lkey/rkey
 * 2     PD
 * 3     ACCESS    Access bits
 * 4-5   VA        lo, hi (safe integer)
 * 6     LENGTH    bytes (u32)
 * 7-8   IOVA      lo, hi (safe integer)
 * 9-15  pad
 * ```
 */
export const enum MrCtx {
  VALID = 0,
  KEY = 1,
  PD = 2,
  ACCESS = 3,
  VA_LO = 4,
  VA_HI = 5,
  LENGTH = 6,
  IOVA_LO = 7,
  IOVA_HI = 8,
  STRIDE = 16,
}

/**
 * CQ context, 8 words. PROD is the device's private producer index (it never trusts the ring's
 * shared copy); EPOCH changes on create and destroy so per-thread cached ring views notice a
 * recycled cqn.
 * ```
 * word  field      note
 * 0     VALID
 * 1     EPOCH
 * 2     ENTRIES    power of two
 * 3-4   RING       iova lo, hi of the Cq.ts ring
 * 5     PROD       private producer index
 * 6     OVERFLOW   1 after a CQE found the ring full
 * 7     USERS      QP references (send + recv); DESTROY_CQ refuses while > 0
 * ```
 */
export const enum CqCtx {
  VALID = 0,
  EPOCH = 1,
  ENTRIES = 2,
  RING_LO = 3,
  RING_HI = 4,
  PROD = 5,
  OVERFLOW = 6,
  USERS = 7,
  STRIDE = 8,
}

/**
 * QP context, 32 words (one 128-byte line). Producer indices are not here: they are the
 * doorbell registers in BAR 0 (`sqDoorbell`/`rqDoorbell`), read with `Atomics.load`.
 * ```
 * word  field               note
 * 0     VALID
 * 1     EPOCH               changes on create and destroy
 * 2     STATE               QpState; Atomics.store (read by RQ doorbells without the lock)
 * 3     BUSY                1 while one thread runs this QP's send queue
 * 4     PD
 * 5     SEND_CQ
 * 6     RECV_CQ
 * 7     SQ_ENTRIES          power of two
 * 8     RQ_ENTRIES          power of two
 * 9-10  SQ                  iova lo, hi
 * 11-12 RQ                  iova lo, hi
 * 13    SQ_CONS             private consumer index
 * 14    RQ_CONS             private consumer index
 * 15    SQ_SIG_ALL          0/1
 * 16    MAX_INLINE
 * 17    MAX_SEND_SGE
 * 18    MAX_RECV_SGE
 * 19    DEST_QPN
 * 20    DEST_PORT
 * 21    RNR_RETRY           0-7
 * 22    MIN_RNR_TIMER       0-31, × RNR_TIMER_UNIT_US
 * 23    ACCESS              remote access the QP allows (qp_access_flags)
 * 24    RNR_WAITERS         senders sleeping on this QP's RQ doorbell; Atomics
 * 25    PATH_MTU
 * 26    TIMEOUT
 * 27    RETRY_CNT
 * 28    SQ_PSN
 * 29    RQ_PSN
 * 30    MAX_RD_ATOMIC
 * 31    MAX_DEST_RD_ATOMIC
 * ```
 */
export const enum QpCtx {
  VALID = 0,
  EPOCH = 1,
  STATE = 2,
  BUSY = 3,
  PD = 4,
  SEND_CQ = 5,
  RECV_CQ = 6,
  SQ_ENTRIES = 7,
  RQ_ENTRIES = 8,
  SQ_LO = 9,
  SQ_HI = 10,
  RQ_LO = 11,
  RQ_HI = 12,
  SQ_CONS = 13,
  RQ_CONS = 14,
  SQ_SIG_ALL = 15,
  MAX_INLINE = 16,
  MAX_SEND_SGE = 17,
  MAX_RECV_SGE = 18,
  DEST_QPN = 19,
  DEST_PORT = 20,
  RNR_RETRY = 21,
  MIN_RNR_TIMER = 22,
  ACCESS = 23,
  RNR_WAITERS = 24,
  PATH_MTU = 25,
  TIMEOUT = 26,
  RETRY_CNT = 27,
  SQ_PSN = 28,
  RQ_PSN = 29,
  MAX_RD_ATOMIC = 30,
  MAX_DEST_RD_ATOMIC = 31,
  STRIDE = 32,
}

/** Table sizes a layout is computed from. */
export interface DevSizes {
  readonly maxQp: number;
  readonly maxCq: number;
  readonly maxMr: number;
}

/** One table of the layout: where it starts and how it is cut. */
export interface DevTable {
  readonly name: string;
  /** First Int32 word. */
  readonly word: number;
  /** Words per entry. */
  readonly stride: number;
  readonly count: number;
}

/** Word positions of every table in a `dev` buffer of the given sizes (see the file comment). */
export class DevLayout {
  /** First word of pd[0]. */
  readonly pd: number;
  /** First word of mr[0]. */
  readonly mr: number;
  /** First word of cq[0]. */
  readonly cq: number;
  /** First word of qp[0]. */
  readonly qp: number;
  /** First word of the pending bitmap. */
  readonly pending: number;
  /** Words in the pending bitmap. */
  readonly pendingWords: number;
  /** Total bytes (a multiple of 8, for the Float64 metrics view). */
  readonly bytes: number;
  /** PDs (equal to maxQp: a QP needs a PD, so more PDs than QPs is never useful). */
  readonly maxPd: number;

  constructor(sizes: DevSizes) {
    this.maxPd = sizes.maxQp;
    this.pd = TABLES_BYTE_OFFSET / 4;
    this.mr = this.pd + this.maxPd * PdCtx.STRIDE;
    this.cq = this.mr + sizes.maxMr * MrCtx.STRIDE;
    this.qp = this.cq + sizes.maxCq * CqCtx.STRIDE;
    this.pending = this.qp + sizes.maxQp * QpCtx.STRIDE;
    this.pendingWords = Math.ceil(sizes.maxQp / 32);
    const words = this.pending + this.pendingWords;
    this.bytes = Math.ceil((words * 4) / 8) * 8;
  }

  /** Every table, in address order (for the layout test and diagnostics). */
  tables(sizes: DevSizes): DevTable[] {
    return [
      { name: 'header', word: 0, stride: DevWord.HEADER, count: 1 },
      { name: 'metrics', word: METRICS_BYTE_OFFSET / 4, stride: MetricSlot.COUNT * 2, count: 1 },
      { name: 'pd', word: this.pd, stride: PdCtx.STRIDE, count: this.maxPd },
      { name: 'mr', word: this.mr, stride: MrCtx.STRIDE, count: sizes.maxMr },
      { name: 'cq', word: this.cq, stride: CqCtx.STRIDE, count: sizes.maxCq },
      { name: 'qp', word: this.qp, stride: QpCtx.STRIDE, count: sizes.maxQp },
      { name: 'pending', word: this.pending, stride: 1, count: this.pendingWords },
    ];
  }

  /** First word of PD `pdn`. */
  pdBase(pdn: number): number {
    return this.pd + pdn * PdCtx.STRIDE;
  }

  /** First word of MR slot `index`. */
  mrBase(index: number): number {
    return this.mr + index * MrCtx.STRIDE;
  }

  /** First word of CQ `cqn`. */
  cqBase(cqn: number): number {
    return this.cq + cqn * CqCtx.STRIDE;
  }

  /** First word of QP `qpn`. */
  qpBase(qpn: number): number {
    return this.qp + qpn * QpCtx.STRIDE;
  }
}
