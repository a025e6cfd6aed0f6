/**
 * The `paravirt` and `paravirt-copy` verbs providers: the guest frontend of the split RDMA
 * driver (Nanos & Koziris; compare VMware PVRDMA, reference §3.1). Verbs are forwarded to the
 * backend in the driver domain over two shared rings with one event channel (PvChannel.ts):
 * control commands synchronously over a protobuf control ring (CtrlClient.ts), postSend and
 * postRecv asynchronously over a binary data ring (DataPoster.ts). The provider grants the
 * backend what it needs — the rings, each MR's pages (refs carried indirectly), each CQ ring —
 * and the backend validates everything.
 *
 * Completions (the design choice issue 9 asks for): in `paravirt` (zero-copy) mode the CQ ring
 * lives in this guest's pages, which the backend grant-maps FOR THE NIC and creates the device
 * CQ on: the NIC writes CQEs straight into guest memory and `pollCq` reads the guest's own memory
 * — no round trip through the backend, no notification, on the completion path. MRs are mapped
 * once at registration and registered with the guest's addresses, so data moves with zero copy
 * and peers use the guest's addresses and rkeys. In `paravirt-copy` mode the same ring is filled
 * by the backend (it drains the device CQ, copies data out of its bounce buffers, restores wr_ids
 * and produces the guest's CQEs); the guest code is identical.
 *
 * WRs the backend refuses (a hostile or buggy request that reached it) come back as error work
 * completions through `takeCompletions`. Ordering caveat: they surface when the frontend drains
 * data responses (ring full, `progress()`, before sleeping), possibly after completions of WRs
 * posted later that the device executed.
 *
 * Connecting runs the xenbus handshake (VrdmaConnect.ts). A backend that goes away ends the
 * device: every later verb throws PV_ERR_DISCONNECTED (verbs objects do not survive a
 * reconnect). No WR is lost with it: the frontend tracks every QP's outstanding WRs
 * (WrTracker.ts; pollCq reports each CQE it takes from the ring through `ringCompletions`), and
 * once the device is lost pollCq hands each one still outstanding out as a WR_FLUSH_ERR
 * completion, after whatever the CQ ring still holds, exactly once (IB: a QP in ERR flushes).
 * `close()` destroys what is left (QPs, CQs, MRs, PDs), closes the xenbus device, and ends every
 * grant with endAccessDeferred (never revoking what is mapped).
 */

import { pvError } from '../../../protocol/errors.js';
import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import { cqBytes } from '../../../protocol/rdma/Cq.js';
import { indirectPagesFor, PV_MAX_MR_PAGES, pagesSpanned } from '../../../protocol/rdma/pv/PvConstants.js';
import type { VrdmaBackendInfo } from '../../../protocol/rdma/pv/VrdmaKeys.js';
import {
  Access,
  type QpAttr,
  QpAttrMask,
  QpState,
  type RecvWr,
  type SendWr,
  type Wc,
} from '../../../protocol/rdma/Verbs.js';
import type { DomId, GrantRef, GuestPhysAddr } from '../../../protocol/Types.js';
import { PAGE_SIZE } from '../../../protocol/Types.js';
import type { XenbusDevice } from '../../../protocol/xenbus/XenbusDevice.js';
import type { CreateProvider, ProviderCq, ProviderMr, ProviderQp, ProviderQpInit, VerbsProvider } from '../Provider.js';
import { CtrlClient, wireQpAttr } from './CtrlClient.js';
import { DataPoster, type FrontQp } from './DataPoster.js';
import type { PvChannel } from './PvChannel.js';
import { PvGrants } from './PvGrants.js';
import { connectVrdma, type Link, type ParavirtOptions, withTimeout } from './VrdmaConnect.js';
import { DeviceWrs, QpWrs } from './WrTracker.js';

export type { ParavirtOptions } from './VrdmaConnect.js';

/** Access bits that need the MR's pages granted writable. */
const WRITE_ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC;

/** A CQ ring this frontend allocated and granted. */
interface FrontCq {
  readonly addr: GuestPhysAddr;
  readonly pages: number;
  readonly refs: GrantRef[];
}

/**
 * Connects the `vrdma` device of `attachment` (VrdmaConnect.ts) and returns its provider, after
 * one QUERY_PORT through the backend proves the control path. PV_ERR_TIMEOUT if the toolstack
 * never plugs it or the backend never connects.
 */
export async function openParavirt(
  hc: Hypercalls,
  attachment: DeviceAttachment,
  opts: ParavirtOptions = {},
): Promise<ParavirtProvider> {
  const c = await connectVrdma(hc, attachment, opts);
  // INVARIANT: Connected implies setup ran (channel) and connected ran (info).
  const provider = new ParavirtProvider(hc, c.dev, c.link, c.backend, c.transport);
  try {
    provider.queryPort();
  } catch (err) {
    await provider.close();
    throw err;
  }
  return provider;
}

/** The provider-module entry point the verbs layer loads (ProviderLoader.ts). */
export const createProvider: CreateProvider = (env, attachment) => {
  const a = env.args as { spinBudget?: unknown };
  const spinBudget = typeof a.spinBudget === 'number' ? a.spinBudget : undefined;
  return openParavirt(env.hypercalls, attachment, { spinBudget });
};

/** A connected paravirtual device; see the file comment. */
export class ParavirtProvider implements VerbsProvider {
  readonly transport: string;
  private _portId: number;
  private readonly _ch: PvChannel;
  private readonly _ctrl: CtrlClient;
  private readonly _grants: PvGrants;
  private readonly _data: DataPoster;
  private readonly _pds = new Set<number>();
  private readonly _mrs = new Map<number, GrantRef[]>();
  private readonly _cqs = new Map<number, FrontCq>();
  private readonly _qps = new Map<number, FrontQp>();
  /** The same QPs by QP number, with their outstanding WRs (what a CQE names). */
  private readonly _wrs = new DeviceWrs();
  private _closed = false;

  /** Use `openParavirt`; the link must be Connected. */
  constructor(
    private readonly _hc: Hypercalls,
    private readonly _dev: XenbusDevice,
    private readonly _link: Link,
    backend: DomId,
    transport: string,
  ) {
    this.transport = transport;
    this._ch = _link.channel as PvChannel;
    this._portId = (_link.info as VrdmaBackendInfo).portId;
    this._ctrl = new CtrlClient(this._ch);
    this._grants = new PvGrants(_hc, backend);
    this._data = new DataPoster(this._ch, _hc.memory, this._qps);
  }

  /** Port id of the NIC the backend put this guest's QPs on. */
  get portId(): number {
    return this._portId;
  }

  /** The backend went away: the device is over (later verbs throw, outstanding WRs flush). */
  get lost(): boolean {
    return this._link.dead;
  }

  /** The rings and event channel (diagnostics and tests). */
  get channel(): PvChannel {
    return this._ch;
  }

  /** What the backend published (limits, features). */
  get backendInfo(): VrdmaBackendInfo {
    return this._link.info as VrdmaBackendInfo;
  }

  /** Counters: control calls, sleeps, refused WRs, grants still mapped, WRs outstanding and flushed. */
  get stats(): Record<string, number> {
    return {
      ...this._ch.stats,
      ...this._data.stats,
      lingeringGrants: this._grants.lingering,
      flushedWrs: this._wrs.flushed,
      duplicateCqes: this._wrs.duplicates,
      outstandingWrs: this._wrs.outstanding,
    };
  }

  /** WRs posted whose completion pollCq has not handed out yet (all QPs, both queues). */
  get outstandingWrs(): number {
    return this._wrs.outstanding;
  }

  /** QUERY_PORT through the backend; refreshes `portId`. */
  queryPort(): { portId: number; state: number; activeMtu: number } {
    this._live();
    const p = this._ctrl.get({ kind: 'queryPort' }, 'port');
    this._portId = p.portId;
    return p;
  }

  allocPd(): number {
    this._live();
    const pd = this._ctrl.get({ kind: 'allocPd' }, 'pd').pd;
    this._pds.add(pd);
    return pd;
  }

  deallocPd(pd: number): void {
    this._live();
    this._ctrl.run({ kind: 'deallocPd', pd });
    this._pds.delete(pd);
  }

  /** Grants the MR's pages (writable only if the access needs it) and registers them. */
  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr {
    this._live();
    const npages = pagesSpanned(addr, length);
    if (npages > PV_MAX_MR_PAGES) {
      throw pvError('PV_ERR_LIMIT', `an MR may span ${PV_MAX_MR_PAGES} pages, this one spans ${npages}`);
    }
    const mem = this._hc.memory;
    const refs = this._grants.grantRange(addr, npages, (access & WRITE_ACCESS) === 0);
    const nInd = indirectPagesFor(npages);
    let indAddr: GuestPhysAddr | undefined;
    let indRefs: GrantRef[] | undefined;
    try {
      indAddr = mem.allocPages(nInd);
      const v = mem.view(indAddr, nInd * PAGE_SIZE);
      new Uint32Array(v.buffer, v.byteOffset, npages).set(refs);
      indRefs = this._grants.grantRange(indAddr, nInd, true);
      const r = this._ctrl.get({ kind: 'regMr', pd, addr, length, access, npages, indirectRefs: indRefs }, 'mr');
      this._mrs.set(r.mr, refs);
      return { handle: r.mr, lkey: r.lkey, rkey: r.rkey };
    } catch (err) {
      this._grants.end(refs);
      throw err;
    } finally {
      // The backend copied the refs out and unmapped the indirect pages before answering.
      if (indAddr !== undefined) {
        if (indRefs !== undefined) this._grants.end(indRefs, { addr: indAddr, pages: nInd });
        else mem.freePages(indAddr, nInd);
      }
    }
  }

  deregMr(mr: number): void {
    this._live();
    const refs = this._mrs.get(mr);
    if (refs === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no MR ${mr}`);
    this._ctrl.run({ kind: 'deregMr', mr });
    this._mrs.delete(mr);
    this._grants.end(refs);
  }

  /** Allocates the CQ ring in this guest's pages and grants it (see the file comment). */
  createCq(entries: number): ProviderCq {
    this._live();
    let n = 1;
    while (n < entries) n *= 2;
    const max = this.backendInfo.maxCqe;
    if (n > max) throw pvError('PV_ERR_LIMIT', `CQ of ${entries} entries: the backend allows ${max}`);
    const pages = Math.ceil(cqBytes(n) / PAGE_SIZE);
    const addr = this._hc.memory.allocPages(pages);
    let refs: GrantRef[];
    try {
      refs = this._grants.grantRange(addr, pages, false);
    } catch (err) {
      this._hc.memory.freePages(addr, pages);
      throw err;
    }
    try {
      const r = this._ctrl.get({ kind: 'createCq', entries: n, ringRefs: refs }, 'cq');
      this._cqs.set(r.cq, { addr, pages, refs });
      return { handle: r.cq, entries: n, ring: addr };
    } catch (err) {
      this._grants.end(refs, { addr, pages });
      throw err;
    }
  }

  destroyCq(cq: number): void {
    this._live();
    const rec = this._cqs.get(cq);
    if (rec === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no CQ ${cq}`);
    this._ctrl.run({ kind: 'destroyCq', cq });
    this._cqs.delete(cq);
    this._data.errorWcs.delete(cq);
    this._grants.end(rec.refs, { addr: rec.addr, pages: rec.pages });
  }

  createQp(init: ProviderQpInit): ProviderQp {
    this._live();
    const r = this._ctrl.get(
      {
        kind: 'createQp',
        pd: init.pd,
        sendCq: init.sendCq,
        recvCq: init.recvCq,
        cap: { ...init.cap },
        sqSigAll: init.sqSigAll,
      },
      'qp',
    );
    const q: FrontQp = {
      handle: r.qp,
      qpNum: r.qpNum,
      sendCq: init.sendCq,
      recvCq: init.recvCq,
      sqSigAll: init.sqSigAll,
      // Sized by the caps asked for (validated by the verbs layer), not by what the backend
      // says it granted: an untrusted backend must not choose how much this guest allocates.
      wrs: new QpWrs(init.cap.maxSendWr, init.cap.maxRecvWr),
    };
    this._qps.set(r.qp, q);
    this._wrs.add(q);
    return { handle: r.qp, qpNum: r.qpNum, cap: r.cap };
  }

  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this._live();
    this._ctrl.run({ kind: 'modifyQp', qp, mask, attr: wireQpAttr(attr) });
    // → RESET empties both queues without completions (ibv_modify_qp.3): nothing to flush later.
    if ((mask & QpAttrMask.STATE) !== 0 && attr.qpState === QpState.RESET) {
      const wrs = this._qps.get(qp)?.wrs;
      wrs?.send.clear();
      wrs?.recv.clear();
    }
  }

  destroyQp(qp: number): void {
    this._live();
    this._ctrl.run({ kind: 'destroyQp', qp });
    const q = this._qps.get(qp);
    if (q !== undefined) this._wrs.delete(q.qpNum);
    this._qps.delete(qp);
  }

  postSend(qp: number, wr: SendWr): void {
    this._live();
    this._data.postSend(qp, wr);
  }

  postRecv(qp: number, wr: RecvWr): void {
    this._live();
    this._data.postRecv(qp, wr);
  }

  /** Publishes the queued WRs (one notification at most, and only if the backend sleeps). */
  flush(): void {
    if (!this._closed && !this._link.dead) this._ch.push();
  }

  /** Publishes what is queued and takes the backend's responses (refusals become error WCs). */
  progress(): void {
    if (this._closed || this._link.dead) return;
    this._ch.push();
    this._ch.drainData();
  }

  /** CQEs pollCq took from a ring: each retires its WRs; duplicates of a flush are dropped (DeviceWrs). */
  ringCompletions(_cq: number, wc: Wc[], start: number, n: number): number {
    return this._wrs.retire(wc, start, n, this._link.dead);
  }

  /**
   * Refused WRs first; then, once the device is lost, every WR still outstanding on a queue that
   * completes on `cq`, as WR_FLUSH_ERR. pollCq calls this only when the ring came up short of
   * what it asked (drained), so the ring's CQEs come out first; a CQE landing later for a WR
   * flushed here is dropped by `ringCompletions`, so each WR is handed out once.
   */
  takeCompletions(cq: number, out: Wc[], start: number, max: number): number {
    const n = this._data.take(cq, out, start, max);
    if (!this._link.dead || n >= max) return n;
    return n + this._wrs.flush(cq, out, start + n, max - n);
  }

  /** Destroys what is left, closes the device, ends every grant. */
  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    if (!this._link.dead) {
      const quietly = (fn: () => void): void => {
        try {
          fn();
        } catch {
          // Teardown goes on: the backend destroys whatever is left when the device closes.
        }
      };
      for (const qp of [...this._qps.keys()]) quietly(() => this._ctrl.run({ kind: 'destroyQp', qp }));
      for (const [cq, rec] of [...this._cqs]) {
        quietly(() => this._ctrl.run({ kind: 'destroyCq', cq }));
        this._grants.end(rec.refs, { addr: rec.addr, pages: rec.pages });
      }
      for (const [mr, refs] of [...this._mrs]) {
        quietly(() => this._ctrl.run({ kind: 'deregMr', mr }));
        this._grants.end(refs);
      }
      for (const pd of [...this._pds]) quietly(() => this._ctrl.run({ kind: 'deallocPd', pd }));
    } else {
      for (const rec of this._cqs.values()) this._grants.end(rec.refs, { addr: rec.addr, pages: rec.pages });
      for (const refs of this._mrs.values()) this._grants.end(refs);
    }
    this._qps.clear();
    this._wrs.clear();
    this._cqs.clear();
    this._mrs.clear();
    this._pds.clear();
    try {
      await withTimeout(this._dev.close(), 10_000, 'closing the vrdma device');
    } catch {
      await this._dev.destroy();
    }
    await this._grants.settle();
  }

  private _live(): void {
    if (this._closed) throw pvError('PV_ERR_DISCONNECTED', 'the paravirt device is closed');
    if (this._link.dead) throw pvError('PV_ERR_DISCONNECTED', 'the vrdma backend disconnected');
  }
}
