/**
 * Register map of pvio's NVMe controller (BAR 0), shared by the device model
 * (hypervisor-sim/devices/nvme) and the native driver (drivers/nvme). It follows NVM Express
 * Base Specification 1.4, §3.1 "Register Definition"; only what pvio models is listed.
 *
 * BAR 0 (byte offsets; 64-bit registers are two 32-bit halves, low half first):
 * ```
 * offset                          size  name    access  note
 * 0x00                            8     CAP     ro      capabilities (CapLo / CapHi fields below)
 * 0x08                            4     VS      ro      version: NVME_VERSION (1.4.0)
 * 0x0C                            4     INTMS   rw1s    interrupt mask set (reads the mask)
 * 0x10                            4     INTMC   rw1c    interrupt mask clear (reads the mask)
 * 0x14                            4     CC      rw      controller configuration (CcField)
 * 0x18                            4     reserved
 * 0x1C                            4     CSTS    ro      controller status (CstsBit)
 * 0x20                            4     NSSR    -       subsystem reset: not supported (CAP.NSSRS = 0)
 * 0x24                            4     AQA     rw      admin queue sizes, 0-based (AqaField)
 * 0x28                            8     ASQ     rw      admin SQ base (page aligned)
 * 0x30                            8     ACQ     rw      admin CQ base (page aligned)
 * 0x1000 + (2y)   × (4 << DSTRD)   4     SQyTDBL wo      new tail of submission queue y
 * 0x1000 + (2y+1) × (4 << DSTRD)   4     CQyHDBL wo      new head of completion queue y
 * ```
 * BAR size = 0x1000 + 2 × (maxIoQueues + 1) × (4 << DSTRD), rounded up to a page.
 *
 * pvio's controller: physically contiguous queues only (CAP.CQR = 1), memory page size 4 KiB
 * only (CAP.MPSMIN = CAP.MPSMAX = 0, so CC.MPS must be 0), the NVM command set, 64-byte SQ
 * entries and 16-byte CQ entries (CC.IOSQES = 6, CC.IOCQES = 4), no interrupts (the driver
 * polls completion queues; INTMS/INTMC only keep the mask a driver writes).
 */

/** VS: major 1, minor 4, tertiary 0 (NVMe 1.4: bits 31:16 major, 15:8 minor, 7:0 tertiary). */
export const NVME_VERSION = 0x0001_0400;

/** Register byte offsets in BAR 0 (NVMe 1.4 Figure 78). */
export const enum NvmeReg {
  CAP_LO = 0x00,
  CAP_HI = 0x04,
  VS = 0x08,
  INTMS = 0x0c,
  INTMC = 0x10,
  CC = 0x14,
  CSTS = 0x1c,
  NSSR = 0x20,
  AQA = 0x24,
  ASQ_LO = 0x28,
  ASQ_HI = 0x2c,
  ACQ_LO = 0x30,
  ACQ_HI = 0x34,
  DOORBELLS = 0x1000,
}

/**
 * CAP bits 31:0. MQES 15:0 = largest queue − 1 (0-based); CQR 16 = contiguous queues required;
 * TO 31:24 = worst-case time to RDY, in 500 ms units.
 */
export const enum CapLo {
  MQES_MASK = 0xffff,
  CQR = 1 << 16,
  TO_SHIFT = 24,
}

/**
 * CAP bits 63:32, as a 32-bit word: DSTRD 35:32 → 3:0 (doorbell stride = 4 << DSTRD bytes);
 * CSS 44:37 → 12:5 (bit 5 = NVM command set); MPSMIN 51:48 → 19:16; MPSMAX 55:52 → 23:20.
 */
export const enum CapHi {
  DSTRD_MASK = 0xf,
  CSS_NVM = 1 << 5,
  MPSMIN_SHIFT = 16,
  MPSMAX_SHIFT = 20,
}

/** CC fields (NVMe 1.4 §3.1.5): read `(cc >>> X_SHIFT) & CC_X_MASK`. */
export const enum CcField {
  /** Bit 0: enable. 0 → 1 starts the controller, 1 → 0 resets it. */
  EN = 1,
  /** Bits 6:4: I/O command set (0 = NVM); mask CC_CSS_MASK. */
  CSS_SHIFT = 4,
  /** Bits 10:7: memory page size = 2^(12 + MPS); mask CC_MPS_MASK. */
  MPS_SHIFT = 7,
  /** Bits 15:14: shutdown notification (1 normal, 2 abrupt); mask CC_SHN_MASK. */
  SHN_SHIFT = 14,
  /** Bits 19:16: log2 of the I/O SQ entry size (must be 6); mask CC_ES_MASK. */
  IOSQES_SHIFT = 16,
  /** Bits 23:20: log2 of the I/O CQ entry size (must be 4); mask CC_ES_MASK. */
  IOCQES_SHIFT = 20,
}

/** Width masks of the CC fields (after the shift). */
export const CC_CSS_MASK = 0x7;
export const CC_MPS_MASK = 0xf;
export const CC_SHN_MASK = 0x3;
export const CC_ES_MASK = 0xf;

/** CSTS bits (NVMe 1.4 §3.1.6). */
export const enum CstsBit {
  /** Ready: set once CC.EN = 1 took effect, cleared by a reset. */
  RDY = 1,
  /** Controller fatal status: the controller refused its configuration. */
  CFS = 2,
  /** SHST (bits 3:2) = 2: shutdown processing complete. */
  SHST_COMPLETE = 2 << 2,
  SHST_MASK = 3 << 2,
}

/** AQA fields: ASQS 11:0 and ACQS 27:16, each the queue size − 1. */
export const enum AqaField {
  ASQS_MASK = 0xfff,
  ACQS_SHIFT = 16,
}

/** log2 of the only SQ/CQ entry sizes pvio supports (64 and 16 bytes). */
export const SQES_LOG2 = 6;
export const CQES_LOG2 = 4;

/** Memory page size pvio's controller uses (CC.MPS = 0). */
export const NVME_PAGE_SIZE = 4096;

/** Byte offset of the SQ tail doorbell of queue `qid` (NVMe 1.4 §3.1.24). */
export function sqTailDoorbell(qid: number, dstrd: number): number {
  return NvmeReg.DOORBELLS + 2 * qid * (4 << dstrd);
}

/** Byte offset of the CQ head doorbell of queue `qid` (NVMe 1.4 §3.1.25). */
export function cqHeadDoorbell(qid: number, dstrd: number): number {
  return NvmeReg.DOORBELLS + (2 * qid + 1) * (4 << dstrd);
}

/** BAR 0 size for queue ids 0 … maxIoQueues with doorbell stride `dstrd`. */
export function nvmeBarSize(maxIoQueues: number, dstrd: number): number {
  return Math.ceil((cqHeadDoorbell(maxIoQueues, dstrd) + 4) / NVME_PAGE_SIZE) * NVME_PAGE_SIZE;
}
