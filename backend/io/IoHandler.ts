/**
 * Backend of the generic "io" device: CHECKSUM reads a granted byte range and returns its
 * FNV-1a checksum, FILL writes a pattern derived from the request id into it. It exists to
 * exercise and measure the split-driver machinery (ring, grants, event channels) without a
 * device behind it, the way a null block device does.
 *
 * Validation follows reference §6.2 on the backend's private copy: opcode whitelist, nseg == 1,
 * `offset ≤ PAGE_SIZE && length ≤ PAGE_SIZE − offset` (overflow-safe: no addition of two
 * guest numbers), grant map errors become error statuses. Data pages are mapped once and kept
 * (blkif persistent grants: the frontend grants them read-write, reference §6.2 note 9) in a
 * bounded cache; a grant the cache cannot hold is mapped for the request and unmapped after.
 */

import { ERROR_CATALOGUE, PvError } from '../../protocol/errors.js';
import type { GrantMapping, Hypercalls } from '../../protocol/Hypercalls.js';
import {
  decodeIoRequest,
  encodeIoResponse,
  fillByte,
  fnv1a,
  IoOp,
  type IoRequest,
  type IoResponse,
} from '../../protocol/ring/IoSlot.js';
import { type DomId, type GrantRef, PAGE_SIZE } from '../../protocol/Types.js';
import type { RequestHandler } from '../ring/RingServer.js';

/** Most persistent grant mappings per frontend (Linux blkback's max_pgrants is 1056). */
export const MAX_PERSISTENT_GRANTS = 1056;

const BAD_OP = ERROR_CATALOGUE.PV_ERR_BAD_OP.status;
const BAD_LENGTH = ERROR_CATALOGUE.PV_ERR_BAD_LENGTH.status;
const BAD_REQUEST = ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status;

export class IoHandler {
  /** Requests answered with an error status. */
  errors = 0;
  private readonly _hc: Hypercalls;
  private readonly _front: DomId;
  private readonly _cache = new Map<number, GrantMapping>();
  private readonly _req: IoRequest = { idLo: 0, idHi: 0, op: 0, nseg: 0, gref: 0, offset: 0, length: 0, checksum: 0 };
  private readonly _rsp: IoResponse = { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };

  constructor(hc: Hypercalls, front: DomId) {
    this._hc = hc;
    this._front = front;
  }

  /** The ring-server callback. */
  readonly handle: RequestHandler = (req, rsp, rspWord) => {
    const r = decodeIoRequest(req, 0, this._req);
    const out = this._rsp;
    out.idLo = r.idLo;
    out.idHi = r.idHi;
    out.op = r.op;
    out.length = 0;
    out.checksum = 0;
    out.status = this._execute(r, out);
    if (out.status !== 0) this.errors++;
    encodeIoResponse(rsp, rspWord, out);
  };

  /** Unmaps every cached grant (frontend disconnect or teardown). */
  release(): void {
    for (const m of this._cache.values()) this._hc.grant.unmapGrant(m.handle);
    this._cache.clear();
  }

  /** Live persistent mappings. */
  get cachedGrants(): number {
    return this._cache.size;
  }

  private _execute(r: IoRequest, out: IoResponse): number {
    if (r.op !== IoOp.CHECKSUM && r.op !== IoOp.FILL) return BAD_OP;
    if (r.nseg !== 1) return BAD_LENGTH;
    // INVARIANT: offset and length are u32 from the private copy; compare without adding them.
    if (r.offset > PAGE_SIZE || r.length > PAGE_SIZE - r.offset) return BAD_LENGTH;
    let mapping: GrantMapping;
    let transient = false;
    try {
      const cached = this._cache.get(r.gref);
      if (cached) {
        mapping = cached;
      } else {
        mapping = this._hc.grant.mapGrants(this._front, [r.gref as GrantRef], true);
        if (this._cache.size < MAX_PERSISTENT_GRANTS) this._cache.set(r.gref, mapping);
        else transient = true;
      }
    } catch (err) {
      return err instanceof PvError ? err.status : BAD_REQUEST;
    }
    const page = mapping.view;
    if (r.op === IoOp.FILL) {
      const end = r.offset + r.length;
      for (let i = r.offset; i < end; i++) page[i] = fillByte(r.idLo, i - r.offset);
    }
    out.checksum = fnv1a(page, r.offset, r.length);
    out.length = r.length;
    if (transient) this._hc.grant.unmapGrant(mapping.handle);
    return 0;
  }
}
