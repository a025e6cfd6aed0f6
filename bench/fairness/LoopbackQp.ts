/**
 * The fairness guests' RDMA set-up: one RC QP connected to itself on the guest's own NIC port, so
 * a WRITE from the buffer's first half to its second goes guest → backend → NIC → guest memory
 * with no peer guest. Both the neighbour and the flooder use it.
 */

import * as ibv from '../../frontend/verbs/index.js';
import { Access } from '../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';

/** The objects of a loopback QP. */
export interface LoopbackQp {
  readonly buf: GuestPhysAddr;
  readonly mr: ibv.Mr;
  readonly cq: ibv.Cq;
  readonly qp: ibv.Qp;
}

/** A PD, a registered buffer of `bytes`, a CQ of 2·`depth` and a QP of `depth` sends, looped back. */
export function loopbackQp(ctx: ibv.Context, bytes: number, depth: number): LoopbackQp {
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(bytes);
  const mr = ibv.regMr(pd, buf, bytes, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
  const cq = ibv.createCq(ctx, 2 * depth);
  const cap = { maxSendWr: depth, maxRecvWr: 1, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
  const qp = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap });
  ibv.connectRcQp(qp, { destQpNum: qp.qpNum, dlid: ctx.portId }, mr.access);
  return { buf, mr, cq, qp };
}
