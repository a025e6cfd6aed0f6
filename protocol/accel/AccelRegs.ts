/**
 * Register map of pvio's accelerator (a GPU-like PCIe device with its own memory), shared by the
 * device model (hypervisor-sim/devices/accel) and the native driver (drivers/accel).
 *
 * BAR 0 (4 KiB of 32-bit registers; 64-bit values are two halves, low half first):
 * ```
 * offset  size  name             access  note
 * 0x00    4     ID               ro      ACCEL_ID ('ACCL')
 * 0x04    4     VERSION          ro      ACCEL_VERSION (major 15:8, minor 7:0)
 * 0x08    4     MEM_BYTES        ro      device memory size in bytes (= BAR 1 size, ≤ 2^31)
 * 0x0C    4     MAX_XFER         ro      largest DMA / kernel range, bytes
 * 0x10    4     MAX_MATRIX       ro      largest n of MATMUL_F32 (n × n)
 * 0x14    4     RESET            wo      any write: both engines idle, status IDLE (memory kept)
 * 0x40    8     DMA_HOST         rw      host-side DMA address (IOVA through the device's IOMMU)
 * 0x48    4     DMA_DEV          rw      device-memory byte offset
 * 0x4C    4     DMA_LEN          rw      bytes to move (1 … MAX_XFER)
 * 0x50    4     DMA_DIR          rw      AccelDmaDir
 * 0x54    4     DMA_DOORBELL     wo      any write: run the transfer described above
 * 0x58    4     DMA_STATUS       ro      AccelStatus of the last transfer
 * 0x5C    4     DMA_DONE         ro      transfers finished (success or error), wraps at 2^32
 * 0x80    4     KERNEL_ID        rw      AccelKernel
 * 0x84    4×8   KERNEL_ARG[0..7] rw      arguments (device-memory offsets, lengths, n)
 * 0xA4    4     KERNEL_DOORBELL  wo      any write: launch KERNEL_ID with the arguments above
 * 0xA8    4     KERNEL_STATUS    ro      AccelStatus of the last launch
 * 0xAC    4     KERNEL_DONE      ro      launches finished (success or error), wraps at 2^32
 * 0xB0    4     RESULT0          ro      kernel result word 0 (see AccelKernel)
 * 0xB4    4     RESULT1          ro      kernel result word 1
 * ```
 * BAR 1 is the device memory itself (MEM_BYTES bytes): the driver may read and write it directly,
 * and a peer device may DMA into it (peer-to-peer), as GPUDirect exposes a GPU's BAR 1.
 *
 * Protocol: the driver writes the parameters, reads DONE, writes the doorbell, polls DONE until it
 * moved, then reads STATUS (and RESULTn). A doorbell with invalid parameters completes with an
 * error status; the device keeps serving.
 */

/** ID register: 'ACCL' in ASCII, big-endian reading order. */
export const ACCEL_ID = 0x4143_434c;
/** VERSION: 1.0. */
export const ACCEL_VERSION = 0x0100;
/** BAR 0 size. */
export const ACCEL_BAR0_BYTES = 4096;
/** Largest device memory pvio's accelerator models (offsets stay 31-bit, BAR 1 a power of two). */
export const ACCEL_MAX_MEM_BYTES = 2 ** 31;
/** Arguments a kernel takes (KERNEL_ARG0 … KERNEL_ARG7). */
export const ACCEL_KERNEL_ARGS = 8;

/** Register byte offsets in BAR 0. */
export const enum AccelReg {
  ID = 0x00,
  VERSION = 0x04,
  MEM_BYTES = 0x08,
  MAX_XFER = 0x0c,
  MAX_MATRIX = 0x10,
  RESET = 0x14,
  DMA_HOST_LO = 0x40,
  DMA_HOST_HI = 0x44,
  DMA_DEV = 0x48,
  DMA_LEN = 0x4c,
  DMA_DIR = 0x50,
  DMA_DOORBELL = 0x54,
  DMA_STATUS = 0x58,
  DMA_DONE = 0x5c,
  KERNEL_ID = 0x80,
  KERNEL_ARG0 = 0x84,
  KERNEL_DOORBELL = 0xa4,
  KERNEL_STATUS = 0xa8,
  KERNEL_DONE = 0xac,
  RESULT0 = 0xb0,
  RESULT1 = 0xb4,
}

/** Byte offset of KERNEL_ARG`i` (0 … 7). */
export function kernelArgReg(i: number): number {
  return AccelReg.KERNEL_ARG0 + 4 * i;
}

/** DMA_DIR values. */
export const enum AccelDmaDir {
  /** Host memory (DMA_HOST) → device memory (DMA_DEV). */
  TO_DEVICE = 0,
  /** Device memory (DMA_DEV) → host memory (DMA_HOST). */
  FROM_DEVICE = 1,
}

/**
 * Kernels (KERNEL_ID). Offsets are device-memory byte offsets; f32 data is little-endian and its
 * offsets must be 4-aligned.
 * ```
 * id  name          ARG0   ARG1   ARG2   ARG3   RESULT0              RESULT1
 * 1   CHECKSUM      src    len    -      -      FNV-1a 32 of bytes   CRC-32 (IEEE) of bytes
 * 2   VECTOR_ADD    a      b      out    n      n                    -
 * 3   MATMUL_F32    a      b      out    n      n                    -
 * ```
 * VECTOR_ADD: out[i] = a[i] + b[i] for n f32 elements (out may alias a or b). MATMUL_F32: out =
 * a × b, row-major n × n f32 matrices, 1 ≤ n ≤ MAX_MATRIX (out may alias a or b: the product is
 * formed in device scratch first). CHECKSUM len may be 0 (FNV offset basis, CRC 0).
 */
export const enum AccelKernel {
  CHECKSUM = 1,
  VECTOR_ADD = 2,
  MATMUL_F32 = 3,
}

/** STATUS values. */
export const enum AccelStatus {
  /** Nothing run since reset. */
  IDLE = 0,
  OK = 1,
  /** A device-memory range leaves the device memory. */
  BAD_RANGE = 2,
  /** A length of 0 (where not allowed) or above MAX_XFER. */
  BAD_LENGTH = 3,
  /** An f32 offset not 4-aligned. */
  BAD_ALIGNMENT = 4,
  /** The IOMMU refused the host-side range. */
  DMA_FAULT = 5,
  /** KERNEL_ID names no kernel. */
  UNKNOWN_KERNEL = 6,
  /** Another argument out of range (DMA_DIR, matrix n). */
  BAD_ARG = 7,
}

/** Name of a status, for messages. */
export function accelStatusName(s: number): string {
  const names = ['IDLE', 'OK', 'BAD_RANGE', 'BAD_LENGTH', 'BAD_ALIGNMENT', 'DMA_FAULT', 'UNKNOWN_KERNEL', 'BAD_ARG'];
  return names[s] ?? `UNKNOWN(${s})`;
}

/** FNV-1a 32-bit offset basis and prime (the CHECKSUM kernel's RESULT0). */
export const FNV1A_OFFSET = 0x811c_9dc5;
export const FNV1A_PRIME = 0x0100_0193;

/** FNV-1a 32 of `bytes[from, from + len)` — the reference the device and tests agree on. */
export function fnv1a32(bytes: Uint8Array, from = 0, len = bytes.length - from): number {
  let h = FNV1A_OFFSET;
  for (let i = from; i < from + len; i++) h = Math.imul(h ^ bytes[i], FNV1A_PRIME);
  return h >>> 0;
}

let crcTable: Int32Array | undefined;

/** CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of `bytes[from, from + len)`. */
export function crc32(bytes: Uint8Array, from = 0, len = bytes.length - from): number {
  if (crcTable === undefined) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb8_8320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const t = crcTable;
  let c = -1;
  for (let i = from; i < from + len; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
