/**
 * Connected RC endpoints over two real NIC models with the native driver (TwoNics.ts): a PD, a
 * CQ, a QP and a 64 KiB MR on each side, both QPs brought to RTS toward each other, plus
 * helpers to fill, compare and reap completions. Shared by the driver's end-to-end tests.
 */

import assert from 'node:assert/strict';
import type { RdmaNicDriver } from '../../../../drivers/rdma-nic/RdmaNicDriver.js';
import { Access, emptyWc, QpAttrMask, type QpCap, QpState, type Wc } from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { type Side, twoNics } from './TwoNics.js';

/** Bytes of each side's MR. */
export const BYTES = 64 * 1024;
/** Every access right. */
export const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
/** QP capabilities of every endpoint. */
export const CAP: QpCap = { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 2, maxRecvSge: 2, maxInlineData: 64 };

/** One connected side. */
export interface End {
  readonly s: Side;
  readonly drv: RdmaNicDriver;
  readonly pd: number;
  readonly cq: number;
  readonly qpn: number;
  readonly buf: GuestPhysAddr;
  readonly lkey: number;
  readonly rkey: number;
}

/** Creates PD, CQ, QP, buffer and MR on `s`. */
export function end(s: Side, cap = CAP): End {
  const drv = s.drv;
  const pd = drv.allocPd();
  const cq = drv.createCq(64).cqn;
  const qp = drv.createQp({ pd, sendCq: cq, recvCq: cq, cap, sqSigAll: false });
  const buf = drv.allocBuffer(BYTES).addr;
  const mr = drv.regMr(pd, buf, BYTES, ALL);
  return { s, drv, pd, cq, qpn: qp.qpn, buf, lkey: mr.lkey, rkey: mr.rkey };
}

/** RESET → INIT → RTR → RTS toward `peer`. */
export function rts(e: End, peer: End): void {
  e.drv.modifyQp(
    e.qpn,
    { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: ALL },
    QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
  );
  e.drv.modifyQp(
    e.qpn,
    {
      qpState: QpState.RTR,
      ahAttr: { dlid: peer.drv.portId },
      pathMtu: 5,
      destQpNum: peer.qpn,
      rqPsn: 0,
      maxDestRdAtomic: 16,
      minRnrTimer: 1,
    },
    QpAttrMask.STATE |
      QpAttrMask.AV |
      QpAttrMask.PATH_MTU |
      QpAttrMask.DEST_QPN |
      QpAttrMask.RQ_PSN |
      QpAttrMask.MAX_DEST_RD_ATOMIC |
      QpAttrMask.MIN_RNR_TIMER,
  );
  e.drv.modifyQp(
    e.qpn,
    { qpState: QpState.RTS, sqPsn: 0, maxRdAtomic: 16, retryCnt: 7, rnrRetry: 1, timeout: 14 },
    QpAttrMask.STATE |
      QpAttrMask.SQ_PSN |
      QpAttrMask.MAX_QP_RD_ATOMIC |
      QpAttrMask.RETRY_CNT |
      QpAttrMask.RNR_RETRY |
      QpAttrMask.TIMEOUT,
  );
}

/** Two connected endpoints on two NICs of one fabric. */
export function pair(mode: 'inline' | 'dedicated' = 'inline') {
  const nics = twoNics(mode);
  const a = end(nics.a);
  const b = end(nics.b);
  rts(a, b);
  rts(b, a);
  return { a, b, nics };
}

/** Fills the first `len` bytes of e's buffer with a pattern. */
export function fill(e: End, seed: number, len = BYTES): void {
  const v = e.s.mem.view(e.buf, len);
  for (let i = 0; i < len; i++) v[i] = (i * 31 + seed) & 0xff;
}

/** True when the two ranges hold the same bytes. */
export function same(x: End, xOff: number, y: End, yOff: number, len: number): boolean {
  return (
    Buffer.compare(
      x.s.mem.view((x.buf + xOff) as GuestPhysAddr, len),
      y.s.mem.view((y.buf + yOff) as GuestPhysAddr, len),
    ) === 0
  );
}

/** Polls until `n` completions (bounded: inline mode completes inside the doorbell), then checks there are no more. */
export function completions(e: End, n: number): Wc[] {
  const out = Array.from({ length: n + 4 }, emptyWc);
  let got = 0;
  for (let i = 0; i < 10_000 && got < n; i++) got += e.drv.pollCq(e.cq, n + 4 - got, out.slice(got));
  assert.equal(got, n, `expected ${n} completions`);
  assert.equal(e.drv.pollCq(e.cq, 4, out), 0, 'no extra completions');
  return out.slice(0, n);
}
