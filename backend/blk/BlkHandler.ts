/**
 * blkback's per-frontend request handler, run by RingServer on the private copy of each request
 * (XSA-155: RingServer copies the slot once; nothing here reads the shared slot).
 *
 * Data path, per request: validate (BlkRequestCheck.ts) → read the indirect pages once (mapped
 * read-only, copied, unmapped) → map every segment's grant, all before any I/O (writable for
 * READ, read-only for WRITE: least privilege, LBB `xen_blkbk_map`) → one device call per
 * segment straight into/out of the mapped page (zero copy) → unmap all → respond. A device that
 * DMAs (DmaBlockDevice: an NVMe namespace) gets the grants mapped FOR THE DEVICE and their device
 * addresses instead, so the controller moves the bytes and dom0's CPU touches none; segments
 * that tile whole pages of contiguous guest frames go out as one mapping and one command. Mapping, not
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
  BLKIF_SECTORS_PER_PAGE,
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
import { type BlockDevice, type DmaBlockDevice, isDmaBlockDevice } from '../../protocol/blkif/BlockDevice.js';
import { type ErrorCode, PvError, pvError } from '../../protocol/errors.js';
import type { GrantMapping, Hypercalls } from '../../protocol/Hypercalls.js';
import { type DomId, type GrantRef, type Iova, PAGE_SIZE } from '../../protocol/Types.js';
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
  /** The device, when it takes device addresses (zero copy by DMA); else the copy calls are used. */
  private readonly _dma: DmaBlockDevice | undefined;
  /** DMA pieces of the request being served: device address, 512-byte sectors, … */
  private readonly _pieces: number[] = [];

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _front: DomId,
    private readonly _dev: BlockDevice,
  ) {
    this._ratio = _dev.sectorSize >> BLKIF_SECTOR_SHIFT;
    this._dma = isDmaBlockDevice(_dev) ? _dev : undefined;
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
      const dma = this._dma;
      if (dma !== undefined) {
        this._mapForDevice(dma, w, read);
        this._dmaPieces(dma, w, read);
      } else {
        for (let i = 0; i < w.nseg; i++) {
          this._maps.push(this._hc.grant.mapGrants(this._front, [segGref(w.segs, i) as GrantRef], read));
          this.stats.maps++;
        }
        this._copySegments(w, read);
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

  /** One device call per segment straight into/out of the CPU mapping of the guest's page. */
  private _copySegments(w: BlkWork, read: boolean): void {
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
  }

  /**
   * Maps the request's segments FOR THE DEVICE, in runs: segments that tile whole pages (each
   * ends at sector 7 and the next starts at 0) are mapped with one `mapGrants` when the guest's
   * frames are contiguous — blkfront's buffers usually are — so the run is ONE device-contiguous
   * range and ONE NVMe command (PRP list) instead of one per page. Frames that are not
   * contiguous (or any failure of the run map) fall back to one map per segment, which also
   * reports a bad grant as before. Fills `_pieces`: [device address, 512-byte sectors] pairs.
   */
  private _mapForDevice(dev: DmaBlockDevice, w: BlkWork, read: boolean): void {
    const opts = { device: dev.dmaDevice };
    const pieces = this._pieces;
    pieces.length = 0;
    for (let i = 0; i < w.nseg; ) {
      // INVARIANT: first ≤ last ≤ 7 and alignment were checked on this private copy.
      let j = i + 1;
      while (j < w.nseg && segLast(w.segs, j - 1) === 7 && segFirst(w.segs, j) === 0) j++;
      const first = segFirst(w.segs, i);
      const sectors = segLast(w.segs, j - 1) + 1 - first + (j - i - 1) * BLKIF_SECTORS_PER_PAGE;
      if (j - i > 1) {
        const refs: GrantRef[] = [];
        for (let k = i; k < j; k++) refs.push(segGref(w.segs, k) as GrantRef);
        let run: GrantMapping | undefined;
        try {
          run = this._hc.grant.mapGrants(this._front, refs, read, opts);
        } catch {
          run = undefined; // not contiguous (or a bad ref): map one by one below
        }
        if (run !== undefined) {
          this.stats.maps++;
          this._maps.push(run);
          pieces.push(this._devAddr(run) + (first << BLKIF_SECTOR_SHIFT), sectors);
          i = j;
          continue;
        }
      }
      for (let k = i; k < j; k++) {
        const m = this._hc.grant.mapGrants(this._front, [segGref(w.segs, k) as GrantRef], read, opts);
        this._maps.push(m);
        this.stats.maps++;
        const f = segFirst(w.segs, k);
        pieces.push(this._devAddr(m) + (f << BLKIF_SECTOR_SHIFT), segLast(w.segs, k) - f + 1);
      }
      i = j;
    }
  }

  private _devAddr(m: GrantMapping): number {
    if (m.deviceAddr === undefined) throw pvError('PV_ERR_BLK_BAD_SEGMENT', 'a segment was not mapped for the device');
    return m.deviceAddr;
  }

  /**
   * Zero copy: each piece goes to the device at its DEVICE address, all queued, then drained —
   * always drained before the caller unmaps, even when queueing failed half way (the device
   * may still be moving bytes into a page whose mapping is about to go).
   */
  private _dmaPieces(dev: DmaBlockDevice, w: BlkWork, read: boolean): void {
    let failure: unknown;
    try {
      let sector = w.sector;
      const pieces = this._pieces;
      for (let p = 0; p < pieces.length; p += 2) {
        const n = pieces[p + 1];
        dev.queueDma(!read, sector / this._ratio, n / this._ratio, pieces[p] as Iova);
        sector += n;
      }
    } catch (err) {
      failure = err;
    }
    try {
      dev.finishDma();
    } catch (err) {
      failure ??= err;
    }
    if (failure !== undefined) throw failure;
  }

  /** Unmaps every data mapping still held (after each request, and at disconnect). */
  releaseMaps(): void {
    while (this._maps.length > 0) {
      const m = this._maps.pop() as GrantMapping;
      this._hc.grant.unmapGrant(m.handle);
    }
  }
}
