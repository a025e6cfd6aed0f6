/**
 * The software NIC's protection domains, memory regions and completion queues: its private
 * tables, which nothing the guest writes can change except through the command mailbox.
 *
 * Keys are `index << 8 | key byte` (as on the NIC): the key byte advances every time an index is
 * reused, so a key from a deregistered region stops working even when its index comes back.
 * lkey and rkey are the same number. Both directions of a transfer check keys here: the requester
 * its local SGEs (failing with LOC_PROT_ERR), the responder the rkey of a remote request against
 * its own table (answering REM_ACCESS_ERR).
 */

import { pvError } from '../../../protocol/errors.js';
import { CQ_HEADER_SIZE, CQE_SIZE, produceCqe } from '../../../protocol/rdma/Cq.js';
import { ACCESS_MASK, Access, type Wc, WcStatus } from '../../../protocol/rdma/Verbs.js';
import { TCP_LIMITS } from './Layout.js';

/** A completion queue: a Cq.ts ring in guest memory, filled by this NIC. */
export interface SoftCq {
  readonly cqn: number;
  readonly entries: number;
  /** Int32 view of the ring (header + CQEs) in guest memory. */
  readonly words: Int32Array;
  /** Private producer index (the shared one is never read back). */
  prod: number;
  /** QPs using this CQ. */
  refs: number;
}

/** See the file comment. */
export class Resources {
  private readonly _pdLive = new Uint8Array(TCP_LIMITS.MAX_PD);
  private readonly _pdRefs = new Int32Array(TCP_LIMITS.MAX_PD);
  /** Full key of a live MR at its index, 0 when free. */
  private readonly _mrKey = new Uint32Array(TCP_LIMITS.MAX_MR);
  private readonly _mrKeyByte = new Uint8Array(TCP_LIMITS.MAX_MR);
  private readonly _mrPd = new Uint32Array(TCP_LIMITS.MAX_MR);
  private readonly _mrAccess = new Uint32Array(TCP_LIMITS.MAX_MR);
  private readonly _mrAddr = new Float64Array(TCP_LIMITS.MAX_MR);
  private readonly _mrLen = new Float64Array(TCP_LIMITS.MAX_MR);
  private _mrNext = 1;
  private readonly _cqs: (SoftCq | undefined)[] = [];

  constructor(private readonly _memory: SharedArrayBuffer) {}

  /** Creates a protection domain. */
  allocPd(): number {
    for (let pd = 1; pd < TCP_LIMITS.MAX_PD; pd++) {
      if (this._pdLive[pd] === 0) {
        this._pdLive[pd] = 1;
        this._pdRefs[pd] = 0;
        return pd;
      }
    }
    throw pvError('PV_ERR_RDMA_RESOURCE', 'no free protection domain');
  }

  /** Destroys a PD; refused while an MR or QP uses it. */
  deallocPd(pd: number): void {
    this.checkPd(pd);
    if (this._pdRefs[pd] !== 0) throw pvError('PV_ERR_RDMA_BUSY', `PD ${pd} still has ${this._pdRefs[pd]} users`);
    this._pdLive[pd] = 0;
  }

  /** Throws PV_ERR_RDMA_BAD_HANDLE unless `pd` is live. */
  checkPd(pd: number): void {
    if (!Number.isInteger(pd) || pd <= 0 || pd >= TCP_LIMITS.MAX_PD || this._pdLive[pd] === 0) {
      throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown PD ${pd}`);
    }
  }

  /** Counts a user of `pd` (a QP) or drops one. */
  refPd(pd: number, delta: number): void {
    this._pdRefs[pd] += delta;
  }

  /**
   * Registers `[addr, addr + length)` of guest memory. ibv_reg_mr.3: REMOTE_WRITE (and
   * REMOTE_ATOMIC) require LOCAL_WRITE; unknown bits are refused. Returns [index, key].
   */
  regMr(pd: number, addr: number, length: number, access: number): [number, number] {
    this.checkPd(pd);
    if ((access & ~ACCESS_MASK) !== 0)
      throw pvError('PV_ERR_RDMA_BAD_ACCESS', `unknown access bits 0x${access.toString(16)}`);
    if ((access & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) !== 0 && (access & Access.LOCAL_WRITE) === 0) {
      throw pvError('PV_ERR_RDMA_BAD_ACCESS', 'REMOTE_WRITE requires LOCAL_WRITE (ibv_reg_mr.3)');
    }
    const size = this._memory.byteLength;
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(length) || addr < 0 || length < 0) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `bad region ${addr} +${length}`);
    }
    if (addr > size || length > size - addr) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `region [${addr}, +${length}) outside the ${size}-byte memory`);
    }
    const idx = this._freeMrIndex();
    const keyByte = (this._mrKeyByte[idx] + 1) & 0xff;
    this._mrKeyByte[idx] = keyByte;
    const key = ((idx << 8) | keyByte) >>> 0;
    this._mrKey[idx] = key;
    this._mrPd[idx] = pd;
    this._mrAccess[idx] = access;
    this._mrAddr[idx] = addr;
    this._mrLen[idx] = length;
    this._pdRefs[pd]++;
    return [idx, key];
  }

  /** Deregisters the MR whose key is `lkey`. */
  deregMr(lkey: number): void {
    const idx = this._liveIndex(lkey >>> 0);
    if (idx < 0) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown MR key 0x${(lkey >>> 0).toString(16)}`);
    this._mrKey[idx] = 0;
    this._pdRefs[this._mrPd[idx]]--;
  }

  /** True while the MR registered under `key` is still live (READ responses re-check this). */
  mrLive(key: number): boolean {
    return this._liveIndex(key) >= 0;
  }

  /**
   * Status of a local access (an SGE): SUCCESS, or LOC_PROT_ERR for an unknown key, another PD,
   * a range outside the region, or a write into a region without LOCAL_WRITE.
   */
  checkLocal(key: number, pd: number, addr: number, len: number, write: boolean): WcStatus {
    const idx = this._liveIndex(key);
    if (idx < 0 || this._mrPd[idx] !== pd || !this._inside(idx, addr, len)) return WcStatus.LOC_PROT_ERR;
    if (write && (this._mrAccess[idx] & Access.LOCAL_WRITE) === 0) return WcStatus.LOC_PROT_ERR;
    return WcStatus.SUCCESS;
  }

  /**
   * Status of a remote access the responder must allow: SUCCESS, or REM_ACCESS_ERR for an unknown
   * rkey, another PD, a range outside the region, or a region without the `need` access bit.
   */
  checkRemote(key: number, pd: number, addr: number, len: number, need: number): WcStatus {
    const idx = this._liveIndex(key);
    if (idx < 0 || this._mrPd[idx] !== pd || !this._inside(idx, addr, len)) return WcStatus.REM_ACCESS_ERR;
    if ((this._mrAccess[idx] & need) === 0) return WcStatus.REM_ACCESS_ERR;
    return WcStatus.SUCCESS;
  }

  /** Creates a CQ over a ring the guest allocated at `addr` (zeroed, `entries` a power of two). */
  createCq(entries: number, addr: number): SoftCq {
    if (!Number.isInteger(entries) || entries < 1 || entries > TCP_LIMITS.MAX_CQE || (entries & (entries - 1)) !== 0) {
      throw pvError('PV_ERR_INVALID_ARG', `CQ entries must be a power of two ≤ ${TCP_LIMITS.MAX_CQE}, got ${entries}`);
    }
    const bytes = CQ_HEADER_SIZE + entries * CQE_SIZE;
    const size = this._memory.byteLength;
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % 64 !== 0 || addr > size || bytes > size - addr) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `CQ ring at ${addr} (+${bytes}) is misaligned or outside memory`);
    }
    let cqn = 1;
    while (cqn < TCP_LIMITS.MAX_CQ && this._cqs[cqn]) cqn++;
    if (cqn >= TCP_LIMITS.MAX_CQ) throw pvError('PV_ERR_RDMA_RESOURCE', 'no free CQ');
    const cq: SoftCq = { cqn, entries, words: new Int32Array(this._memory, addr, bytes / 4), prod: 0, refs: 0 };
    this._cqs[cqn] = cq;
    return cq;
  }

  /** The live CQ `cqn`, or PV_ERR_RDMA_BAD_HANDLE. */
  cq(cqn: number): SoftCq {
    const cq = Number.isInteger(cqn) && cqn > 0 && cqn < TCP_LIMITS.MAX_CQ ? this._cqs[cqn] : undefined;
    if (!cq) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown CQ ${cqn}`);
    return cq;
  }

  /** Destroys a CQ; refused while a QP uses it. */
  destroyCq(cqn: number): void {
    const cq = this.cq(cqn);
    if (cq.refs !== 0) throw pvError('PV_ERR_RDMA_BUSY', `CQ ${cqn} still has ${cq.refs} QPs`);
    this._cqs[cqn] = undefined;
  }

  /** Appends a completion; false when the CQ was full (its overflow flag is then set). */
  complete(cq: SoftCq, wc: Wc): boolean {
    const next = produceCqe(cq.words, cq.entries, cq.prod, wc);
    if (next < 0) return false;
    cq.prod = next;
    return true;
  }

  private _freeMrIndex(): number {
    // Round-robin from the last index so a freed index (and its key) is reused as late as possible.
    for (let n = 1; n < TCP_LIMITS.MAX_MR; n++) {
      const idx = ((this._mrNext + n - 2) % (TCP_LIMITS.MAX_MR - 1)) + 1;
      if (this._mrKey[idx] === 0) {
        this._mrNext = idx + 1;
        return idx;
      }
    }
    throw pvError('PV_ERR_RDMA_RESOURCE', 'no free memory region');
  }

  private _liveIndex(key: number): number {
    const idx = key >>> 8;
    if (idx === 0 || idx >= TCP_LIMITS.MAX_MR || this._mrKey[idx] !== key || key === 0) return -1;
    return idx;
  }

  private _inside(idx: number, addr: number, len: number): boolean {
    const base = this._mrAddr[idx];
    const mrLen = this._mrLen[idx];
    // addr may be -1 (an unsafe address decoded by Wqe.ts); all values are safe integers.
    if (addr < base || len < 0) return false;
    const off = addr - base;
    return off <= mrLen && len <= mrLen - off;
  }
}
