/**
 * The driver's completion queues: rings it allocated in its own memory (which it or its caller
 * polls), and rings that live elsewhere (`createCqAt`: the paravirtual backend points the NIC at
 * a guest's granted pages and never reads them).
 */

import { pvError } from '../../protocol/errors.js';
import { cqBytes, pollCqes, releaseCqes } from '../../protocol/rdma/Cq.js';
import { NicCmd } from '../../protocol/rdma/NicRegs.js';
import type { Wc } from '../../protocol/rdma/Verbs.js';
import { hi32, lo32 } from '../../protocol/rdma/Wqe.js';
import { type Iova, PAGE_SIZE } from '../../protocol/Types.js';
import type { NicMailbox } from './NicMailbox.js';
import type { DriverBuffer, DriverCq, QueueMemory } from './Types.js';

/** One CQ the driver created. */
interface CqRecord {
  readonly entries: number;
  /** The ring, when it lives in driver memory. */
  readonly buf: DriverBuffer | undefined;
  /** Private consumer index (the shared CONS word is only ever written from it). */
  cons: number;
}

/** Smallest power of two ≥ n (n ≥ 1, n ≤ 2^30). */
export function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** CQs by cqn. */
export class CqTable {
  private readonly _cqs = new Map<number, CqRecord>();
  private readonly _qm: QueueMemory;

  constructor(qm: QueueMemory) {
    this._qm = qm;
  }

  /** Live cqns (a copy: safe to destroy while iterating). */
  numbers(): number[] {
    return [...this._cqs.keys()];
  }

  /** Allocates a ring of ≥ `cqe` entries and creates the CQ over it. */
  create(cqe: number, mbox: NicMailbox): DriverCq {
    const max = this._qm.caps.maxCqe;
    if (!Number.isInteger(cqe) || cqe < 1 || cqe > max) {
      throw pvError('PV_ERR_LIMIT', `CQ of ${cqe} entries: the NIC allows 1 … ${max}`);
    }
    const entries = pow2AtLeast(cqe);
    if (entries > max) throw pvError('PV_ERR_LIMIT', `CQ of ${cqe} entries rounds up to ${entries} > ${max}`);
    const buf = this._qm.allocBuffer(cqBytes(entries));
    let cqn: number;
    try {
      cqn = this._command(entries, this._qm.dmaAddr(buf.addr), mbox);
    } catch (err) {
      this._qm.freeBuffer(buf);
      throw err;
    }
    this._cqs.set(cqn, { entries, buf, cons: 0 });
    return { cqn, entries, ring: buf.addr, ringBytes: buf.pages * PAGE_SIZE };
  }

  /** Creates a CQ over a ring at a device address the caller provides. */
  createAt(entries: number, ringIova: Iova, mbox: NicMailbox): number {
    const max = this._qm.caps.maxCqe;
    if (!Number.isInteger(entries) || entries < 1 || entries > max || (entries & (entries - 1)) !== 0) {
      throw pvError('PV_ERR_LIMIT', `CQ ring of ${entries} entries: need a power of two in 1 … ${max}`);
    }
    if (!Number.isSafeInteger(ringIova) || ringIova < 0) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `CQ ring address ${ringIova} is not valid`);
    }
    const cqn = this._command(entries, ringIova, mbox);
    this._cqs.set(cqn, { entries, buf: undefined, cons: 0 });
    return cqn;
  }

  /** DESTROY_CQ, then frees the ring if it is ours. */
  destroy(cqn: number, mbox: NicMailbox): void {
    mbox.begin()[0] = cqn;
    mbox.exec(NicCmd.DESTROY_CQ);
    const rec = this._cqs.get(cqn);
    this._cqs.delete(cqn);
    if (rec?.buf) this._qm.freeBuffer(rec.buf);
  }

  /** Polls a driver-owned ring; see RdmaNicDriver.pollCq. */
  poll(cqn: number, max: number, out: Wc[]): number {
    const rec = this._owned(cqn);
    if (!Number.isInteger(max) || max < 0 || max > out.length) {
      throw pvError('PV_ERR_INVALID_ARG', `poll of ${max} completions into ${out.length} entries`);
    }
    // INVARIANT: _owned returned a record with a ring in driver memory.
    const words = (rec.buf as DriverBuffer).words;
    const n = pollCqes(words, rec.entries, rec.cons, out, max);
    if (n > 0) {
      rec.cons = (rec.cons + n) >>> 0;
      releaseCqes(words, rec.cons);
    }
    return n;
  }

  /** The Int32 view of a driver-owned ring. */
  words(cqn: number): Int32Array {
    return (this._owned(cqn).buf as DriverBuffer).words;
  }

  private _owned(cqn: number): CqRecord {
    const rec = this._cqs.get(cqn);
    if (rec === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no CQ ${cqn}`);
    if (rec.buf === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `CQ ${cqn}'s ring is not in driver memory`);
    return rec;
  }

  private _command(entries: number, ringIova: number, mbox: NicMailbox): number {
    const a = mbox.begin();
    a[0] = entries;
    a[1] = lo32(ringIova);
    a[2] = hi32(ringIova);
    mbox.exec(NicCmd.CREATE_CQ);
    return mbox.out(0);
  }
}
