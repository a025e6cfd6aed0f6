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
 *
 * This file is the verbs face (liveness, the data path, completions, close); the objects, their
 * grants and their teardown are kept in PvObjects.ts. The same class is the `virtio` and
 * `virtio-packed` provider (frontend/verbs/virtio/VirtioProvider.ts): there the transport is a
 * VirtioChannel (RdmaChannel.ts) and memory is named by guest-physical address (GpaExport), and
 * everything above — objects, data path, WR tracking, flush on loss — is this code.
 */

import { pvError } from '../../../protocol/errors.js';
import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import type { VrdmaBackendInfo } from '../../../protocol/rdma/pv/VrdmaKeys.js';
import type { QpAttr, RecvWr, SendWr, Wc } from '../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import type { CreateProvider, ProviderCq, ProviderMr, ProviderQp, ProviderQpInit, VerbsProvider } from '../Provider.js';
import { CtrlClient } from './CtrlClient.js';
import { DataPoster } from './DataPoster.js';
import type { PvChannel } from './PvChannel.js';
import { PvGrants } from './PvGrants.js';
import { PvObjects } from './PvObjects.js';
import type { MemoryExport, RdmaChannel, RdmaDeviceHandle } from './RdmaChannel.js';
import { connectVrdma, type ParavirtOptions, withTimeout } from './VrdmaConnect.js';

export type { ParavirtOptions } from './VrdmaConnect.js';

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
  return proveControlPath(new ParavirtProvider<PvChannel>(hc, c.dev, c.link, new PvGrants(hc, c.backend), c.transport));
}

/** One QUERY_PORT through the backend proves a new provider's control path; closes it if that fails. */
export async function proveControlPath<C extends RdmaChannel>(p: ParavirtProvider<C>): Promise<ParavirtProvider<C>> {
  try {
    p.queryPort();
  } catch (err) {
    await p.close();
    throw err;
  }
  return p;
}

/** The provider-module entry point the verbs layer loads (ProviderLoader.ts). */
export const createProvider: CreateProvider = (env, attachment) => {
  const a = env.args as { spinBudget?: unknown };
  const spinBudget = typeof a.spinBudget === 'number' ? a.spinBudget : undefined;
  return openParavirt(env.hypercalls, attachment, { spinBudget });
};

/** What a provider reads of its device's link (VrdmaConnect.ts's Link, or virtio's). */
export interface ProviderLink<C extends RdmaChannel> {
  readonly channel: C | undefined;
  readonly info: VrdmaBackendInfo | undefined;
  /** The backend went away (or the device broke): the device is over. */
  readonly dead: boolean;
}

/**
 * A connected paravirtual device; see the file comment. The transport is `C` (PvChannel for
 * vrdma, VirtioChannel for virtio-rdma) with its MemoryExport; everything else is shared.
 */
export class ParavirtProvider<C extends RdmaChannel = PvChannel> implements VerbsProvider {
  readonly transport: string;
  private _portId: number;
  private readonly _ch: C;
  private readonly _ctrl: CtrlClient;
  private readonly _grants: MemoryExport;
  private readonly _data: DataPoster;
  /** PDs, MRs, CQs and QPs (with their outstanding WRs) and their grants. */
  private readonly _objs: PvObjects;
  private _closed = false;

  /** Use `openParavirt` (or `openVirtio`); the link must be connected (channel and info set). */
  constructor(
    hc: Hypercalls,
    private readonly _dev: RdmaDeviceHandle,
    private readonly _link: ProviderLink<C>,
    grants: MemoryExport,
    transport: string,
  ) {
    this.transport = transport;
    this._ch = _link.channel as C;
    this._portId = (_link.info as VrdmaBackendInfo).portId;
    this._ctrl = new CtrlClient(this._ch);
    this._grants = grants;
    this._objs = new PvObjects(hc.memory, this._ctrl, this._grants, (cq) => this._data.errorWcs.delete(cq));
    this._data = new DataPoster(this._ch, hc.memory, this._objs.qps);
  }

  /** Port id of the NIC the backend put this guest's QPs on. */
  get portId(): number {
    return this._portId;
  }

  /** The backend went away: the device is over (later verbs throw, outstanding WRs flush). */
  get lost(): boolean {
    return this._link.dead;
  }

  /** The rings and event channel, or the virtqueues (diagnostics and tests). */
  get channel(): C {
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
      flushedWrs: this._objs.wrs.flushed,
      duplicateCqes: this._objs.wrs.duplicates,
      outstandingWrs: this._objs.wrs.outstanding,
    };
  }

  /** WRs posted whose completion pollCq has not handed out yet (all QPs, both queues). */
  get outstandingWrs(): number {
    return this._objs.wrs.outstanding;
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
    return this._objs.allocPd();
  }

  deallocPd(pd: number): void {
    this._live();
    this._objs.deallocPd(pd);
  }

  /** Grants the MR's pages (writable only if the access needs it) and registers them. */
  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr {
    this._live();
    return this._objs.regMr(pd, addr, length, access);
  }

  deregMr(mr: number): void {
    this._live();
    this._objs.deregMr(mr);
  }

  /** Allocates the CQ ring in this guest's pages and grants it (see the file comment). */
  createCq(entries: number): ProviderCq {
    this._live();
    return this._objs.createCq(entries, this.backendInfo.maxCqe);
  }

  destroyCq(cq: number): void {
    this._live();
    this._objs.destroyCq(cq);
  }

  createQp(init: ProviderQpInit): ProviderQp {
    this._live();
    return this._objs.createQp(init);
  }

  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this._live();
    this._objs.modifyQp(qp, attr, mask);
  }

  destroyQp(qp: number): void {
    this._live();
    this._objs.destroyQp(qp);
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
    return this._objs.wrs.retire(wc, start, n, this._link.dead);
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
    return n + this._objs.wrs.flush(cq, out, start + n, max - n);
  }

  /** Destroys what is left, closes the device, ends every grant. */
  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    this._objs.releaseAll(this._link.dead);
    try {
      await withTimeout(this._dev.close(), 10_000, `closing the ${this.transport} device`);
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
