/**
 * Everything the RDMA backend holds for one connected frontend: its handle tables (each a
 * per-guest limit), the device objects behind them, the mappings that back its MRs and CQ rings
 * (grant maps for vrdma, foreign device maps for virtio-rdma: `addressing`), its usage counters,
 * and — in copy mode — its bounce space and WR tracking.
 *
 * Teardown (`destroy`) runs on disconnect, unplug or the guest's death, in the order that keeps
 * the device from touching memory we are about to unmap: QPs first (the NIC stops processing
 * and flushes), then CQs (it stops writing completions), then MRs (unmap after DESTROY_MR),
 * then PDs; it never stops at a failing step, so every mapping is released and the driver
 * domain's live-mapping counts return to what they were before the guest connected.
 */

import type { RdmaNicDriver } from '../../drivers/rdma-nic/RdmaNicDriver.js';
import type { DriverCq, DriverMr } from '../../drivers/rdma-nic/Types.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import type { VrdmaMode } from '../../protocol/rdma/pv/PvConstants.js';
import type { QpCap } from '../../protocol/rdma/Verbs.js';
import type { DomId } from '../../protocol/Types.js';
import type { CopyEngine } from './CopyEngine.js';
import type { Doorbells } from './Doorbells.js';
import { HandleTable } from './HandleTable.js';
import type { VrdmaLimits } from './Limits.js';

/** A NIC the backend serves guests on. */
export interface ServedNic {
  /** Device name (`nic0`): also the `device` of grant maps for its IOMMU. */
  readonly name: string;
  readonly driver: RdmaNicDriver;
  /** Largest CQ a guest may create on it. */
  readonly maxCqe: number;
  /** This NIC's number in `doorbells`. */
  readonly index: number;
  /** Doorbells owed at the end of the serving round, on every NIC (receives first). */
  readonly doorbells: Doorbells;
}

/**
 * Guest pages mapped (for the NIC, or for us): a grant mapping, or with virtio-rdma a foreign
 * device mapping. `release` unmaps; it is called once, at DeregMr / DestroyCq or teardown.
 */
export interface PageMapping {
  release(): void;
}

/**
 * How a guest names its memory: `grant` (vrdma: grant refs, mapped with the guest's consent page
 * by page) or `gpa` (virtio-rdma: guest-physical addresses, mapped through the privileged
 * foreign map; protocol/rdma/virtio/VirtioRdma.ts).
 */
export type GuestAddressing = 'grant' | 'gpa';

/** A guest PD: one device PD per guest PD, so the NIC's PD checks isolate guests. */
export interface PdRec {
  readonly pdn: number;
  /** MRs and QPs created in it (DeallocPd is refused while > 0). */
  users: number;
  /** Copy mode: the guest's bounce region registered in this PD (device MRs are per PD). */
  bounceMr: DriverMr | undefined;
}

/** A guest MR. */
export interface MrRec {
  readonly pd: PdRec;
  /** The guest's address and length (what its SGEs name). */
  readonly addr: number;
  readonly length: number;
  readonly access: number;
  readonly npages: number;
  /** Grant refs of the pages, in order (copy mode copies through them per operation; empty for `gpa`). */
  readonly refs: Uint32Array;
  /** Device mapping of the pages (zero-copy mode, or copy mode with remote access). */
  readonly mapping: PageMapping | undefined;
  /** The device registration behind `mapping`. */
  readonly dev: DriverMr | undefined;
  /** The keys the guest was given. */
  readonly lkey: number;
  readonly rkey: number;
}

/** A guest CQ. */
export interface CqRec {
  readonly entries: number;
  /** The guest's ring pages, mapped (for the device in zero-copy mode, for us in copy mode). */
  readonly mapping: PageMapping;
  /** The device CQ: on the guest's ring (zero-copy) or on a ring in driver memory (copy). */
  readonly cqn: number;
  /** QPs using it (DestroyCq is refused while > 0). */
  users: number;
  /** Copy mode: the device CQ the backend polls, the guest ring it produces into, our index. */
  readonly devCq: DriverCq | undefined;
  readonly guestWords: Int32Array | undefined;
  prod: number;
  /** Copy mode: CQEs dropped because the guest's ring was full. */
  overflows: number;
}

/** A guest QP. */
export interface QpRec {
  readonly qpn: number;
  readonly pd: PdRec;
  readonly sendCq: CqRec;
  readonly recvCq: CqRec;
  /** Capabilities the NIC granted (depths rounded up to powers of two). */
  readonly cap: QpCap;
  /** The guest's sq_sig_all (copy mode signals every WR on the device and filters). */
  readonly sqSigAll: boolean;
  /** Queue slots charged to the guest's outstanding-WR budget. */
  readonly depth: number;
}

/** Counters of one session (reported by the program at shutdown). */
export interface SessionCounters {
  ctrlRequests: number;
  ctrlErrors: number;
  dataRequests: number;
  dataRejects: number;
  deferrals: number;
}

/** One connected frontend; see the file comment. */
export class GuestSession {
  readonly pds: HandleTable<PdRec>;
  readonly mrs: HandleTable<MrRec>;
  readonly cqs: HandleTable<CqRec>;
  readonly qps: HandleTable<QpRec>;
  /** Copy mode: lkey → MR (local SGEs are resolved by the backend, never by the NIC). */
  readonly mrByLkey = new Map<number, MrRec>();
  /** Pages spanned by the guest's MRs. */
  pinnedPages = 0;
  /** Queue slots of the guest's QPs. */
  wrBudget = 0;
  /** Copy mode: bounce space and WR tracking (set by the backend at connect). */
  copy: CopyEngine | undefined;
  readonly counters: SessionCounters = {
    ctrlRequests: 0,
    ctrlErrors: 0,
    dataRequests: 0,
    dataRejects: 0,
    deferrals: 0,
  };
  private _nextLkey = 1;

  constructor(
    readonly hc: Hypercalls,
    readonly front: DomId,
    readonly mode: VrdmaMode,
    readonly nic: ServedNic,
    readonly limits: VrdmaLimits,
    readonly addressing: GuestAddressing = 'grant',
  ) {
    this.pds = new HandleTable('PD', limits.maxPd);
    this.mrs = new HandleTable('MR', limits.maxMr);
    this.cqs = new HandleTable('CQ', limits.maxCq);
    this.qps = new HandleTable('QP', limits.maxQp);
  }

  /** The NIC's driver. */
  get driver(): RdmaNicDriver {
    return this.nic.driver;
  }

  /** A copy-mode lkey not used by any of this guest's MRs (the NIC never sees these keys). */
  newLocalKey(): number {
    let k = this._nextLkey;
    // Bounded: the guest holds at most maxMr keys.
    while (k === 0 || this.mrByLkey.has(k)) k = (k + 1) >>> 0;
    this._nextLkey = (k + 1) >>> 0;
    return k;
  }

  /**
   * Releases everything on the NIC and every grant mapping (see the file comment). Returns the
   * errors met on the way (for logs); never throws.
   */
  destroy(): string[] {
    const errors: string[] = [];
    const attempt = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const d = this.driver;
    for (const [h, qp] of this.qps.entries()) {
      attempt(`QP ${h}`, () => d.destroyQp(qp.qpn));
      this.copy?.forgetQp(qp);
      this.qps.delete(h);
    }
    for (const [h, cq] of this.cqs.entries()) {
      attempt(`CQ ${h}`, () => d.destroyCq(cq.cqn));
      attempt(`CQ ${h} ring`, () => cq.mapping.release());
      this.cqs.delete(h);
    }
    for (const [h, mr] of this.mrs.entries()) {
      const dev = mr.dev;
      if (dev) attempt(`MR ${h}`, () => d.deregMr(dev.lkey));
      const mapping = mr.mapping;
      if (mapping) attempt(`MR ${h} pages`, () => mapping.release());
      this.mrs.delete(h);
    }
    this.mrByLkey.clear();
    for (const [h, pd] of this.pds.entries()) {
      const bounce = pd.bounceMr;
      if (bounce) attempt(`PD ${h} bounce MR`, () => d.deregMr(bounce.lkey));
      attempt(`PD ${h}`, () => d.deallocPd(pd.pdn));
      this.pds.delete(h);
    }
    if (this.copy) attempt('bounce space', () => this.copy?.release());
    this.copy = undefined;
    this.pinnedPages = 0;
    this.wrBudget = 0;
    return errors;
  }
}
