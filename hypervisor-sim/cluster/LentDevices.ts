/**
 * One host's part in Device Lending, as HostDevices sees it through a small hook: the devices it
 * has BORROWED (assignable to its domains under names like `nic0@A`, with VFIO ownership rules
 * like its own devices) and the devices it has LENT OUT (no domain of this host may take them
 * while a lease holds them).
 *
 * A borrowed NIC gets, on this host, its own IOMMU context (made per lease by the Cluster): the
 * owner's memory is mapped 1:1 (translate, guest passthrough) or the IOMMU is in bypass (native),
 * exactly as for a local device; the NtbDmaResolver reaches it after the NTB. Threads that run
 * inline engines attach every borrowed NIC (a WR from a local NIC to a borrowed one runs the
 * responder half in the doorbell writer's thread), as they attach every local one.
 *
 * A borrowed NVMe SSD (LentNvme.ts) is attached only by its owner's thread (its controller runs
 * inline in the doorbell writer's thread, and no other device of the host DMAs into it); when
 * its owner goes, an exclusive one gets a function-level reset, a shared one loses the owner's
 * queue pair (the `release` hook the Cluster gives: the lender's queue manager deletes it).
 *
 * A borrowed accelerator (LentAccel.ts) is attached, like an SSD, only by its owner's thread; it
 * holds no queued work, and its function-level reset scrubs the device memory.
 *
 * The main thread also needs to act on a borrowed NIC: function-level reset when its owner dies,
 * and, on a forced return, moving every QP to ERR so each outstanding WR completes with
 * WR_FLUSH_ERR in the borrower's CQs (never a hang). It does so through a device attached here
 * for the occasion, over the borrower's fabric lock and a directory of the borrower's live domain
 * memories (`memories`), while the windows are still open.
 */

import { pvError } from '../../protocol/errors.js';
import { rqDoorbell, sqDoorbell } from '../../protocol/rdma/NicRegs.js';
import type { DomId } from '../../protocol/Types.js';
import { AccelDevice } from '../devices/accel/AccelDevice.js';
import { NvmeDevice } from '../devices/nvme/NvmeDevice.js';
import { moveToErr } from '../devices/rnic/Completion.js';
import { QpCtx } from '../devices/rnic/DevLayout.js';
import { functionReset } from '../devices/rnic/FunctionReset.js';
import { RnicDevice } from '../devices/rnic/RnicDevice.js';
import { RnicFabric, type WireProfile } from '../devices/rnic/RnicFabric.js';
import type { PciAssignment } from '../domain/HostDevices.js';
import { IommuContext } from '../iommu/IommuContext.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { isLentAccel, type LentAccelData } from './LentAccel.js';
import type { LentNicData } from './LentNic.js';
import { isLentNvme, type LentNvmeData, nvmeOutstanding } from './LentNvme.js';
import { NtbDmaResolver } from './NtbDmaResolver.js';

/** A borrowed device as handed to a domain thread: a NIC, an NVMe SSD or an accelerator. */
export type LentData = LentNicData | LentNvmeData | LentAccelData;

/** Type guard: a lent-device record of the NIC kind (its `kind` is absent or 'rdma-nic'). */
export function isLentNic(d: LentData): d is LentNicData {
  return d.kind === undefined || d.kind === 'rdma-nic';
}

/** What HostDevices calls (see HostDevices.attachLending). */
export interface LendingHook {
  /**
   * Checks one entry of a domain's `pci` list: true if it names a borrowed device (checked
   * here: iommu mode, listed once, not owned); throws PV_ERR_CONFIG for a local device that is
   * lent out; false for anything else (HostDevices checks it).
   */
  validate(domain: string, a: PciAssignment, seen: Set<string>): boolean;
  /** Gives a borrowed device to `domid`; false if `a` names no borrowed device. */
  assign(domid: DomId, ownerBytes: number, a: PciAssignment): boolean;
  /**
   * Borrowed devices a new domain thread attaches: NICs all when it runs inline engines, else
   * the owned; NVMe SSDs and accelerators only when owned.
   */
  workerData(pci: readonly PciAssignment[], runsEngine: boolean): LentData[];
  /** A domain's thread is gone: reset and release what it owned, revoke extents on its memory. */
  release(domid: DomId): void;
  /** Every borrowed device and its owner here (monitors: `pvio top` shows their fabric counts). */
  borrowed(): Array<{ readonly data: LentData; readonly owner: DomId | undefined }>;
}

interface Borrowed {
  readonly data: LentData;
  /** Replaces the function-level reset when the owner goes or the borrow ends (shared NVMe). */
  readonly release: (() => void) | undefined;
  /** This thread's view of the lease's IOMMU context (it resolves nothing here). */
  readonly iommu: IommuContext;
  owner: DomId | undefined;
}

/** Borrowed and lent-out devices of one host (see the file comment). */
export class LentDevices implements LendingHook {
  private readonly _borrowed = new Map<string, Borrowed>();
  /** Local device name → the host holding it. */
  private readonly _lentOut = new Map<string, string>();

  /**
   * `fabricLock`/`wire`: this host's NIC fabric (borrowed NICs run under its lock here);
   * `memories`: the host's live domain memories, for the main thread's own DMA (flush on revoke).
   */
  constructor(
    private readonly _fabricLock: SharedArrayBuffer,
    private readonly _wire: WireProfile,
    private readonly _memories: () => MemoryDirectory,
  ) {}

  /** Marks local `device` lent to `holder` (no domain of this host may own it meanwhile). */
  markLentOut(device: string, holder: string): void {
    this._lentOut.set(device, holder);
  }

  /** The local device is back. */
  clearLentOut(device: string): void {
    this._lentOut.delete(device);
  }

  /**
   * Makes a borrowed device assignable here. `release` replaces the function-level reset done
   * when its owner goes or the borrow ends (a shared NVMe queue pair is deleted instead).
   */
  addBorrowed(data: LentData, release?: () => void): void {
    if (this._borrowed.has(data.name)) throw pvError('PV_ERR_CONFIG', `${data.name} is already borrowed here`);
    this._borrowed.set(data.name, {
      data,
      release,
      iommu: IommuContext.attach(data.iommu, new MemoryDirectory()),
      owner: undefined,
    });
  }

  /** The record of borrowed `name` (what its owner's thread attaches). */
  data(name: string): LentData {
    return this._get(name).data;
  }

  /** Every borrowed device and its owner here. */
  borrowed(): Array<{ readonly data: LentData; readonly owner: DomId | undefined }> {
    return [...this._borrowed.values()].map((b) => ({ data: b.data, owner: b.owner }));
  }

  /** Names of the borrowed devices. */
  borrowedNames(): string[] {
    return [...this._borrowed.keys()];
  }

  /** The live domain owning borrowed `name`, if any. */
  owner(name: string): DomId | undefined {
    return this._get(name).owner;
  }

  /** This host's view of the lease's IOMMU context (diagnostics and tests). */
  iommu(name: string): IommuContext {
    return this._get(name).iommu;
  }

  /**
   * Requests the borrowed device holds: work requests queued on a NIC (outstandingWrs), or the
   * commands an NVMe controller holds on the borrower's I/O queues (LentNvme.nvmeOutstanding).
   */
  outstanding(name: string): number {
    const d = this._get(name).data;
    // Every accelerator operation completes inside its doorbell write: nothing is ever queued.
    if (isLentAccel(d)) return 0;
    if (!isLentNvme(d)) return this.outstandingWrs(name);
    return nvmeOutstanding(d.state, d.qid === undefined ? undefined : [d.qid]);
  }

  /**
   * Work requests queued on the borrowed NIC and not yet completed (send and receive queues of
   * every live QP), read under the fabric lock.
   */
  outstandingWrs(name: string): number {
    return this._withDevice(name, (dev) => {
      const ctx = dev.ctx;
      const d = ctx.dev;
      let n = 0;
      for (let qpn = 1; qpn < ctx.sizes.maxQp; qpn++) {
        const q = ctx.layout.qpBase(qpn);
        if (d[q + QpCtx.VALID] === 0) continue;
        // ORDERING: seq-cst loads of the producer indices drivers store in the doorbells.
        const sq = (Atomics.load(ctx.bar, sqDoorbell(qpn) >> 2) - d[q + QpCtx.SQ_CONS]) >>> 0;
        const rq = (Atomics.load(ctx.bar, rqDoorbell(qpn) >> 2) - d[q + QpCtx.RQ_CONS]) >>> 0;
        if (sq <= d[q + QpCtx.SQ_ENTRIES]) n += sq;
        if (rq <= d[q + QpCtx.RQ_ENTRIES]) n += rq;
      }
      return n;
    });
  }

  /**
   * Forced return, step one (windows still open): every live QP goes to ERR, which completes
   * each outstanding WR with WR_FLUSH_ERR in the owner's CQs. Returns how many QPs it moved.
   */
  flushAll(name: string): number {
    return this._withDevice(name, (dev) => {
      const ctx = dev.ctx;
      let moved = 0;
      for (let qpn = 1; qpn < ctx.sizes.maxQp; qpn++) {
        if (ctx.dev[ctx.layout.qpBase(qpn) + QpCtx.VALID] === 0) continue;
        moveToErr(ctx, qpn);
        moved++;
      }
      return moved;
    });
  }

  /** Ends a borrow here: FLR, IOMMU cleared, no longer assignable. */
  removeBorrowed(name: string): void {
    const b = this._get(name);
    this._reset(b);
    this._borrowed.delete(name);
  }

  validate(domain: string, a: PciAssignment, seen: Set<string>): boolean {
    const holder = this._lentOut.get(a.device);
    if (holder !== undefined) {
      throw pvError('PV_ERR_CONFIG', `device ${a.device} is lent out (${holder}); domain ${domain} cannot own it`);
    }
    const b = this._borrowed.get(a.device);
    if (b === undefined) return false;
    if (a.iommu !== 'translate' && a.iommu !== 'bypass') {
      throw pvError('PV_ERR_CONFIG', `${a.device}: iommu must be 'translate' or 'bypass', got ${String(a.iommu)}`);
    }
    if (seen.has(a.device)) throw pvError('PV_ERR_CONFIG', `domain ${domain} lists device ${a.device} twice`);
    seen.add(a.device);
    if (b.owner !== undefined) {
      throw pvError(
        'PV_ERR_CONFIG',
        `device ${a.device} is already owned by domain ${b.owner}; ${domain} cannot own it too`,
      );
    }
    return true;
  }

  assign(domid: DomId, ownerBytes: number, a: PciAssignment): boolean {
    const b = this._borrowed.get(a.device);
    if (b === undefined) return false;
    b.iommu.assign(domid, ownerBytes, a.iommu);
    b.owner = domid;
    return true;
  }

  workerData(pci: readonly PciAssignment[], runsEngine: boolean): LentData[] {
    const owned = (b: Borrowed): boolean => pci.some((a) => a.device === b.data.name);
    const list = [...this._borrowed.values()].filter((b) => (runsEngine && isLentNic(b.data)) || owned(b));
    return list.map((b) => b.data);
  }

  release(domid: DomId): void {
    for (const b of this._borrowed.values()) {
      if (b.owner === domid) this._reset(b);
      else b.iommu.revokeDomain(domid);
    }
  }

  /** FLR (the dead owner's objects go) or the release hook, then the IOMMU (its memory goes). */
  private _reset(b: Borrowed): void {
    const d = b.data;
    if (b.release !== undefined) b.release();
    else if (isLentNvme(d)) new NvmeDevice(d.state, b.iommu).functionReset();
    else if (isLentAccel(d)) new AccelDevice(d.state, b.iommu).functionReset();
    else this._withDevice(d.name, (dev) => functionReset(dev.ctx), false);
    b.iommu.clear();
    b.owner = undefined;
  }

  /**
   * Runs `fn` on the borrowed NIC attached in this thread for the occasion, under this host's
   * fabric lock when `lock` (functionReset takes the lock itself).
   */
  private _withDevice<T>(name: string, fn: (dev: RnicDevice) => T, lock = true): T {
    const b = this._get(name);
    const d = b.data;
    if (!isLentNic(d)) throw pvError('PV_ERR_INVALID_ARG', `${name} is a ${d.kind}, not a NIC`);
    const fabric = new RnicFabric(this._fabricLock, this._wire);
    const dev = new RnicDevice(d.state, new NtbDmaResolver(d, this._memories()), fabric);
    if (!lock) return fn(dev);
    fabric.lock();
    try {
      return fn(dev);
    } finally {
      fabric.unlock();
    }
  }

  private _get(name: string): Borrowed {
    const b = this._borrowed.get(name);
    if (b === undefined) throw pvError('PV_ERR_CONFIG', `this host has not borrowed ${String(name)}`);
    return b;
  }
}
