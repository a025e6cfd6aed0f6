/**
 * blkback's control plane: the xenbus hooks of every `vbd` the toolstack gives this driver
 * domain (BackendDirWatcher calls `hooks(front, devid)`), each served from one BlockDevice.
 *
 * probe (before InitWait): `feature-max-indirect-segments` = 256, `feature-flush-cache` = 1,
 * `max-ring-page-order` (Linux `xen_blkbk_probe`). connect (the frontend is Initialised): parse
 * its untrusted keys strictly (`protocol` must be x86_64-abi, ring order ≤ 4), map the ring,
 * check it (BackRing: `req_prod − rsp_prod ≤ size`), bind the event channel, hand the ring to
 * the RingServer with a BlkHandler, and publish `sectors` (512-byte units), `sector-size` and
 * `info` with Connected (Linux `connect`). disconnect: stop serving, unmap the ring and every
 * data mapping, close the port — idempotent, as the xenbus contract requires.
 */

import {
  BLKIF_MAX_INDIRECT_SEGMENTS,
  BLKIF_PROTOCOL_X86_64,
  BLKIF_SECTOR_SHIFT,
  BlkBackendKey,
  BlkFrontendKey,
  VDISK_READONLY,
} from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SLOT_SIZE } from '../../protocol/blkif/BlkifSlot.js';
import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import { type ErrorCode, pvError } from '../../protocol/errors.js';
import type { GrantMapping, Hypercalls } from '../../protocol/Hypercalls.js';
import { BackRing } from '../../protocol/ring/BackRing.js';
import { MAX_RING_ORDER } from '../../protocol/ring/Layout.js';
import { type DomId, type EvtchnPort, evtchnPort, type GrantRef, grantRef } from '../../protocol/Types.js';
import type { BackendHooks, XenbusKeys } from '../../protocol/xenbus/XenbusDevice.js';
import type { RingServer } from '../ring/RingServer.js';
import { BlkHandler, type BlkStats, emptyBlkStats } from './BlkHandler.js';

const UINT = /^(0|[1-9][0-9]{0,9})$/;

/** Parses an untrusted unsigned decimal store value (u32). */
function parseUint(raw: string | undefined, key: string): number {
  if (raw === undefined || !UINT.test(raw)) throw pvError('PV_ERR_BAD_REQUEST', `frontend key ${key} is not a number`);
  const v = Number(raw);
  if (v > 0xffffffff) throw pvError('PV_ERR_BAD_REQUEST', `frontend key ${key} is out of range`);
  return v;
}

/** The frontend's ring keys, validated (reference §4.3 step 4). */
export function parseBlkFrontKeys(keys: XenbusKeys): { refs: GrantRef[]; port: EvtchnPort } {
  const proto = keys[BlkFrontendKey.PROTOCOL];
  // blkback: an unknown ABI is -ENOSYS; absent means the native (x86_64) one.
  if (proto !== undefined && proto !== BLKIF_PROTOCOL_X86_64) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `blkif protocol '${proto.slice(0, 32)}' is not ${BLKIF_PROTOCOL_X86_64}`);
  }
  const rawOrder = keys[BlkFrontendKey.RING_PAGE_ORDER];
  const order = rawOrder === undefined ? 0 : parseUint(rawOrder, BlkFrontendKey.RING_PAGE_ORDER);
  if (order > MAX_RING_ORDER) throw pvError('PV_ERR_BAD_REQUEST', `ring-page-order ${order} > ${MAX_RING_ORDER}`);
  const refs: GrantRef[] = [];
  if (rawOrder === undefined) refs.push(grantRef(parseUint(keys[BlkFrontendKey.RING_REF], 'ring-ref')));
  else for (let i = 0; i < 1 << order; i++) refs.push(grantRef(parseUint(keys[`ring-ref${i}`], `ring-ref${i}`)));
  return { refs, port: evtchnPort(parseUint(keys[BlkFrontendKey.EVENT_CHANNEL], BlkFrontendKey.EVENT_CHANNEL)) };
}

interface Connection {
  readonly ringMap: GrantMapping;
  readonly port: EvtchnPort;
  readonly serverId: number;
  readonly handler: BlkHandler;
  /** Its counters are published to the monitor until disconnect. */
  readonly ring: BackRing;
}

/** Everything the backend serves, and its counters. */
export class BlkBackend {
  /** Counters summed over every connection (live ones included by `totals()`). */
  private readonly _closed = emptyBlkStats();
  private readonly _closedRefusals: Partial<Record<ErrorCode, number>> = {};
  private readonly _live = new Map<string, Connection>();
  /** Connections made, rings halted for a protocol violation. */
  readonly events = { connects: 0, disconnects: 0, halted: 0 };

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _server: RingServer,
    /** The device each vbd is served from (one device may back several guests' vbds). */
    private readonly _deviceFor: (front: DomId, devid: number) => BlockDevice,
    private readonly _log: (line: string) => void = () => {},
  ) {}

  /** Live connections. */
  get connections(): number {
    return this._live.size;
  }

  /** The handler serving `front`'s `devid`, while connected (tests inspect it). */
  handler(front: DomId, devid: number): BlkHandler | undefined {
    return this._live.get(`${front}/${devid}`)?.handler;
  }

  /** Counters over every connection so far. */
  totals(): { stats: BlkStats; refusals: Partial<Record<ErrorCode, number>> } {
    const stats = { ...this._closed };
    const refusals = { ...this._closedRefusals };
    for (const c of this._live.values()) addStats(stats, refusals, c.handler);
    return { stats, refusals };
  }

  /** The hooks factory for BackendDirWatcher. */
  readonly hooks = (front: DomId, devid: number): BackendHooks => {
    const key = `${front}/${devid}`;
    return {
      probe: () => ({
        [BlkBackendKey.MAX_INDIRECT_SEGMENTS]: String(BLKIF_MAX_INDIRECT_SEGMENTS),
        [BlkBackendKey.FLUSH_CACHE]: '1',
        [BlkBackendKey.MAX_RING_PAGE_ORDER]: String(MAX_RING_ORDER),
      }),
      connect: (_dev, keys) => this._connect(key, front, devid, keys),
      disconnect: () => this._disconnect(key),
    };
  };

  private _connect(key: string, front: DomId, devid: number, keys: XenbusKeys): XenbusKeys {
    const { refs, port } = parseBlkFrontKeys(keys);
    const dev = this._deviceFor(front, devid);
    const ringMap = this._hc.grant.mapGrants(front, refs, true);
    let local: EvtchnPort | undefined;
    let unpublish = (): void => {};
    try {
      const ring = new BackRing(ringMap.view, BLKIF_SLOT_SIZE);
      ring.counters.publish(this._hc.monitor, 'blkif', front, 'back');
      unpublish = () => ring.counters.unpublish();
      local = this._hc.evtchn.bindInterdomain(front, port);
      const handler = new BlkHandler(this._hc, front, dev);
      const serverId = this._server.add(ring, local, handler.handle, (code, message) => {
        this.events.halted++;
        this._log(`blkback: ring of dom${front} vbd ${devid} halted: ${code}: ${message}`);
      });
      this._live.set(key, { ringMap, port: local, serverId, handler, ring });
      this.events.connects++;
    } catch (err) {
      unpublish();
      if (local !== undefined) this._hc.evtchn.close(local);
      this._hc.grant.unmapGrant(ringMap.handle);
      throw err;
    }
    const ratio = dev.sectorSize >> BLKIF_SECTOR_SHIFT;
    return {
      [BlkBackendKey.SECTORS]: String(dev.sectors * ratio),
      [BlkBackendKey.SECTOR_SIZE]: String(dev.sectorSize),
      [BlkBackendKey.INFO]: String(dev.readOnly ? VDISK_READONLY : 0),
    };
  }

  private _disconnect(key: string): void {
    const c = this._live.get(key);
    if (c === undefined) return;
    this._live.delete(key);
    this._server.remove(c.serverId);
    c.ring.counters.unpublish();
    addStats(this._closed, this._closedRefusals, c.handler);
    this.events.disconnects++;
    // Nothing below may be skipped by an earlier failure: each release stands alone.
    try {
      c.handler.releaseMaps();
    } finally {
      try {
        this._hc.evtchn.close(c.port);
      } finally {
        this._hc.grant.unmapGrant(c.ringMap.handle);
      }
    }
  }
}

function addStats(into: BlkStats, refusals: Partial<Record<ErrorCode, number>>, h: BlkHandler): void {
  for (const k of Object.keys(into) as (keyof BlkStats)[]) into[k] += h.stats[k];
  for (const [code, n] of Object.entries(h.refusals) as [ErrorCode, number][]) {
    refusals[code] = (refusals[code] ?? 0) + n;
  }
}
