/**
 * Validation of one blkif request, on the backend's private copy only (reference §6.2, in its
 * order): operation whitelist → segment count → (indirect) descriptors read once → each segment's
 * sector range → device range, overflow-safe → read-only device. A request that passes becomes a
 * `BlkWork` whose every number is backend-owned; one that fails throws a typed error whose code
 * the handler turns into a blkif status (`blkifStatusOf`).
 *
 * Codes: unknown operation PV_ERR_BAD_OP, offered-nowhere operation (barrier, discard)
 * PV_ERR_NOT_SUPPORTED — both EOPNOTSUPP, as blkback's `dispatch_other_io`; bad `indirect_op`
 * PV_ERR_BAD_REQUEST; bad count or segment PV_ERR_BLK_BAD_SEGMENT; range PV_ERR_BLK_BAD_SECTOR;
 * write to a read-only vbd PV_ERR_BAD_REQUEST — all BLKIF_RSP_ERROR.
 */

import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_SECTORS_PER_PAGE,
  BlkifOp,
  BlkifStatus,
  blkifOpName,
} from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SEG_WORDS, type BlkifRequest, segFirst, segLast } from '../../protocol/blkif/BlkifSlot.js';
import { type ErrorCode, pvError } from '../../protocol/errors.js';

/** What the device looks like to the checker (512-byte units). */
export interface BlkLimits {
  /** Device size in 512-byte sectors. */
  readonly sectors: number;
  /** Device sector size / 512 (1 for 512-byte sectors, 8 for 4 KiB). */
  readonly ratio: number;
  readonly readOnly: boolean;
  /** Most segments of an indirect request (what the backend advertised). */
  readonly maxIndirectSegments: number;
}

/** A validated request. */
export interface BlkWork {
  /** What to do with the data segments (flush alone has none). */
  kind: 'read' | 'write' | 'flush';
  /** Flush the device before the write (FLUSH_DISKCACHE with segments: REQ_PREFLUSH). */
  flushFirst: boolean;
  /** First sector, 512-byte units (a safe integer). */
  sector: number;
  nseg: number;
  /** Sum of the segments' sectors. */
  totalSectors: number;
  /** True when the segments came from indirect pages. */
  indirect: boolean;
  /** Private descriptors, 2 words each: the inline copy or the private copy of the indirect pages. */
  segs: Int32Array;
}

/** Reads `nseg` descriptors from the request's indirect pages ONCE into private memory. */
export type IndirectReader = (req: BlkifRequest, nseg: number) => Int32Array;

/** Highest `sector_number` high word that keeps the sector a safe integer (< 2^53). */
const MAX_SECTOR_HI = 0x1fffff;

/** blkif status for a refusal code (EOPNOTSUPP for operations not offered, else ERROR). */
export function blkifStatusOf(code: ErrorCode): BlkifStatus {
  return code === 'PV_ERR_BAD_OP' || code === 'PV_ERR_NOT_SUPPORTED' ? BlkifStatus.EOPNOTSUPP : BlkifStatus.ERROR;
}

/** Validates `req` (a private copy) against `lim`; throws a typed error, or returns `out` filled. */
export function checkBlkRequest(
  req: BlkifRequest,
  lim: BlkLimits,
  readIndirect: IndirectReader,
  out: BlkWork,
): BlkWork {
  let op = req.op;
  out.indirect = false;
  out.flushFirst = false;
  if (op === BlkifOp.INDIRECT) {
    op = req.indirectOp;
    if (op !== BlkifOp.READ && op !== BlkifOp.WRITE) {
      throw pvError('PV_ERR_BAD_REQUEST', `indirect_op ${blkifOpName(op)} is not READ or WRITE`);
    }
    if (req.nseg < 1 || req.nseg > lim.maxIndirectSegments) {
      throw pvError('PV_ERR_BLK_BAD_SEGMENT', `indirect nr_segments ${req.nseg} outside 1..${lim.maxIndirectSegments}`);
    }
    out.indirect = true;
  } else if (op === BlkifOp.WRITE_BARRIER || op === BlkifOp.DISCARD) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `${blkifOpName(op)} is not offered by this backend`);
  } else if (op !== BlkifOp.READ && op !== BlkifOp.WRITE && op !== BlkifOp.FLUSH_DISKCACHE) {
    throw pvError('PV_ERR_BAD_OP', `unknown blkif ${blkifOpName(op)}`);
  } else if (req.nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST || (req.nseg === 0 && op !== BlkifOp.FLUSH_DISKCACHE)) {
    throw pvError('PV_ERR_BLK_BAD_SEGMENT', `nr_segments ${req.nseg} outside 1..${BLKIF_MAX_SEGMENTS_PER_REQUEST}`);
  }
  out.nseg = req.nseg;
  if (op === BlkifOp.FLUSH_DISKCACHE) {
    out.flushFirst = true;
    if (req.nseg === 0) {
      out.kind = 'flush';
      out.sector = 0;
      out.totalSectors = 0;
      return out;
    }
  }
  out.kind = op === BlkifOp.READ ? 'read' : 'write';
  if (out.kind === 'write' && lim.readOnly) throw pvError('PV_ERR_BAD_REQUEST', 'write to a read-only vbd');
  // INVARIANT: nseg is within the limit checked above, so the reader copies a bounded amount.
  out.segs = out.indirect ? readIndirect(req, req.nseg) : req.segWords;
  out.totalSectors = checkSegments(out.segs, req.nseg, lim.ratio);
  out.sector = checkRange(req, out.totalSectors, lim);
  return out;
}

/** Per segment: `first ≤ last ≤ 7`, aligned to the device sector; returns the total sectors. */
function checkSegments(segs: Int32Array, nseg: number, ratio: number): number {
  let total = 0;
  for (let i = 0; i < nseg; i++) {
    // Read each field of the private copy once into locals.
    const first = segFirst(segs, i);
    const last = segLast(segs, i);
    if (last >= BLKIF_SECTORS_PER_PAGE || first > last) {
      throw pvError('PV_ERR_BLK_BAD_SEGMENT', `segment ${i}: sectors ${first}..${last} outside 0..7 or reversed`);
    }
    if (first % ratio !== 0 || (last + 1) % ratio !== 0) {
      throw pvError(
        'PV_ERR_BLK_BAD_SEGMENT',
        `segment ${i}: sectors ${first}..${last} not aligned to ${ratio * 512} B`,
      );
    }
    total += last - first + 1;
  }
  // INVARIANT: total ≤ nseg × 8 ≤ 2048: no overflow.
  return total;
}

/** The request's first sector, after checking `[sector, sector + total)` lies in the device. */
function checkRange(req: BlkifRequest, total: number, lim: BlkLimits): number {
  if (req.sectorHi > MAX_SECTOR_HI) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `sector_number high word 0x${req.sectorHi.toString(16)} is past any device`);
  }
  const sector = req.sectorHi * 0x1_0000_0000 + req.sectorLo;
  // Overflow-safe: compare against size − total instead of adding two guest-derived numbers.
  if (total > lim.sectors || sector > lim.sectors - total) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `sectors [${sector}, +${total}) outside a device of ${lim.sectors}`);
  }
  if (sector % lim.ratio !== 0) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `sector ${sector} not aligned to ${lim.ratio * 512} B`);
  }
  return sector;
}

/** A fresh work item. */
export function emptyBlkWork(): BlkWork {
  return {
    kind: 'flush',
    flushFirst: false,
    sector: 0,
    nseg: 0,
    totalSectors: 0,
    indirect: false,
    segs: new Int32Array(BLKIF_SEG_WORDS),
  };
}
