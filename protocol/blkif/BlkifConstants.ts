/**
 * Constants of Xen's block split-driver protocol (`xen/include/public/io/blkif.h`, reference
 * §1.2 and §6.2): operations, response statuses, segment and sector limits, and the xenstore
 * keys the two ends publish. pvio's `vbd` device speaks this protocol with the x86_64 ABI
 * (112-byte requests, 16-byte responses; layouts in BlkifSlot.ts).
 *
 * Units: every sector number and count on the ring is in 512-byte units, whatever the device's
 * logical `sector-size` (blkif.h after "reconcile protocol specification with in-use
 * implementations"); `sectors` in the store is in 512-byte units as well.
 */

/** Device class in the store (`/local/domain/<fe>/device/vbd/<devid>`). */
export const VBD_DEVICE_TYPE = 'vbd';

/** `BLKIF_OP_*`: the request's `operation` byte. */
export const enum BlkifOp {
  READ = 0,
  WRITE = 1,
  /** Not offered by pvio's backend (no `feature-barrier`): answered EOPNOTSUPP. */
  WRITE_BARRIER = 2,
  /** Flush the device's write cache; nr_segments 0, or > 0 for "flush, then write" (REQ_PREFLUSH). */
  FLUSH_DISKCACHE = 3,
  /** Not offered by pvio's backend (no `feature-discard`): answered EOPNOTSUPP. */
  DISCARD = 5,
  /** The request is a `blkif_request_indirect`; `indirect_op` says READ or WRITE. */
  INDIRECT = 6,
}

/** `BLKIF_RSP_*`: the response's i16 `status`. */
export const enum BlkifStatus {
  OKAY = 0,
  ERROR = -1,
  EOPNOTSUPP = -2,
}

/** Bytes per blkif sector (`XEN_BSIZE`, 1 << 9). */
export const BLKIF_SECTOR_SIZE = 512;
/** log2(BLKIF_SECTOR_SIZE). */
export const BLKIF_SECTOR_SHIFT = 9;
/** Sectors per 4 KiB page: a segment's `last_sect` is at most this − 1 (7). */
export const BLKIF_SECTORS_PER_PAGE = 8;
/** `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments inline in a direct request. */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
/** `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: indirect grant refs in an indirect request. */
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
/** Segment descriptors per indirect page (4096 / 8). */
export const BLKIF_SEGS_PER_INDIRECT_FRAME = 512;
/** Indirect segments pvio's backend accepts (Linux blkback's `MAX_INDIRECT_SEGMENTS`). */
export const BLKIF_MAX_INDIRECT_SEGMENTS = 256;

/** The ABI string a frontend writes to `protocol` (blkif.h `XEN_IO_PROTO_ABI_X86_64`). */
export const BLKIF_PROTOCOL_X86_64 = 'x86_64-abi';

/** `info` bit: the vbd is read-only (blkif.h `VDISK_READONLY`). */
export const VDISK_READONLY = 4;

/** Keys the backend publishes (blkif.h "Backend XenBus Nodes"). */
export const enum BlkBackendKey {
  /** At probe: the most segments an indirect request may carry. */
  MAX_INDIRECT_SEGMENTS = 'feature-max-indirect-segments',
  /** At probe: 1 when FLUSH_DISKCACHE is served. */
  FLUSH_CACHE = 'feature-flush-cache',
  /** At probe: largest ring order accepted. */
  MAX_RING_PAGE_ORDER = 'max-ring-page-order',
  /** At connect: device size in 512-byte sectors. */
  SECTORS = 'sectors',
  /** At connect: logical block size in bytes (a power of two ≥ 512). */
  SECTOR_SIZE = 'sector-size',
  /** At connect: VDISK_* flags. */
  INFO = 'info',
}

/** Keys the frontend publishes. */
export const enum BlkFrontendKey {
  RING_REF = 'ring-ref',
  RING_PAGE_ORDER = 'ring-page-order',
  EVENT_CHANNEL = 'event-channel',
  PROTOCOL = 'protocol',
}

/** Human name of an operation byte, for logs and test messages. */
export function blkifOpName(op: number): string {
  switch (op) {
    case BlkifOp.READ:
      return 'READ';
    case BlkifOp.WRITE:
      return 'WRITE';
    case BlkifOp.WRITE_BARRIER:
      return 'WRITE_BARRIER';
    case BlkifOp.FLUSH_DISKCACHE:
      return 'FLUSH_DISKCACHE';
    case BlkifOp.DISCARD:
      return 'DISCARD';
    case BlkifOp.INDIRECT:
      return 'INDIRECT';
    default:
      return `op ${op}`;
  }
}
