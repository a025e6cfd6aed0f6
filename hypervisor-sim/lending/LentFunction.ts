/**
 * A borrowed device as the borrower's driver sees it: the lender's `PciFunction` behind the same
 * interface (Device Lending's "shadow device", Cluster Computing 2020 §4: the unmodified native
 * driver runs against it), plus what lending adds:
 *
 *  - revocation: once the lease ends (returned, or revoked by a forced return) every MMIO read or
 *    write, every `dmaAddr` and every new request throws PV_ERR_LEND_REVOKED, and every request
 *    still outstanding is failed with it at once (Outstanding.ts);
 *  - accounting: MMIO reads, writes and bytes are counted, and each access first goes through
 *    `onAccess`, THE hook the PCIe fabric (hypervisor-sim/pcie) will use to route the access
 *    through the NTB window and pay its hops. It runs before the access reaches the device and
 *    may throw (e.g. PV_ERR_PCIE_LINK_DOWN), in which case the access does not happen.
 *
 * Requests are whatever the driver calls a request (an NVMe command, a work request): wrap them
 * with `begin`/`end`, or `track(work)` for a promise that rejects the moment the device is
 * revoked instead of waiting for a completion that will never come.
 */

import { type PvError, pvError } from '../../protocol/errors.js';
import type { DeviceKind, MmioRegion, PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { type FailRequest, Outstanding, type RequestTicket } from './Outstanding.js';
import type { Lease } from './Types.js';

/** Direction of an MMIO access. */
export type MmioAccessKind = 'read' | 'write';

/**
 * Fabric hook: called before each MMIO access reaches the device, with its direction, size in
 * bytes, BAR index and offset. May delay (pay the modelled hops) or throw to refuse the access.
 */
export type AccessHook = (kind: MmioAccessKind, bytes: number, bar: number, offset: number) => void;

/** Options of a lent view. */
export interface LentFunctionOptions {
  /** The lease the view was made for (named in errors). */
  readonly lease?: Lease;
  /** See `AccessHook`; the PCIe fabric installs it. */
  readonly onAccess?: AccessHook;
  /** Called with the outstanding count after each change (LeaseBinding reports it to the registry). */
  readonly onOutstanding?: (outstanding: number) => void;
}

/** What a lent view has done; a snapshot is plain data. */
export interface LentCounters {
  mmioReads: number;
  mmioWrites: number;
  mmioBytes: number;
  /** Requests begun. */
  requests: number;
  /** Requests ended normally. */
  completed: number;
  /** Requests failed by revocation. */
  revokedRequests: number;
  /** MMIO accesses, requests and DMA lookups refused because the view was revoked. */
  refused: number;
}

/** One BAR of the lent view. */
class LentBar implements MmioRegion {
  readonly size: number;

  constructor(
    private readonly _owner: LentFunction,
    private readonly _inner: MmioRegion,
    private readonly _index: number,
  ) {
    this.size = _inner.size;
  }

  read32(offset: number): number {
    this._owner.access('read', this._index, offset);
    return this._inner.read32(offset);
  }

  write32(offset: number, value: number): void {
    this._owner.access('write', this._index, offset);
    this._inner.write32(offset, value);
  }
}

/** The borrower-side view of a lent device (see the file comment). */
export class LentFunction implements PciFunction {
  readonly name: string;
  readonly kind: DeviceKind;
  readonly bdf: string;
  readonly bars: readonly MmioRegion[];
  readonly lease: Lease | undefined;
  private readonly _inner: PciFunction;
  private readonly _onAccess: AccessHook | undefined;
  private readonly _outstanding: Outstanding;
  private readonly _counters: LentCounters = {
    mmioReads: 0,
    mmioWrites: 0,
    mmioBytes: 0,
    requests: 0,
    completed: 0,
    revokedRequests: 0,
    refused: 0,
  };

  constructor(inner: PciFunction, opts: LentFunctionOptions = {}) {
    this._inner = inner;
    this.name = inner.name;
    this.kind = inner.kind;
    this.bdf = inner.bdf;
    this.lease = opts.lease;
    this._onAccess = opts.onAccess;
    this._outstanding = new Outstanding(opts.onOutstanding);
    this.bars = Object.freeze(inner.bars.map((bar, i) => new LentBar(this, bar, i)));
  }

  /** True once the lease ended: nothing more reaches the device. */
  get revoked(): boolean {
    return this._outstanding.closedWith !== undefined;
  }

  /** Requests begun and not yet ended. */
  get outstanding(): number {
    return this._outstanding.count;
  }

  /** A copy of the counters. */
  counters(): LentCounters {
    return { ...this._counters };
  }

  dmaAddr(gpa: GuestPhysAddr): Iova {
    this._live();
    return this._inner.dmaAddr(gpa);
  }

  /** Called by each BAR before the access (counts it, runs the fabric hook). */
  access(kind: MmioAccessKind, bar: number, offset: number): void {
    this._live();
    this._onAccess?.(kind, 4, bar, offset);
    if (kind === 'read') this._counters.mmioReads++;
    else this._counters.mmioWrites++;
    this._counters.mmioBytes += 4;
  }

  /** Starts a request; `onFail` gets PV_ERR_LEND_REVOKED if the device is revoked first. */
  begin(onFail: FailRequest): RequestTicket {
    this._live();
    const ticket = this._outstanding.begin((err) => {
      this._counters.revokedRequests++;
      onFail(err);
    });
    this._counters.requests++;
    return ticket;
  }

  /** Ends a request: true if it completed in time, false if revocation already failed it (drop its result). */
  end(ticket: RequestTicket): boolean {
    const live = this._outstanding.end(ticket);
    if (live) this._counters.completed++;
    return live;
  }

  /**
   * Runs `work` as one request: resolves or rejects with its outcome, or rejects with
   * PV_ERR_LEND_REVOKED as soon as the device is revoked (the late outcome is then dropped).
   */
  track<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ticket = this.begin(reject);
      let running: Promise<T>;
      try {
        running = work();
      } catch (err) {
        if (this.end(ticket)) reject(err);
        return;
      }
      running.then(
        (v) => {
          if (this.end(ticket)) resolve(v);
        },
        (err: unknown) => {
          if (this.end(ticket)) reject(err);
        },
      );
    });
  }

  /**
   * Ends the lent view: every outstanding request fails now with PV_ERR_LEND_REVOKED, and every
   * later access throws it. Returns how many requests were failed; a second call does nothing.
   */
  revoke(reason = 'the lease ended'): number {
    const l = this.lease;
    const who = l === undefined ? '' : ` (lease ${l.generation} of ${l.holder})`;
    return this._outstanding.close(pvError('PV_ERR_LEND_REVOKED', `lent device ${this.name}${who}: ${reason}`));
  }

  /** Throws the revocation error (counted as refused) once the view is revoked. */
  private _live(): void {
    const closed = this._outstanding.closedWith;
    if (closed === undefined) return;
    this._counters.refused++;
    throw pvError(closed.code, closed.message) as PvError;
  }
}
