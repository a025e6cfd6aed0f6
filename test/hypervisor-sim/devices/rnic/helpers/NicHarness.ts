/**
 * Test-only register-level driver: writes commands into BAR 0's mailbox, lays out queues and CQ
 * rings in one fake domain's memory, encodes WQEs into them and rings doorbells — exactly what
 * a driver does, and nothing more, so the tests exercise the device through its real interface
 * (the real driver, drivers/rdma-nic, is written separately).
 */

import { pvError } from '../../../../../protocol/errors.js';
import type { MmioRegion } from '../../../../../protocol/Pci.js';
import { CqWord, cqBytes, pollCqes, releaseCqes } from '../../../../../protocol/rdma/Cq.js';
import { ModifyQpIn, NicCmd, NicReg, rqDoorbell, sqDoorbell } from '../../../../../protocol/rdma/NicRegs.js';
import { emptyWc, QpAttrMask, QpState, type RecvWr, type SendWr, type Wc } from '../../../../../protocol/rdma/Verbs.js';
import {
  encodeRecvWqe,
  encodeSendWqe,
  hi32,
  lo32,
  RECV_WQE_SIZE,
  RECV_WQE_WORDS,
  SEND_WQE_SIZE,
  SEND_WQE_WORDS,
} from '../../../../../protocol/rdma/Wqe.js';

/** A CQ created through the harness. */
export interface HCq {
  readonly cqn: number;
  readonly entries: number;
  readonly addr: number;
  /** The ring (header + CQEs) as words. */
  readonly ring: Int32Array;
  cons: number;
}

/** A QP created through the harness, with the driver's producer indices. */
export interface HQp {
  readonly qpn: number;
  readonly sqAddr: number;
  readonly rqAddr: number;
  readonly sqEntries: number;
  readonly rqEntries: number;
  sqProd: number;
  rqProd: number;
}

/** QP creation options. */
export interface QpOpts {
  sqEntries?: number;
  rqEntries?: number;
  sigAll?: boolean;
  maxInline?: number;
  maxSendSge?: number;
  maxRecvSge?: number;
}

/** Connection options (RESET → INIT → RTR → RTS). */
export interface ConnectOpts {
  access?: number;
  rnrRetry?: number;
  minRnrTimer?: number;
}

/** Mask bits RESET→INIT requires (RC_REQUIRED_MASK[INIT]). */
export const INIT_MASK = QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS;
/** Mask bits INIT→RTR requires. */
export const RTR_MASK =
  QpAttrMask.STATE |
  QpAttrMask.AV |
  QpAttrMask.PATH_MTU |
  QpAttrMask.DEST_QPN |
  QpAttrMask.RQ_PSN |
  QpAttrMask.MAX_DEST_RD_ATOMIC |
  QpAttrMask.MIN_RNR_TIMER;
/** Mask bits RTR→RTS requires. */
export const RTS_MASK =
  QpAttrMask.STATE |
  QpAttrMask.SQ_PSN |
  QpAttrMask.MAX_QP_RD_ATOMIC |
  QpAttrMask.RETRY_CNT |
  QpAttrMask.RNR_RETRY |
  QpAttrMask.TIMEOUT;

/** A driver-shaped view of one NIC and its owner's memory. */
export class NicHarness {
  readonly bar: MmioRegion;
  readonly memory: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  private _next: number;

  constructor(bar: MmioRegion, memory: SharedArrayBuffer, start = 4096) {
    this.bar = bar;
    this.memory = memory;
    this.bytes = new Uint8Array(memory);
    this.words = new Int32Array(memory);
    this._next = start;
  }

  /** Bump-allocates `bytes` of zeroed memory aligned to `align`. */
  alloc(bytes: number, align = 4096): number {
    const addr = Math.ceil(this._next / align) * align;
    if (addr + bytes > this.bytes.length) throw pvError('PV_ERR_NO_MEMORY', 'test memory exhausted');
    this._next = addr + bytes;
    this.bytes.fill(0, addr, addr + bytes);
    return addr;
  }

  /** Runs a command with `args` (the rest zero); returns the status and the 32 result words. */
  cmd(op: number, args: readonly number[] = []): { status: number; out: number[] } {
    for (let i = 0; i < 32; i++) this.bar.write32(NicReg.CMD_IN + i * 4, args[i] ?? 0);
    this.bar.write32(NicReg.CMD_OPCODE, op);
    this.bar.write32(NicReg.CMD_DOORBELL, 1);
    const out: number[] = [];
    for (let i = 0; i < 32; i++) out.push(this.bar.read32(NicReg.CMD_OUT + i * 4) >>> 0);
    return { status: this.bar.read32(NicReg.CMD_STATUS), out };
  }

  /** Runs a command that must succeed; returns its results. */
  ok(op: number, args: readonly number[] = []): number[] {
    const r = this.cmd(op, args);
    if (r.status !== 0) throw pvError('PV_ERR_BAD_REQUEST', `command ${op} failed with status ${r.status}`);
    return r.out;
  }

  createPd(): number {
    return this.ok(NicCmd.CREATE_PD)[0];
  }

  regMr(pd: number, addr: number, length: number, access: number): { index: number; lkey: number; rkey: number } {
    const out = this.ok(NicCmd.CREATE_MR, [pd, lo32(addr), hi32(addr), length, access, lo32(addr), hi32(addr)]);
    return { index: out[0], lkey: out[1], rkey: out[2] };
  }

  createCq(entries: number): HCq {
    const addr = this.alloc(cqBytes(entries));
    const cqn = this.ok(NicCmd.CREATE_CQ, [entries, addr, 0])[0];
    return { cqn, entries, addr, ring: new Int32Array(this.memory, addr, cqBytes(entries) / 4), cons: 0 };
  }

  createQp(pd: number, scq: HCq, rcq: HCq, o: QpOpts = {}): HQp {
    const sqEntries = o.sqEntries ?? 64;
    const rqEntries = o.rqEntries ?? 64;
    const sqAddr = this.alloc(sqEntries * SEND_WQE_SIZE);
    const rqAddr = this.alloc(rqEntries * RECV_WQE_SIZE);
    const args = [pd, scq.cqn, rcq.cqn, sqEntries, rqEntries, sqAddr, 0, rqAddr, 0, o.sigAll === false ? 0 : 1];
    args.push(o.maxInline ?? 64, o.maxSendSge ?? 5, o.maxRecvSge ?? 3);
    const qpn = this.ok(NicCmd.CREATE_QP, args)[0];
    return { qpn, sqAddr, rqAddr, sqEntries, rqEntries, sqProd: 0, rqProd: 0 };
  }

  /** MODIFY_QP with `mask` and the given argument words; returns the status. */
  modify(qpn: number, mask: number, attrs: Partial<Record<ModifyQpIn, number>>): number {
    const args = new Array<number>(18).fill(0);
    args[ModifyQpIn.QPN] = qpn;
    args[ModifyQpIn.MASK] = mask;
    for (const [k, v] of Object.entries(attrs)) args[Number(k)] = v as number;
    return this.cmd(NicCmd.MODIFY_QP, args).status;
  }

  /** QUERY_QP: state, dest qpn, dest port, sq cons, rq cons. */
  query(qpn: number): { state: number; destQpn: number; destPort: number; sqCons: number; rqCons: number } {
    const o = this.ok(NicCmd.QUERY_QP, [qpn]);
    return { state: o[0], destQpn: o[1], destPort: o[2], sqCons: o[3], rqCons: o[4] };
  }

  /** RESET → INIT → RTR → RTS towards `destQpn` on port `destPort`; throws if a step fails. */
  connect(qp: HQp, destPort: number, destQpn: number, o: ConnectOpts = {}): void {
    const steps: Array<[number, Partial<Record<ModifyQpIn, number>>]> = [
      [INIT_MASK, { [ModifyQpIn.STATE]: QpState.INIT, [ModifyQpIn.PORT]: 1, [ModifyQpIn.ACCESS]: o.access ?? 7 }],
      [
        RTR_MASK,
        {
          [ModifyQpIn.STATE]: QpState.RTR,
          [ModifyQpIn.DEST_PORT]: destPort,
          [ModifyQpIn.PATH_MTU]: 5,
          [ModifyQpIn.DEST_QPN]: destQpn,
          [ModifyQpIn.MIN_RNR_TIMER]: o.minRnrTimer ?? 1,
        },
      ],
      [
        RTS_MASK,
        { [ModifyQpIn.STATE]: QpState.RTS, [ModifyQpIn.RNR_RETRY]: o.rnrRetry ?? 7, [ModifyQpIn.RETRY_CNT]: 7 },
      ],
    ];
    for (const [mask, attrs] of steps) {
      const st = this.modify(qp.qpn, mask, attrs);
      if (st !== 0) throw pvError('PV_ERR_BAD_REQUEST', `modify to ${attrs[ModifyQpIn.STATE]} failed: ${st}`);
    }
  }

  /** Writes a send WQE at the producer index; rings the SQ doorbell unless `ring` is false. */
  postSend(qp: HQp, wr: SendWr, inline?: Uint8Array, ring = true): void {
    const w = qp.sqAddr / 4 + (qp.sqProd & (qp.sqEntries - 1)) * SEND_WQE_WORDS;
    encodeSendWqe(this.words, w, wr, inline);
    qp.sqProd = (qp.sqProd + 1) >>> 0;
    if (ring) this.ringSq(qp);
  }

  /** Writes a receive WQE; rings the RQ doorbell unless `ring` is false. */
  postRecv(qp: HQp, wr: RecvWr, ring = true): void {
    encodeRecvWqe(this.words, qp.rqAddr / 4 + (qp.rqProd & (qp.rqEntries - 1)) * RECV_WQE_WORDS, wr);
    qp.rqProd = (qp.rqProd + 1) >>> 0;
    if (ring) this.ringRq(qp);
  }

  ringSq(qp: HQp, prod = qp.sqProd): void {
    this.bar.write32(sqDoorbell(qp.qpn), prod | 0);
  }

  ringRq(qp: HQp, prod = qp.rqProd): void {
    this.bar.write32(rqDoorbell(qp.qpn), prod | 0);
  }

  /** Takes up to `max` CQEs now. */
  poll(cq: HCq, max = 256): Wc[] {
    const out: Wc[] = [];
    for (let i = 0; i < max; i++) out.push(emptyWc());
    const n = pollCqes(cq.ring, cq.entries, cq.cons, out, max);
    cq.cons = (cq.cons + n) >>> 0;
    releaseCqes(cq.ring, cq.cons);
    return out.slice(0, n);
  }

  /** Waits (bounded) until `n` CQEs arrived; throws PV_ERR_TIMEOUT with what it got otherwise. */
  waitCqes(cq: HCq, n: number, timeoutMs = 10_000): Wc[] {
    const got: Wc[] = [];
    const deadline = Date.now() + timeoutMs;
    while (got.length < n) {
      got.push(...this.poll(cq, n - got.length));
      if (got.length >= n) break;
      const left = deadline - Date.now();
      if (left <= 0) throw pvError('PV_ERR_TIMEOUT', `CQ ${cq.cqn}: ${got.length} of ${n} CQEs`);
      // ORDERING: arm, then re-read PROD inside Atomics.wait (Dekker pair with produceCqe).
      Atomics.store(cq.ring, CqWord.ARMED, 1);
      Atomics.wait(cq.ring, CqWord.PROD, cq.cons | 0, Math.min(left, 100));
      Atomics.store(cq.ring, CqWord.ARMED, 0);
    }
    return got;
  }
}
