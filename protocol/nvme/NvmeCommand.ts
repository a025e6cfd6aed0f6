/**
 * NVMe queue entries, opcodes and status codes (NVM Express Base Specification 1.4, §4.2–4.6),
 * shared by the controller model and the native driver. Entries live in driver memory and are
 * read and written as little-endian 32-bit words (Int32Array indices below).
 *
 * Submission queue entry, 64 bytes (§4.2, Figure 104):
 * ```
 * word  bytes   field   bits
 * 0     0-3     CDW0    7:0 OPC (opcode) · 9:8 FUSE (must be 0) · 15:14 PSDT (0 = PRPs) · 31:16 CID
 * 1     4-7     NSID    namespace id (1; 0xFFFFFFFF = all, FLUSH only)
 * 2-3   8-15    CDW2-3  reserved, ignored
 * 4-5   16-23   MPTR    metadata pointer, ignored (no metadata)
 * 6-7   24-31   PRP1    data pointer 1: lo, hi
 * 8-9   32-39   PRP2    data pointer 2 or PRP list pointer: lo, hi
 * 10-15 40-63   CDW10-15 command specific (READ/WRITE: 10-11 SLBA lo/hi, 12 bits 15:0 NLB − 1)
 * ```
 * Completion queue entry, 16 bytes (§4.6, Figure 124):
 * ```
 * word  bytes   field   bits
 * 0     0-3     DW0     command specific result (Set Features: queues allocated)
 * 1     4-7     DW1     reserved (0)
 * 2     8-11    DW2     15:0 SQHD (SQ head after this command) · 31:16 SQID
 * 3     12-15   DW3     15:0 CID · 16 P (phase tag) · 24:17 SC · 27:25 SCT · 31 DNR
 * ```
 * The controller writes words 0–2 first and word 3 last (with Atomics.store), so a driver that
 * sees the new phase in word 3 sees the whole entry.
 */

/** Bytes per submission entry (CC.IOSQES = 6). */
export const SQE_BYTES = 64;
/** Bytes per completion entry (CC.IOCQES = 4). */
export const CQE_BYTES = 16;
/** Int32 words per submission entry. */
export const SQE_WORDS = SQE_BYTES / 4;
/** Int32 words per completion entry. */
export const CQE_WORDS = CQE_BYTES / 4;

/** Word indices of a submission entry. */
export const enum SqeWord {
  CDW0 = 0,
  NSID = 1,
  CDW2 = 2,
  CDW3 = 3,
  MPTR_LO = 4,
  MPTR_HI = 5,
  PRP1_LO = 6,
  PRP1_HI = 7,
  PRP2_LO = 8,
  PRP2_HI = 9,
  CDW10 = 10,
  CDW11 = 11,
  CDW12 = 12,
  CDW13 = 13,
  CDW14 = 14,
  CDW15 = 15,
}

/** CDW0 fields (masks in place). */
export const enum Cdw0 {
  OPC_MASK = 0xff,
  /** Bits 9:8: fused operation (pvio supports none: must be 0). */
  FUSE_BITS = 0x300,
  /** Bits 15:14: PRP or SGL (pvio supports PRPs only: must be 0). */
  PSDT_BITS = 0xc000,
  CID_SHIFT = 16,
}

/** Word indices of a completion entry. */
export const enum CqeWord {
  DW0 = 0,
  DW1 = 1,
  /** SQHD 15:0, SQID 31:16. */
  DW2 = 2,
  /** CID 15:0, phase 16, status 31:17. */
  DW3 = 3,
}

/** DW3 fields: status = (dw3 >>> STATUS_SHIFT) & STATUS_MASK is `(SCT << 8) | SC`. */
export const enum CqeDw3 {
  CID_MASK = 0xffff,
  PHASE = 1 << 16,
  STATUS_SHIFT = 17,
  /** SC (8 bits) and SCT (3 bits). */
  STATUS_MASK = 0x7ff,
  /** Do Not Retry. */
  DNR = 1 << 31,
}

/** Admin command opcodes (§5, Figure 139). */
export const enum AdminOpcode {
  DELETE_IO_SQ = 0x00,
  CREATE_IO_SQ = 0x01,
  DELETE_IO_CQ = 0x04,
  CREATE_IO_CQ = 0x05,
  IDENTIFY = 0x06,
  SET_FEATURES = 0x09,
  GET_FEATURES = 0x0a,
}

/** NVM command opcodes (§6, NVM Command Set Figure 346). */
export const enum NvmOpcode {
  FLUSH = 0x00,
  WRITE = 0x01,
  READ = 0x02,
}

/**
 * Status values as `(SCT << 8) | SC` (§4.6.1.2). SCT 0 = generic, 1 = command specific,
 * 2 = media and data integrity errors.
 */
export const enum NvmeStatus {
  SUCCESS = 0x000,
  INVALID_OPCODE = 0x001,
  INVALID_FIELD = 0x002,
  DATA_TRANSFER_ERROR = 0x004,
  INTERNAL_ERROR = 0x006,
  INVALID_NAMESPACE = 0x00b,
  PRP_OFFSET_INVALID = 0x013,
  LBA_OUT_OF_RANGE = 0x080,
  /** Create I/O SQ names a CQ that does not exist. */
  COMPLETION_QUEUE_INVALID = 0x100,
  INVALID_QUEUE_ID = 0x101,
  INVALID_QUEUE_SIZE = 0x102,
  /** Delete I/O CQ while an SQ still posts to it. */
  INVALID_QUEUE_DELETION = 0x10c,
  WRITE_FAULT = 0x280,
  UNRECOVERED_READ_ERROR = 0x281,
}

/** Human-readable name of a status, for error messages. */
export function nvmeStatusName(status: number): string {
  switch (status) {
    case NvmeStatus.SUCCESS:
      return 'Success';
    case NvmeStatus.INVALID_OPCODE:
      return 'Invalid Command Opcode';
    case NvmeStatus.INVALID_FIELD:
      return 'Invalid Field in Command';
    case NvmeStatus.DATA_TRANSFER_ERROR:
      return 'Data Transfer Error';
    case NvmeStatus.INTERNAL_ERROR:
      return 'Internal Error';
    case NvmeStatus.INVALID_NAMESPACE:
      return 'Invalid Namespace or Format';
    case NvmeStatus.PRP_OFFSET_INVALID:
      return 'PRP Offset Invalid';
    case NvmeStatus.LBA_OUT_OF_RANGE:
      return 'LBA Out of Range';
    case NvmeStatus.COMPLETION_QUEUE_INVALID:
      return 'Completion Queue Invalid';
    case NvmeStatus.INVALID_QUEUE_ID:
      return 'Invalid Queue Identifier';
    case NvmeStatus.INVALID_QUEUE_SIZE:
      return 'Invalid Queue Size';
    case NvmeStatus.INVALID_QUEUE_DELETION:
      return 'Invalid Queue Deletion';
    case NvmeStatus.WRITE_FAULT:
      return 'Write Fault';
    case NvmeStatus.UNRECOVERED_READ_ERROR:
      return 'Unrecovered Read Error';
    default:
      return `status 0x${status.toString(16).padStart(3, '0')}`;
  }
}

/**
 * Create I/O CQ / SQ: CDW10 = QID 15:0 | QSIZE 31:16 (entries − 1); CDW11 = PC bit 0 and, for
 * an SQ, CQID 31:16. Both upper fields sit at HIGH_SHIFT.
 */
export const enum QueueCdw {
  QID_MASK = 0xffff,
  HIGH_SHIFT = 16,
  PC = 1,
}

/** Identify CNS values (CDW10 7:0). */
export const enum IdentifyCns {
  NAMESPACE = 0x00,
  CONTROLLER = 0x01,
  ACTIVE_NS_LIST = 0x02,
}

/** Bytes of an Identify data structure. */
export const IDENTIFY_BYTES = 4096;

/**
 * Byte offsets in the Identify Controller data structure (§5.15.2.2, Figure 247), as pvio fills
 * them: VID u16, SN 20 ASCII, MN 40 ASCII, FR 8 ASCII, MDTS u8 (max transfer = 2^MDTS pages),
 * CNTLID u16, VER u32, SQES u8 (0x66), CQES u8 (0x44), MAXCMD u16, NN u32 (namespaces),
 * VWC u8 (bit 0: volatile write cache present, so FLUSH matters).
 */
export const enum IdCtrl {
  VID = 0,
  SN = 4,
  SN_LEN = 20,
  MN = 24,
  MN_LEN = 40,
  FR = 64,
  FR_LEN = 8,
  MDTS = 77,
  CNTLID = 78,
  VER = 80,
  SQES = 512,
  CQES = 513,
  MAXCMD = 514,
  NN = 516,
  VWC = 525,
}

/**
 * Byte offsets in the Identify Namespace data structure (NVM Command Set, Figure 245): NSZE,
 * NCAP, NUSE u64 (in LBAs), NLBAF u8 (formats − 1), FLBAS u8 (format in use), LBAF0 u32 at 128
 * with LBADS (log2 of the LBA size) in bits 23:16.
 */
export const enum IdNs {
  NSZE = 0,
  NCAP = 8,
  NUSE = 16,
  NLBAF = 25,
  FLBAS = 26,
  LBAF0 = 128,
}

/** LBADS (log2 of the LBA data size) sits in bits 23:16 of an LBA format entry. */
export const LBAF_LBADS_SHIFT = 16;

/** Feature identifiers (CDW10 7:0 of Set/Get Features). */
export const enum FeatureId {
  /** CDW11 and DW0: NSQR/NSQA 15:0, NCQR/NCQA 31:16, all 0-based. */
  NUMBER_OF_QUEUES = 0x07,
}

/** The one namespace pvio's controller exposes. */
export const NVME_NSID = 1;
/** NSID meaning "every namespace" (FLUSH). */
export const NSID_ALL = 0xffffffff;
/** log2 of the LBA size: 512-byte logical blocks. */
export const LBA_SHIFT = 9;
/** Bytes per logical block. */
export const LBA_BYTES = 1 << LBA_SHIFT;
/** Largest NLB of one READ/WRITE (NLB is a 16-bit 0-based field). */
export const MAX_NLB = 0x10000;

/**
 * Writes a submission entry (every word; reserved ones zero). `prp1`/`prp2` are device
 * addresses below 2^53, split into lo/hi.
 */
export function encodeSqe(
  out: Int32Array,
  at: number,
  opcode: number,
  cid: number,
  nsid: number,
  prp1: number,
  prp2: number,
  cdw10: number,
  cdw11 = 0,
  cdw12 = 0,
): void {
  out[at + SqeWord.CDW0] = (opcode & Cdw0.OPC_MASK) | (cid << Cdw0.CID_SHIFT);
  out[at + SqeWord.NSID] = nsid | 0;
  out[at + SqeWord.CDW2] = 0;
  out[at + SqeWord.CDW3] = 0;
  out[at + SqeWord.MPTR_LO] = 0;
  out[at + SqeWord.MPTR_HI] = 0;
  out[at + SqeWord.PRP1_LO] = (prp1 % 0x1_0000_0000) | 0;
  out[at + SqeWord.PRP1_HI] = Math.floor(prp1 / 0x1_0000_0000) | 0;
  out[at + SqeWord.PRP2_LO] = (prp2 % 0x1_0000_0000) | 0;
  out[at + SqeWord.PRP2_HI] = Math.floor(prp2 / 0x1_0000_0000) | 0;
  out[at + SqeWord.CDW10] = cdw10 | 0;
  out[at + SqeWord.CDW11] = cdw11 | 0;
  out[at + SqeWord.CDW12] = cdw12 | 0;
  out[at + SqeWord.CDW13] = 0;
  out[at + SqeWord.CDW14] = 0;
  out[at + SqeWord.CDW15] = 0;
}
