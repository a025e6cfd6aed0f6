/**
 * The verbs API: libibverbs in camelCase (DESIGN §7, reference §2), written once over
 * `VerbsProvider`, so a guest program is the same over native, passthrough, paravirt,
 * paravirt-copy and tcp. Synchronous like libibverbs, except `openDevice` (connecting a
 * paravirtual device runs the xenbus handshake) and `closeDevice`.
 *
 * ```ts
 * const ctx = await openDevice(env);
 * const pd = allocPd(ctx);
 * const buf = ctx.allocBuffer(4096);
 * const mr = regMr(pd, buf, 4096, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
 * const cq = createCq(ctx, 64);
 * const qp = createQp(pd, { sendCq: cq, recvCq: cq, cap: { maxSendWr: 64, maxRecvWr: 64,
 *   maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 } });
 * connectRcQp(qp, { destQpNum: peer.qpn, dlid: peer.lid }, access);
 * postSend(qp, { wrId: 1, opcode: WrOpcode.RDMA_WRITE, sendFlags: SendFlags.SIGNALED,
 *   sgList: [{ addr: buf, length: 4096, lkey: mr.lkey }], remoteAddr: peer.addr, rkey: peer.rkey });
 * while (pollCq(cq, 1, wc) === 0) waitCq(cq, { timeoutMs: 1000 });
 * ```
 * Everything is addressed by guest-physical address in the caller's memory (`ctx.memory`).
 * Programs import the whole API from `index.ts` (this file, CqPoll.ts, Connect.ts, Objects.ts).
 */

import { checkRecvWr, checkSendWr } from '../../drivers/rdma-nic/WrCheck.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { type QpAttr, type QpCap, QpState, QpType, type RecvWr, type SendWr } from '../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { Context, Cq, checkOpen, Mr, Pd, Qp } from './Objects.js';
import { loadProviderFactory } from './ProviderLoader.js';
import { checkAccess, checkModifyQp, checkQpCap } from './Validate.js';

/** `ibv_qp_init_attr` with the objects resolved. */
export interface QpInitAttr {
  readonly sendCq: Cq;
  readonly recvCq: Cq;
  readonly cap: QpCap;
  /** Only RC (the default). */
  readonly qpType?: QpType;
  /** Every send WR completes with a CQE (otherwise only those with SIGNALED). */
  readonly sqSigAll?: boolean;
}

/**
 * Opens the RDMA device `name` of this domain (default: the first `rdma-nic` attachment) and
 * connects its transport's provider. No such device → PV_ERR_CONFIG.
 */
export async function openDevice(env: DomainEnv, name?: string): Promise<Context> {
  const att =
    name === undefined ? env.devices.find((d) => d.kind === 'rdma-nic') : env.devices.find((d) => d.device === name);
  if (att === undefined) {
    const what = name === undefined ? 'no rdma-nic device' : `no device named '${name}'`;
    throw pvError('PV_ERR_CONFIG', `${what} attached to domain ${env.domid} (${env.name})`);
  }
  if (att.kind !== 'rdma-nic')
    throw pvError('PV_ERR_CONFIG', `device '${att.device}' is a ${att.kind}, not an rdma-nic`);
  const create = await loadProviderFactory(att.transport);
  return new Context(env, att, await create(env, att));
}

/** Closes the device: the provider destroys what is left, then the context's buffers are freed. */
export async function closeDevice(ctx: Context): Promise<void> {
  if (ctx.closed) return;
  ctx.closed = true;
  try {
    await ctx.provider.close();
  } finally {
    ctx.freeAllBuffers();
  }
}

/** `ibv_alloc_pd`. */
export function allocPd(ctx: Context): Pd {
  checkOpen(ctx);
  return new Pd(ctx, ctx.provider.allocPd());
}

/** `ibv_dealloc_pd`; PV_ERR_RDMA_BUSY while MRs or QPs use it. */
export function deallocPd(pd: Pd): void {
  live(pd);
  if (pd.refs > 0) throw pvError('PV_ERR_RDMA_BUSY', `PD ${pd.handle} still has ${pd.refs} MRs or QPs`);
  pd.context.provider.deallocPd(pd.handle);
  pd.destroyed = true;
}

/**
 * `ibv_reg_mr` over `[addr, addr + length)` of the caller's memory. Bad access flags →
 * PV_ERR_RDMA_BAD_ACCESS; a range outside the caller's memory → PV_ERR_RDMA_BAD_MEMORY.
 */
export function regMr(pd: Pd, addr: GuestPhysAddr, length: number, access: number): Mr {
  live(pd);
  checkAccess(access);
  if (!Number.isInteger(length) || length <= 0 || length > 0xffff_ffff) {
    throw pvError('PV_ERR_BAD_LENGTH', `MR length ${length} is not in [1, 2^32)`);
  }
  try {
    pd.context.memory.checkRange(addr, length);
  } catch {
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR [${addr}, +${length}) is outside this domain's memory`);
  }
  const r = pd.context.provider.regMr(pd.handle, addr, length, access);
  pd.refs++;
  return new Mr(pd.context, pd, r.handle, r.lkey, r.rkey, addr, length, access);
}

/** `ibv_dereg_mr`. */
export function deregMr(mr: Mr): void {
  live(mr);
  mr.context.provider.deregMr(mr.handle);
  mr.destroyed = true;
  mr.pd.refs--;
}

/** `ibv_create_cq` with at least `cqe` entries (the ring holds a power of two). */
export function createCq(ctx: Context, cqe: number): Cq {
  checkOpen(ctx);
  if (!Number.isInteger(cqe) || cqe < 1) throw pvError('PV_ERR_INVALID_ARG', `CQ size ${cqe} is not an integer ≥ 1`);
  const c = ctx.provider.createCq(cqe);
  try {
    return new Cq(ctx, c.handle, c.entries, c.ring);
  } catch (err) {
    ctx.provider.destroyCq(c.handle);
    throw err;
  }
}

/** `ibv_destroy_cq`; PV_ERR_RDMA_BUSY while QPs use it. */
export function destroyCq(cq: Cq): void {
  live(cq);
  if (cq.refs > 0) throw pvError('PV_ERR_RDMA_BUSY', `CQ ${cq.handle} is still used by ${cq.refs} QPs`);
  cq.context.provider.destroyCq(cq.handle);
  cq.destroyed = true;
}

/** `ibv_create_qp` (RC only: another type → PV_ERR_NOT_SUPPORTED). The QP starts in RESET. */
export function createQp(pd: Pd, init: QpInitAttr): Qp {
  live(pd);
  if (init === null || typeof init !== 'object') throw pvError('PV_ERR_INVALID_ARG', 'QP init attributes are required');
  const type = init.qpType ?? QpType.RC;
  if (type !== QpType.RC) throw pvError('PV_ERR_NOT_SUPPORTED', `QP type ${type}: pvio implements RC (2) only`);
  for (const cq of [init.sendCq, init.recvCq]) {
    if (!(cq instanceof Cq) || cq.context !== pd.context) {
      throw pvError('PV_ERR_INVALID_ARG', 'sendCq and recvCq must be CQs of the same context as the PD');
    }
    live(cq);
  }
  checkQpCap(init.cap);
  const sqSigAll = init.sqSigAll ?? false;
  const r = pd.context.provider.createQp({
    pd: pd.handle,
    sendCq: init.sendCq.handle,
    recvCq: init.recvCq.handle,
    cap: init.cap,
    sqSigAll,
  });
  pd.refs++;
  init.sendCq.refs++;
  init.recvCq.refs++;
  return new Qp(pd.context, pd, r.handle, r.qpNum, init.sendCq, init.recvCq, r.cap, type, sqSigAll);
}

/** `ibv_modify_qp`: checked here (Validate.ts) so every transport refuses the same calls. */
export function modifyQp(qp: Qp, attr: QpAttr, mask: number): void {
  live(qp);
  const to = checkModifyQp(qp.state, attr, mask);
  qp.context.provider.modifyQp(qp.handle, attr, mask);
  qp.state = to;
}

/** `ibv_destroy_qp`. */
export function destroyQp(qp: Qp): void {
  live(qp);
  qp.context.provider.destroyQp(qp.handle);
  qp.destroyed = true;
  qp.pd.refs--;
  qp.sendCq.refs--;
  qp.recvCq.refs--;
}

/**
 * `ibv_post_send` of one WR or a list, then ONE doorbell for the whole call (provider.flush),
 * as PVRDMA's provider does. A bad WR throws (PV_ERR_RDMA_BAD_WR, PV_ERR_RDMA_QUEUE_FULL,
 * PV_ERR_RDMA_BAD_STATE); the WRs before it in the list are posted, as with `bad_wr`.
 */
export function postSend(qp: Qp, wr: SendWr | readonly SendWr[]): void {
  live(qp);
  if (qp.state < QpState.RTS) {
    throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qp.qpNum} is in state ${qp.state}; sends need RTS`);
  }
  const p = qp.context.provider;
  try {
    if (Array.isArray(wr)) {
      for (let i = 0; i < wr.length; i++) {
        checkSendWr(wr[i], qp.cap);
        p.postSend(qp.handle, wr[i]);
      }
    } else {
      checkSendWr(wr as SendWr, qp.cap);
      p.postSend(qp.handle, wr as SendWr);
    }
  } finally {
    p.flush();
  }
}

/** `ibv_post_recv` of one WR or a list, then one doorbell; errors as `postSend`. */
export function postRecv(qp: Qp, wr: RecvWr | readonly RecvWr[]): void {
  live(qp);
  if (qp.state === QpState.RESET) {
    throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qp.qpNum} is in RESET; receives need INIT or later`);
  }
  const p = qp.context.provider;
  try {
    if (Array.isArray(wr)) {
      for (let i = 0; i < wr.length; i++) {
        checkRecvWr(wr[i], qp.cap);
        p.postRecv(qp.handle, wr[i]);
      }
    } else {
      checkRecvWr(wr as RecvWr, qp.cap);
      p.postRecv(qp.handle, wr as RecvWr);
    }
  } finally {
    p.flush();
  }
}

/** Throws unless the object is alive and its context open. */
function live(o: Pd | Mr | Cq | Qp): void {
  if (o.destroyed) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `${o.constructor.name} ${o.handle} was destroyed`);
  checkOpen(o.context);
}
