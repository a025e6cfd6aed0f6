/**
 * The RDMA backend service of the driver domain: serves every `vrdma` frontend on the NICs it
 * owns, over one RingServer loop. Per frontend (xenbus hooks for BackendDirWatcher):
 *  - probe: publishes the per-guest limits and the default NIC's identity (`port-id`) before
 *    InitWait (VrdmaKeys.ts);
 *  - connect: validates the frontend's keys (hostile), maps the control and data rings, binds the
 *    one event channel, picks the NIC (the frontend's optional `device` key may name another NIC
 *    this domain owns — Xen's toolstack would write that choice; here the frontend asks and only
 *    owned names are honoured), builds the guest's session and serves both rings (plus, in copy
 *    mode, its completion poller); publishes the chosen NIC's `port-id` with Connected;
 *  - disconnect (frontend closed, unplug, or the guest died and the toolstack removed the
 *    directory): stops serving; if the guest lives on (unplug), moves its QPs to ERR so every WR
 *    still outstanding completes with WR_FLUSH_ERR in its CQ; then destroys everything the guest had on
 *    the NIC and unmaps every grant (GuestSession.destroy).
 * A ring the guest corrupts (producer overflow) is halted by the RingServer; the others go on.
 * Doorbells are rung once per round by a poller installed first, so posts of a round are batched.
 */

import protobuf from 'protobufjs';
import { pvError } from '../../protocol/errors.js';
import type { GrantMapping, Hypercalls } from '../../protocol/Hypercalls.js';
import { CtrlCodec } from '../../protocol/rdma/pv/CtrlCodec.js';
import {
  PV_CTRL_SLOT_SIZE,
  PV_DATA_RING_ORDER,
  PV_DATA_SLOT_SIZE,
  VRDMA_DEVICE_TYPE,
} from '../../protocol/rdma/pv/PvConstants.js';
import { formatBackendInfo, parseFrontendKeys } from '../../protocol/rdma/pv/VrdmaKeys.js';
import { QpAttrMask, QpState } from '../../protocol/rdma/Verbs.js';
import { BackRing } from '../../protocol/ring/BackRing.js';
import { type DomId, type EvtchnPort, evtchnPort, type GrantRef, grantRef } from '../../protocol/Types.js';
import type { BackendHooks } from '../../protocol/xenbus/XenbusDevice.js';
import type { RingServer } from '../ring/RingServer.js';
import type { HooksFactory } from '../xenbus/BackendDirWatcher.js';
import { CopyEngine } from './CopyEngine.js';
import { CtrlHandler } from './CtrlHandler.js';
import { DataHandler } from './DataHandler.js';
import { Doorbells } from './Doorbells.js';
import { GuestSession, type ServedNic } from './GuestSession.js';
import { guestMaxCqe, resolveLimits, type VrdmaLimits } from './Limits.js';

/** A NIC handed to the backend: its name and the native driver attached to it. */
export interface BackendNic {
  readonly name: string;
  readonly driver: ServedNic['driver'];
}

/** Options of the backend service. */
export interface RdmaBackendOptions {
  /** Per-guest limit overrides. */
  readonly limits?: Partial<Record<keyof VrdmaLimits, unknown>>;
  /** Serve mode=copy (default true). */
  readonly featureCopy?: boolean;
  /** NIC used when the frontend names none (default: the first). */
  readonly defaultNic?: string;
  /** Log sink (the domain console). */
  readonly log?: (line: string) => void;
}

/** A connected frontend. */
interface Connection {
  readonly session: GuestSession;
  readonly ctrl: CtrlHandler;
  readonly maps: GrantMapping[];
  readonly port: EvtchnPort;
  readonly ringIds: number[];
  readonly pollerId: number | undefined;
  /** Control and data rings: their counters are published to the monitor until disconnect. */
  readonly rings: readonly BackRing[];
}

/** Counters of the service. */
export interface RdmaBackendStats {
  connects: number;
  disconnects: number;
  halted: number;
  teardownErrors: number;
  ctrlRequests: number;
  ctrlErrors: number;
  dataRequests: number;
  dataRejects: number;
  deferrals: number;
  /** Doorbell rounds a NIC refused (it went away: a lent NIC returned by force). */
  doorbellErrors: number;
}

/** The backend service; see the file comment. */
export class RdmaBackend {
  readonly limits: VrdmaLimits;
  readonly nics: readonly ServedNic[];
  readonly stats: RdmaBackendStats = {
    connects: 0,
    disconnects: 0,
    halted: 0,
    teardownErrors: 0,
    ctrlRequests: 0,
    ctrlErrors: 0,
    dataRequests: 0,
    dataRejects: 0,
    deferrals: 0,
    doorbellErrors: 0,
  };
  private readonly _codec = new CtrlCodec(protobuf);
  private readonly _conns = new Map<string, Connection>();
  private readonly _default: ServedNic;
  private readonly _featureCopy: boolean;
  private readonly _log: (line: string) => void;
  private readonly _doorbellLogged = new Set<string>();
  private readonly _doorbells: Doorbells;

  constructor(
    private readonly _hc: Hypercalls,
    nics: readonly BackendNic[],
    private readonly _server: RingServer,
    opts: RdmaBackendOptions = {},
  ) {
    if (nics.length === 0) throw pvError('PV_ERR_CONFIG', 'the RDMA backend needs at least one rdma-nic');
    this.limits = resolveLimits(opts.limits);
    const doorbells = new Doorbells(nics.map((n) => n.driver));
    this._doorbells = doorbells;
    this.nics = nics.map((n, index) => ({
      name: n.name,
      driver: n.driver,
      maxCqe: guestMaxCqe(n.driver.caps.maxCqe),
      index,
      doorbells,
    }));
    const def = opts.defaultNic === undefined ? this.nics[0] : this.nics.find((n) => n.name === opts.defaultNic);
    if (def === undefined) throw pvError('PV_ERR_CONFIG', `the backend does not own ${opts.defaultNic}`);
    this._default = def;
    this._featureCopy = opts.featureCopy ?? true;
    this._log = opts.log ?? (() => {});
    // One doorbell write per queue per round, for every guest's posts of that round, receive
    // queues first (Doorbells.ts).
    _server.addPoller({
      poll: () => {
        this.ringDoorbells();
        return 0;
      },
      outstanding: () => false,
    });
  }

  /** The NIC used when a frontend names none. */
  get defaultNic(): ServedNic {
    return this._default;
  }

  /**
   * Rings every doorbell owed (once per queue, receive queues first). A NIC that went away under
   * us (a lent NIC returned by force: PV_ERR_LEND_REVOKED) refuses its doorbells. That must not
   * end the serving loop (every guest of this domain would lose its backend): the other NICs are
   * rung one by one and it is counted. The guests of that NIC see their WRs flushed and later
   * ones refused (error WCs). Also called by the virtio-rdma service after its own poll.
   */
  ringDoorbells(): void {
    try {
      this._doorbells.flush();
    } catch (err) {
      this._doorbellFault(err);
      for (const n of this.nics) {
        try {
          n.driver.flush();
        } catch (e) {
          this._doorbellFault(e);
        }
      }
    }
  }

  /** The session of `front`'s device `devid`, if connected (tests and monitors). */
  session(front: number, devid: number): GuestSession | undefined {
    return this._conns.get(`${front}/${devid}`)?.session;
  }

  /** Connected frontends. */
  get connections(): number {
    return this._conns.size;
  }

  /** The xenbus hooks of one device, for BackendDirWatcher. */
  readonly hooks: HooksFactory = (front: DomId, devid: number): BackendHooks => {
    const key = `${front}/${devid}`;
    return {
      probe: () => this._probeKeys(),
      connect: (_dev, keys) => {
        this._disconnect(key);
        const conn = this._connect(front, keys);
        this._conns.set(key, conn);
        this.stats.connects++;
        this._log(`rdma backend: dom${front}/${devid} connected (${conn.session.mode} on ${conn.session.nic.name})`);
        return { 'port-id': String(conn.session.driver.portId) };
      },
      disconnect: async () => {
        // Flush only for a guest that lives on: the toolstack unplugged its device (its device
        // directory is gone, its domain is not). A dead guest's pages are not written at all.
        const st = this._hc.store;
        const alive = (await st.tryRead(`/local/domain/${front}`).catch(() => undefined)) !== undefined;
        const unplugged =
          (await st.tryRead(`/local/domain/${front}/device/${VRDMA_DEVICE_TYPE}/${devid}`).catch(() => '')) ===
          undefined;
        this._disconnect(key, alive && unplugged);
      },
    };
  };

  /** Counts a refused doorbell; logs the first of each kind. */
  private _doorbellFault(err: unknown): void {
    this.stats.doorbellErrors++;
    const msg = err instanceof Error ? err.message : String(err);
    if (this._doorbellLogged.has(msg)) return;
    this._doorbellLogged.add(msg);
    this._log(`rdma backend: a doorbell was refused, serving goes on: ${msg}`);
  }

  /** Disconnects every frontend (shutdown). */
  close(): void {
    for (const key of [...this._conns.keys()]) this._disconnect(key);
  }

  private _probeKeys(): Record<string, string> {
    const n = this._default;
    const l = this.limits;
    return formatBackendInfo({
      portId: n.driver.portId,
      maxQp: l.maxQp,
      maxCq: l.maxCq,
      maxMr: l.maxMr,
      maxPinnedPages: l.maxPinnedPages,
      maxOutstandingWr: l.maxOutstandingWr,
      maxCqe: n.maxCqe,
      maxQpWr: n.driver.caps.maxQpWr,
      featureCopy: this._featureCopy,
    });
  }

  private _connect(front: DomId, keys: Readonly<Record<string, string>>): Connection {
    const k = parseFrontendKeys(keys, PV_DATA_RING_ORDER);
    if (k.mode === 'copy' && !this._featureCopy)
      throw pvError('PV_ERR_NOT_SUPPORTED', 'this backend serves zero-copy only');
    const wanted = keys.device;
    const nic = wanted === undefined ? this._default : this.nics.find((n) => n.name === wanted);
    if (nic === undefined) throw pvError('PV_ERR_CONFIG', `this backend does not own ${String(wanted).slice(0, 32)}`);
    const hc = this._hc;
    const maps: GrantMapping[] = [];
    let port: EvtchnPort | undefined;
    let session: GuestSession | undefined;
    const ringIds: number[] = [];
    const rings: BackRing[] = [];
    try {
      maps.push(hc.grant.mapGrants(front, [grantRef(k.ctrlRingRef)], true));
      maps.push(hc.grant.mapGrants(front, k.dataRingRefs.map(grantRef) as GrantRef[], true));
      const ctrlRing = new BackRing(maps[0].view, PV_CTRL_SLOT_SIZE);
      const dataRing = new BackRing(maps[1].view, PV_DATA_SLOT_SIZE);
      rings.push(ctrlRing, dataRing);
      ctrlRing.counters.publish(hc.monitor, 'vrdma-ctrl', front, 'back');
      dataRing.counters.publish(hc.monitor, 'vrdma-data', front, 'back');
      port = hc.evtchn.bindInterdomain(front, evtchnPort(k.eventChannel));
      session = new GuestSession(hc, front, k.mode, nic, this.limits);
      if (k.mode === 'copy') session.copy = new CopyEngine(session);
      const ctrl = new CtrlHandler(session, this._codec);
      const data = new DataHandler(session);
      const onFatal = (code: string, message: string): void => {
        this.stats.halted++;
        this._log(`rdma backend: a ring of dom${front} halted: ${code}: ${message}`);
      };
      ringIds.push(this._server.add(ctrlRing, port, ctrl.handle, onFatal));
      ringIds.push(this._server.add(dataRing, port, data.handle, onFatal));
      const pollerId = session.copy ? this._server.addPoller(session.copy) : undefined;
      return { session, ctrl, maps, port, ringIds, pollerId, rings };
    } catch (err) {
      for (const id of ringIds) this._server.remove(id);
      for (const r of rings) r.counters.unpublish();
      session?.destroy();
      if (port !== undefined) hc.evtchn.close(port);
      for (const m of maps) hc.grant.unmapGrant(m.handle);
      throw err;
    }
  }

  /**
   * A live guest's device unplugged: before the QPs are destroyed (DESTROY_QP drops outstanding
   * WRs without a completion), move each to ERR: the NIC completes every WR still outstanding with WR_FLUSH_ERR, so a frontend
   * that is unplugged while it waits for a WR sees it fail instead of waiting for ever. In
   * zero-copy mode the CQEs land in the guest's own CQ ring (still mapped); in copy mode one last
   * drain of the device CQs copies them there. Returns the errors met (never throws).
   */
  private _flushQps(s: GuestSession): string[] {
    const errors: string[] = [];
    for (const [h, qp] of s.qps.entries()) {
      try {
        s.driver.modifyQp(qp.qpn, { qpState: QpState.ERR }, QpAttrMask.STATE);
      } catch (err) {
        errors.push(`QP ${h} to ERR: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    try {
      s.copy?.poll();
    } catch (err) {
      errors.push(`last copy-mode drain: ${err instanceof Error ? err.message : String(err)}`);
    }
    return errors;
  }

  private _disconnect(key: string, flush = false): void {
    const c = this._conns.get(key);
    if (c === undefined) return;
    this._conns.delete(key);
    for (const id of c.ringIds) this._server.remove(id);
    for (const r of c.rings) r.counters.unpublish();
    if (c.pollerId !== undefined) this._server.removePoller(c.pollerId);
    const s = c.session;
    for (const [k, v] of Object.entries(s.counters) as [keyof typeof s.counters, number][]) this.stats[k] += v;
    const errors = flush ? this._flushQps(s) : [];
    errors.push(...s.destroy());
    this.stats.teardownErrors += errors.length;
    for (const e of errors) this._log(`rdma backend: teardown of dom${s.front}: ${e}`);
    const hc = this._hc;
    try {
      hc.evtchn.close(c.port);
    } catch (err) {
      this.stats.teardownErrors++;
      this._log(`rdma backend: closing the event channel of dom${s.front}: ${String(err)}`);
    }
    for (const m of c.maps) hc.grant.unmapGrant(m.handle);
    this.stats.disconnects++;
    this._log(`rdma backend: dom${key} disconnected`);
  }
}
