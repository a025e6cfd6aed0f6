/**
 * Control commands on PDs, CQs and QPs for one guest. Every argument is the guest's (hostile):
 * handles are looked up in the guest's own tables only, sizes are checked against the NIC and
 * the guest's limits before the device is asked, and a failure after a partial step undoes it.
 *
 * CQ rings live in the guest's pages, granted writable:
 *  - zero-copy: mapped FOR THE NIC and the device CQ is created on that device address
 *    (`createCqAt`), so the NIC writes CQEs straight into guest memory and the guest polls its
 *    own memory — no backend on the completion path;
 *  - copy: mapped for the backend only; the device CQ is a ring in driver-domain memory that the
 *    backend drains, copying data out and producing the guest's CQEs (CopyEngine.ts).
 * Copy mode creates every device QP with sq_sig_all so each WR's bounce space is freed by its
 * completion; the guest's own sq_sig_all decides which completions it sees.
 */

import { pvError } from '../../protocol/errors.js';
import type { GrantMapping } from '../../protocol/Hypercalls.js';
import { cqBytes } from '../../protocol/rdma/Cq.js';
import type { CtrlCommand, CtrlResult } from '../../protocol/rdma/pv/CtrlSchema.js';
import { Access, QP_ATTR_KNOWN_MASK, type QpAttr, QpAttrMask, QpState } from '../../protocol/rdma/Verbs.js';
import { type GrantRef, iova, PAGE_SIZE } from '../../protocol/Types.js';
import type { CqRec, GuestSession, PdRec, QpRec } from './GuestSession.js';
import { grantPages, mapForDevice, mapGuestRange } from './MrCommands.js';

type CreateCqCmd = Extract<CtrlCommand, { kind: 'createCq' }>;
type CreateQpCmd = Extract<CtrlCommand, { kind: 'createQp' }>;
type ModifyQpCmd = Extract<CtrlCommand, { kind: 'modifyQp' }>;

/** Smallest device CQ behind a copy-mode guest CQ. */
const COPY_DEVICE_CQE = 1024;

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** AllocPd: a device PD of its own (copy mode: with the guest's bounce space registered in it). */
export function allocPd(s: GuestSession): CtrlResult {
  if (s.pds.size >= s.pds.capacity) throw pvError('PV_ERR_LIMIT', `a guest may hold at most ${s.pds.capacity} PDs`);
  const pdn = s.driver.allocPd();
  const rec: PdRec = { pdn, users: 0, bounceMr: undefined };
  if (s.copy) {
    try {
      rec.bounceMr = s.driver.regMr(pdn, s.copy.bounceAddr, s.copy.bounceBytes, Access.LOCAL_WRITE);
    } catch (err) {
      s.driver.deallocPd(pdn);
      throw err;
    }
  }
  return { kind: 'pd', pd: s.pds.add(rec) };
}

/** DeallocPd: refused while MRs or QPs use it. */
export function deallocPd(s: GuestSession, handle: number): void {
  const pd = s.pds.require(handle);
  if (pd.users > 0) throw pvError('PV_ERR_RDMA_BUSY', `PD ${handle} still has ${pd.users} MR(s) or QP(s)`);
  if (pd.bounceMr) s.driver.deregMr(pd.bounceMr.lkey);
  pd.bounceMr = undefined;
  s.driver.deallocPd(pd.pdn);
  s.pds.delete(handle);
}

/** CreateCq over the guest's ring pages; see the file comment. */
export function createCq(s: GuestSession, c: CreateCqCmd): CtrlResult {
  const entries = c.entries;
  if (entries < 1 || (entries & (entries - 1)) !== 0) {
    throw pvError('PV_ERR_BAD_LENGTH', `CQ entries ${entries} is not a power of two`);
  }
  if (entries > s.nic.maxCqe) throw pvError('PV_ERR_LIMIT', `CQ of ${entries} entries (at most ${s.nic.maxCqe})`);
  const bytes = cqBytes(entries);
  const pages = Math.ceil(bytes / PAGE_SIZE);
  const byGpa = s.addressing === 'gpa';
  if (c.ringRefs.length !== (byGpa ? 0 : pages)) {
    throw pvError(
      'PV_ERR_BAD_REQUEST',
      byGpa
        ? 'virtio-rdma names a CQ ring by its address: no refs'
        : `a ${entries}-entry CQ ring is ${pages} page(s), got ${c.ringRefs.length} refs`,
    );
  }
  const ringGpa = c.ringGpa ?? 0;
  if (byGpa && (ringGpa < 0 || ringGpa % PAGE_SIZE !== 0)) {
    // -1: the codec's mark for a value that is not a safe u64. GPA 0 is a page like any other
    // (first-fit allocation hands it out); the foreign map checks the range is the guest's.
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `CQ ring address ${ringGpa} is not a page-aligned guest address`);
  }
  if (s.cqs.size >= s.cqs.capacity) throw pvError('PV_ERR_LIMIT', `a guest may hold at most ${s.cqs.capacity} CQs`);
  const refs = c.ringRefs as readonly GrantRef[];
  let rec: CqRec;
  if (s.mode === 'zero-copy') {
    const { mapping, iova: ringIova } = byGpa ? mapGuestRange(s, ringGpa, bytes, true) : mapForDevice(s, refs, true);
    let cqn: number;
    try {
      cqn = s.driver.createCqAt(entries, iova(ringIova));
    } catch (err) {
      mapping.release();
      throw err;
    }
    rec = { entries, mapping, cqn, users: 0, devCq: undefined, guestWords: undefined, prod: 0, overflows: 0 };
  } else {
    let mapping: GrantMapping;
    try {
      mapping = s.hc.grant.mapGrants(s.front, refs, true);
    } catch (err) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `cannot map the CQ ring: ${err instanceof Error ? err.message : err}`);
    }
    let devCq: CqRec['devCq'];
    try {
      // The device ring only has to absorb what arrives between two of our polls; the guest's
      // ring is the bound the guest chose. A larger device ring keeps a burst from overflowing
      // here before the guest ring has even filled.
      devCq = s.driver.createCq(Math.max(entries, Math.min(COPY_DEVICE_CQE, s.driver.caps.maxCqe)));
    } catch (err) {
      s.hc.grant.unmapGrant(mapping.handle);
      throw err;
    }
    // INVARIANT: the mapping starts on a page boundary, so the view is 4-aligned.
    const guestWords = new Int32Array(mapping.view.buffer, mapping.view.byteOffset, bytes >> 2);
    rec = {
      entries,
      mapping: grantPages(s, mapping),
      cqn: devCq.cqn,
      users: 0,
      devCq,
      guestWords,
      prod: 0,
      overflows: 0,
    };
    s.copy?.addCq(rec);
  }
  return { kind: 'cq', cq: s.cqs.add(rec), entries };
}

/** DestroyCq: refused while QPs use it; the device stops writing before the ring is unmapped. */
export function destroyCq(s: GuestSession, handle: number): void {
  const cq = s.cqs.require(handle);
  if (cq.users > 0) throw pvError('PV_ERR_RDMA_BUSY', `CQ ${handle} is used by ${cq.users} QP queue(s)`);
  s.copy?.removeCq(cq);
  s.driver.destroyCq(cq.cqn);
  cq.mapping.release();
  s.cqs.delete(handle);
}

/** CreateQp: checked against the NIC's depth and the guest's QP and outstanding-WR limits. */
export function createQp(s: GuestSession, c: CreateQpCmd): CtrlResult {
  const pd = s.pds.require(c.pd);
  const sendCq = s.cqs.require(c.sendCq);
  const recvCq = s.cqs.require(c.recvCq);
  const maxWr = s.driver.caps.maxQpWr;
  const cap = c.cap;
  if (cap.maxSendWr > maxWr || cap.maxRecvWr > maxWr) {
    throw pvError('PV_ERR_LIMIT', `QP depth ${Math.max(cap.maxSendWr, cap.maxRecvWr)} (the NIC allows ${maxWr})`);
  }
  const depth = pow2AtLeast(Math.max(1, cap.maxSendWr)) + pow2AtLeast(Math.max(1, cap.maxRecvWr));
  if (s.wrBudget + depth > s.limits.maxOutstandingWr) {
    throw pvError(
      'PV_ERR_LIMIT',
      `QP queues of ${depth} WRs: the guest's QPs may hold ${s.limits.maxOutstandingWr} WRs in all`,
    );
  }
  if (s.qps.size >= s.qps.capacity) throw pvError('PV_ERR_LIMIT', `a guest may hold at most ${s.qps.capacity} QPs`);
  const dq = s.driver.createQp({
    pd: pd.pdn,
    sendCq: sendCq.cqn,
    recvCq: recvCq.cqn,
    cap: {
      maxSendWr: cap.maxSendWr,
      maxRecvWr: cap.maxRecvWr,
      maxSendSge: cap.maxSendSge,
      maxRecvSge: cap.maxRecvSge,
      maxInlineData: cap.maxInlineData,
    },
    sqSigAll: s.mode === 'copy' ? true : c.sqSigAll,
  });
  const granted = dq.cap.maxSendWr + dq.cap.maxRecvWr;
  const rec: QpRec = { qpn: dq.qpn, pd, sendCq, recvCq, cap: dq.cap, sqSigAll: c.sqSigAll, depth: granted };
  const handle = s.qps.add(rec);
  pd.users++;
  sendCq.users++;
  recvCq.users++;
  s.wrBudget += granted;
  return { kind: 'qp', qp: handle, qpNum: dq.qpn, cap: dq.cap };
}

/** ModifyQp: known mask bits only; the NIC checks the transition. */
export function modifyQp(s: GuestSession, c: ModifyQpCmd): void {
  const qp = s.qps.require(c.qp);
  if ((c.mask & ~QP_ATTR_KNOWN_MASK) !== 0)
    throw pvError('PV_ERR_BAD_REQUEST', `unknown attribute mask bits ${c.mask}`);
  const a = c.attr;
  const attr: QpAttr = {
    qpState: a.qpState,
    curQpState: a.curQpState,
    qpAccessFlags: a.qpAccessFlags,
    pkeyIndex: a.pkeyIndex,
    portNum: a.portNum,
    pathMtu: a.pathMtu,
    destQpNum: a.destQpNum,
    rqPsn: a.rqPsn,
    sqPsn: a.sqPsn,
    maxRdAtomic: a.maxRdAtomic,
    maxDestRdAtomic: a.maxDestRdAtomic,
    minRnrTimer: a.minRnrTimer,
    timeout: a.timeout,
    retryCnt: a.retryCnt,
    rnrRetry: a.rnrRetry,
    ahAttr: { dlid: a.dlid },
  };
  s.driver.modifyQp(qp.qpn, attr, c.mask);
  // RESET empties the queues without completions: drop the WRs we were tracking for them.
  if ((c.mask & QpAttrMask.STATE) !== 0 && a.qpState === QpState.RESET) s.copy?.forgetQp(qp);
}

/** DestroyQp: the device drops the QP's queues; tracked copy-mode WRs are freed. */
export function destroyQp(s: GuestSession, handle: number): void {
  const qp = s.qps.require(handle);
  s.driver.destroyQp(qp.qpn);
  s.copy?.forgetQp(qp);
  s.qps.delete(handle);
  qp.pd.users--;
  qp.sendCq.users--;
  qp.recvCq.users--;
  s.wrBudget -= qp.depth;
}
