/**
 * The verbs objects of one paravirt device, as the guest frontend keeps them: PDs, MRs with the
 * grants of their pages, the CQ rings this guest allocated and granted, QPs with their
 * outstanding WRs (WrTracker.ts). ParavirtProvider.ts is the verbs face and checks the device is
 * live; this file does what each object needs on the way in and out — the control command
 * (CtrlClient.ts), the grants (PvGrants.ts: an MR's pages plus the indirect pages that carry its
 * refs, a CQ ring), the record — and the teardown at close: destroy what is left through the
 * backend while it is there, end every grant either way (endAccessDeferred, never revoking what
 * is mapped).
 */

import { pvError } from '../../../protocol/errors.js';
import type { GuestMemory } from '../../../protocol/Hypercalls.js';
import { cqBytes } from '../../../protocol/rdma/Cq.js';
import { indirectPagesFor, PV_MAX_MR_PAGES, pagesSpanned } from '../../../protocol/rdma/pv/PvConstants.js';
import { Access, type QpAttr, QpAttrMask, QpState } from '../../../protocol/rdma/Verbs.js';
import type { GrantRef, GuestPhysAddr } from '../../../protocol/Types.js';
import { PAGE_SIZE } from '../../../protocol/Types.js';
import type { ProviderCq, ProviderMr, ProviderQp, ProviderQpInit } from '../Provider.js';
import { type CtrlClient, wireQpAttr } from './CtrlClient.js';
import type { FrontQp } from './DataPoster.js';
import type { MemoryExport } from './RdmaChannel.js';
import { DeviceWrs, QpWrs } from './WrTracker.js';

/** Access bits that need the MR's pages granted writable. */
const WRITE_ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC;

/** A CQ ring this frontend allocated and granted. */
interface FrontCq {
  readonly addr: GuestPhysAddr;
  readonly pages: number;
  readonly refs: GrantRef[];
}

/** The objects of one device and their grants; see the file comment. */
export class PvObjects {
  /** QPs by handle (DataPoster posts on them). */
  readonly qps = new Map<number, FrontQp>();
  /** The same QPs by QP number, with their outstanding WRs (what a CQE names). */
  readonly wrs = new DeviceWrs();
  private readonly _pds = new Set<number>();
  private readonly _mrs = new Map<number, GrantRef[]>();
  private readonly _cqs = new Map<number, FrontCq>();

  /** `onCqDestroyed` drops what the data path still holds for a CQ the backend destroyed. */
  constructor(
    private readonly _mem: GuestMemory,
    private readonly _ctrl: CtrlClient,
    private readonly _grants: MemoryExport,
    private readonly _onCqDestroyed: (cq: number) => void,
  ) {}

  allocPd(): number {
    const pd = this._ctrl.get({ kind: 'allocPd' }, 'pd').pd;
    this._pds.add(pd);
    return pd;
  }

  deallocPd(pd: number): void {
    this._ctrl.run({ kind: 'deallocPd', pd });
    this._pds.delete(pd);
  }

  /** Grants the MR's pages (writable only if the access needs it) and registers them. */
  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr {
    const npages = pagesSpanned(addr, length);
    if (npages > PV_MAX_MR_PAGES) {
      throw pvError('PV_ERR_LIMIT', `an MR may span ${PV_MAX_MR_PAGES} pages, this one spans ${npages}`);
    }
    const mem = this._mem;
    if (this._grants.byAddress) {
      // virtio-rdma: the MR is its guest-physical range; the device model maps it for the NIC.
      const r = this._ctrl.get({ kind: 'regMr', pd, addr, length, access, npages, indirectRefs: [] }, 'mr');
      this._mrs.set(r.mr, []);
      return { handle: r.mr, lkey: r.lkey, rkey: r.rkey };
    }
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
    const refs = this._mrs.get(mr);
    if (refs === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no MR ${mr}`);
    this._ctrl.run({ kind: 'deregMr', mr });
    this._mrs.delete(mr);
    this._grants.end(refs);
  }

  /** Allocates the CQ ring in this guest's pages and grants it (ParavirtProvider.ts, file comment). */
  createCq(entries: number, maxCqe: number): ProviderCq {
    let n = 1;
    while (n < entries) n *= 2;
    if (n > maxCqe) throw pvError('PV_ERR_LIMIT', `CQ of ${entries} entries: the backend allows ${maxCqe}`);
    const pages = Math.ceil(cqBytes(n) / PAGE_SIZE);
    const addr = this._mem.allocPages(pages);
    let refs: GrantRef[];
    try {
      refs = this._grants.grantRange(addr, pages, false);
    } catch (err) {
      this._mem.freePages(addr, pages);
      throw err;
    }
    try {
      // ringGpa is what a byAddress transport maps (refs are then empty); grant backends ignore it.
      const r = this._ctrl.get({ kind: 'createCq', entries: n, ringRefs: refs, ringGpa: addr }, 'cq');
      this._cqs.set(r.cq, { addr, pages, refs });
      return { handle: r.cq, entries: n, ring: addr };
    } catch (err) {
      this._grants.end(refs, { addr, pages });
      throw err;
    }
  }

  destroyCq(cq: number): void {
    const rec = this._cqs.get(cq);
    if (rec === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no CQ ${cq}`);
    this._ctrl.run({ kind: 'destroyCq', cq });
    this._cqs.delete(cq);
    this._onCqDestroyed(cq);
    this._grants.end(rec.refs, { addr: rec.addr, pages: rec.pages });
  }

  createQp(init: ProviderQpInit): ProviderQp {
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
    this.qps.set(r.qp, q);
    this.wrs.add(q);
    return { handle: r.qp, qpNum: r.qpNum, cap: r.cap };
  }

  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this._ctrl.run({ kind: 'modifyQp', qp, mask, attr: wireQpAttr(attr) });
    // → RESET empties both queues without completions (ibv_modify_qp.3): nothing to flush later.
    if ((mask & QpAttrMask.STATE) !== 0 && attr.qpState === QpState.RESET) {
      const wrs = this.qps.get(qp)?.wrs;
      wrs?.send.clear();
      wrs?.recv.clear();
    }
  }

  destroyQp(qp: number): void {
    this._ctrl.run({ kind: 'destroyQp', qp });
    const q = this.qps.get(qp);
    if (q !== undefined) this.wrs.delete(q.qpNum);
    this.qps.delete(qp);
  }

  /**
   * Close: destroys what is left (QPs, CQs, MRs, PDs) through the backend unless it is `lost`,
   * ends every grant either way, and forgets every object.
   */
  releaseAll(lost: boolean): void {
    if (!lost) {
      const quietly = (fn: () => void): void => {
        try {
          fn();
        } catch {
          // Teardown goes on: the backend destroys whatever is left when the device closes.
        }
      };
      for (const qp of [...this.qps.keys()]) quietly(() => this._ctrl.run({ kind: 'destroyQp', qp }));
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
    this.qps.clear();
    this.wrs.clear();
    this._cqs.clear();
    this._mrs.clear();
    this._pds.clear();
  }
}
