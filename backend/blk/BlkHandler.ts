/**
 * blkback's per-frontend request handler, run by RingServer on the private copy of each request
 * (XSA-155: RingServer copies the slot once; nothing here reads the shared slot).
 *
 * Data path, per request: validate (BlkRequestCheck.ts) → read the indirect pages once (mapped
 * read-only, copied, unmapped) → map every segment's grant, all before any I/O (writable for
 * READ, read-only for WRITE: least privilege, LBB `xen_blkbk_map`) → one device call per
 * segment straight into/out of the mapped page (zero copy) → unmap all → respond. Mapping, not
 * grant copy: the device call then moves the bytes once, and unmapping before the response is
 * the order blkback keeps (`xen_blkbk_unmap_and_respond`), so the guest may end its grants as
 * soon as it sees the response. No persistent grants: every mapping lives for one request, so
 * at every response the connection holds no data mapping.
 *
 * Every refusal is a typed error counted under its code in `refusals` and answered as a blkif
 * status (EOPNOTSUPP / ERROR); a grant the guest forged or gave to someone else fails its map
 * and is answered ERROR, never thrown out of the handler (XSA-361/362/365).
 */

import {
  BLKIF_MAX_INDIRECT_SEGMENTS,
  BLKIF_SECTOR_SHIFT,
  BLKIF_SEGS_PER_INDIRECT_FRAME,
  BlkifStatus,
} from '../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_SEG_WORDS,
  type BlkifRequest,
  type BlkifResponse,
  decodeBlkifRequest,
  emptyBlkifRequest,
  encodeBlkifResponse,
  segFirst,
  segGref,
  segLast,
} from '../../protocol/blkif/BlkifSlot.js';
import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import { type ErrorCode, PvError, pvError } from '../../protocol/errors.js';
import type { GrantMapping, Hypercalls } from '../../protocol/Hypercalls.js';
import { type DomId, type GrantRef, PAGE_SIZE } from '../../protocol/Types.js';
import type { RequestHandler } from '../ring/RingServer.js';
import { type BlkLimits, type BlkWork, blkifStatusOf, checkBlkRequest, emptyBlkWork } from './BlkRequestCheck.js';

/** Counters of one connection. */
export interface BlkStats {
  requests: number;
  okay: number;
  errors: number;
  eopnotsupp: number;
  reads: number;
  writes: number;
  flushes: number;
  indirect: number;
  sectorsRead: number;
  sectorsWritten: number;
  /** Grant maps made (segments and indirect pages). */
  maps: number;
}

/** An empty counter set. */
export function emptyBlkStats(): BlkStats {
  return {
    requests: 0,
    okay: 0,
    errors: 0,
    eopnotsupp: 0,
    reads: 0,
    writes: 0,
    flushes: 0,
    indirect: 0,
    sectorsRead: 0,
    sectorsWritten: 0,
    maps: 0,
  };
}

export class BlkHandler {
  readonly stats = emptyBlkStats();
  /** Refusals by stable code (what each hostile request was answered for). */
  readonly refusals: Partial<Record<ErrorCode, number>> = {};
  /** The last refusal, for logs and tests. */
  lastRefusal: { code: ErrorCode; message: string } | undefined;
  private readonly _req: BlkifRequest = emptyBlkifRequest();
  private readonly _work: BlkWork = emptyBlkWork();
  private readonly _rsp: BlkifResponse = { idLo: 0, idHi: 0, op: 0, status: 0 };
  /** Private copy of indirect descriptors (the largest request's worth). */
  private readonly _indirect = new Int32Array(BLKIF_MAX_INDIRECT_SEGMENTS * BLKIF_SEG_WORDS);
  private readonly _maps: GrantMapping[] = [];
  private readonly _limits: BlkLimits;
  private readonly _ratio: number;

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _front: DomId,
    private readonly _dev: BlockDevice,
  ) {
    this._ratio = _dev.sectorSize >> BLKIF_SECTOR_SHIFT;
    this._limits = {
      sectors: _dev.sectors * this._ratio,
      ratio: this._ratio,
      readOnly: _dev.readOnly,
      maxIndirectSegments: BLKIF_MAX_INDIRECT_SEGMENTS,
    };
  }

  /** The ring-server callback: answers every request, never throws for guest input. */
  readonly handle: RequestHandler = (priv, rspWords, rspWord) => {
    const req = decodeBlkifRequest(priv, 0, this._req);
    const rsp = this._rsp;
    // The response echoes the private copy only.
    rsp.idLo = req.idLo;
    rsp.idHi = req.idHi;
    rsp.op = req.op;
    this.stats.requests++;
    try {
      this._execute(checkBlkRequest(req, this._limits, this._readIndirect, this._work));
      rsp.status = BlkifStatus.OKAY;
      this.stats.okay++;
    } catch (err) {
      const code: ErrorCode = err instanceof PvError ? err.code : 'PV_ERR_BLK_IO';
      this.refusals[code] = (this.refusals[code] ?? 0) + 1;
      this.lastRefusal = { code, message: err instanceof Error ? err.message : String(err) };
      rsp.status = blkifStatusOf(code);
      if (rsp.status === BlkifStatus.EOPNOTSUPP) this.stats.eopnotsupp++;
      else this.stats.errors++;
    }
    encodeBlkifResponse(rspWords, rspWord, rsp);
  };

  /** Live data mappings (0 between requests: nothing outlives a response). */
  get liveMaps(): number {
    return this._maps.length;
  }

  /**
   * Copies `nseg` descriptors out of the indirect pages: each page mapped read-only, copied
   * once into private memory, unmapped at once; checks then run on the copy only.
   */
  private readonly _readIndirect = (req: BlkifRequest, nseg: number): Int32Array => {
    const pages = Math.ceil(nseg / BLKIF_SEGS_PER_INDIRECT_FRAME);
    for (let p = 0; p < pages; p++) {
      const m = this._hc.grant.mapGrants(this._front, [req.indirectGrefs[p] as GrantRef], false);
      this.stats.maps++;
      try {
        const n = Math.min(BLKIF_SEGS_PER_INDIRECT_FRAME, nseg - p * BLKIF_SEGS_PER_INDIRECT_FRAME);
        const words = new Int32Array(m.view.buffer, m.view.byteOffset, n * BLKIF_SEG_WORDS);
        this._indirect.set(words, p * BLKIF_SEGS_PER_INDIRECT_FRAME * BLKIF_SEG_WORDS);
      } finally {
        this._hc.grant.unmapGrant(m.handle);
      }
    }
    this.stats.indirect++;
    return this._indirect;
  };

  /** Does the validated work: flush, map, I/O, unmap. */
  private _execute(w: BlkWork): void {
    if (w.flushFirst) {
      this._dev.flush();
      this.stats.flushes++;
    }
    if (w.kind === 'flush') return;
    const read = w.kind === 'read';
    try {
      // All-or-nothing: every grant is mapped before the device moves a byte.
      for (let i = 0; i < w.nseg; i++) {
        this._maps.push(this._hc.grant.mapGrants(this._front, [segGref(w.segs, i) as GrantRef], read));
        this.stats.maps++;
      }
      let sector = w.sector;
      for (let i = 0; i < w.nseg; i++) {
        // INVARIANT: first ≤ last ≤ 7 and alignment were checked on this private copy.
        const first = segFirst(w.segs, i);
        const n = segLast(w.segs, i) - first + 1;
        const view = this._maps[i].view;
        if (view.byteLength !== PAGE_SIZE) throw pvError('PV_ERR_BLK_BAD_SEGMENT', 'a segment mapping is not one page');
        const bytes = view.subarray(first << BLKIF_SECTOR_SHIFT, (first + n) << BLKIF_SECTOR_SHIFT);
        const devSector = sector / this._ratio;
        if (read) this._dev.read(devSector, n / this._ratio, bytes);
        else this._dev.write(devSector, n / this._ratio, bytes);
        sector += n;
      }
      if (read) {
        this.stats.reads++;
        this.stats.sectorsRead += w.totalSectors;
      } else {
        this.stats.writes++;
        this.stats.sectorsWritten += w.totalSectors;
      }
    } finally {
      this.releaseMaps();
    }
  }

  /** Unmaps every data mapping still held (after each request, and at disconnect). */
  releaseMaps(): void {
    while (this._maps.length > 0) {
      const m = this._maps.pop() as GrantMapping;
      this._hc.grant.unmapGrant(m.handle);
    }
  }
}
