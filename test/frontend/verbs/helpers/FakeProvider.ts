/**
 * A small typed VerbsProvider for verbs-layer unit tests: it keeps what it was asked to do
 * (so a test can check what reached the provider, and what did not), and allocates real CQ
 * rings in the caller's memory, so `pollCq`/`waitCq` run over a real ring that another thread
 * produces into.
 */

import type {
  ProviderCq,
  ProviderMr,
  ProviderQp,
  ProviderQpInit,
  VerbsProvider,
} from '../../../../frontend/verbs/Provider.js';
import type { GuestMemory } from '../../../../protocol/Hypercalls.js';
import { cqBytes } from '../../../../protocol/rdma/Cq.js';
import type { QpAttr, RecvWr, SendWr, Wc } from '../../../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';

/** Records calls; CQ rings are real rings in `mem`. */
export class FakeProvider implements VerbsProvider {
  readonly transport = 'fake';
  readonly portId = 7;
  flushes = 0;
  progressCalls = 0;
  closed = false;
  readonly sends: Array<{ qp: number; wr: SendWr }> = [];
  readonly recvs: Array<{ qp: number; wr: RecvWr }> = [];
  readonly modifies: Array<{ qp: number; attr: QpAttr; mask: number }> = [];
  readonly destroyed: string[] = [];
  /** Completions held outside the ring, per CQ handle (as paravirt's refused WRs). */
  readonly held = new Map<number, Wc[]>();
  /** Called from `progress()` (a test may produce a CQE there, as a paravirt ring drain would). */
  onProgress: () => void = () => {};
  private _next = 1;
  private readonly _mem: GuestMemory;

  constructor(mem: GuestMemory) {
    this._mem = mem;
  }

  allocPd(): number {
    return this._next++;
  }

  deallocPd(pd: number): void {
    this.destroyed.push(`pd${pd}`);
  }

  regMr(_pd: number, _addr: GuestPhysAddr, _length: number, _access: number): ProviderMr {
    const n = this._next++;
    return { handle: n, lkey: n, rkey: n + 0x1000 };
  }

  deregMr(mr: number): void {
    this.destroyed.push(`mr${mr}`);
  }

  createCq(entries: number): ProviderCq {
    let e = 1;
    while (e < entries) e *= 2;
    const ring = this._mem.allocPages(Math.ceil(cqBytes(e) / PAGE_SIZE));
    return { handle: this._next++, entries: e, ring };
  }

  destroyCq(cq: number): void {
    this.destroyed.push(`cq${cq}`);
  }

  createQp(init: ProviderQpInit): ProviderQp {
    const n = this._next++;
    return { handle: n, qpNum: 100 + n, cap: init.cap };
  }

  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this.modifies.push({ qp, attr: { ...attr }, mask });
  }

  destroyQp(qp: number): void {
    this.destroyed.push(`qp${qp}`);
  }

  postSend(qp: number, wr: SendWr): void {
    this.sends.push({ qp, wr });
  }

  postRecv(qp: number, wr: RecvWr): void {
    this.recvs.push({ qp, wr });
  }

  flush(): void {
    this.flushes++;
  }

  progress(): void {
    this.progressCalls++;
    this.onProgress();
  }

  takeCompletions(cq: number, out: Wc[], start: number, max: number): number {
    const list = this.held.get(cq) ?? [];
    const k = Math.min(max, list.length);
    for (let i = 0; i < k; i++) Object.assign(out[start + i], list[i]);
    list.splice(0, k);
    return k;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
