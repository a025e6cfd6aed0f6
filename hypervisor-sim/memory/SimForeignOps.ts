/**
 * `ForeignMemoryOps` for a privileged domain (protocol/Hypercalls.ts): other domains' memory
 * without grants, as vhost's `VHOST_SET_MEM_TABLE`, vhost-vdpa's IOTLB / VFIO DMA map and Xen's
 * privcmd foreign mappings give a backend that the platform trusts.
 *
 * Who is privileged: dom0, the notion the simulator already has (xenstore grants DOM0 every
 * right, the scenario runs its backends there). A Xen driver domain other than dom0 cannot map
 * foreign pages without XSM privileges either, so `isPrivileged` is `domid === DOM0` and the
 * domain worker builds these ops for dom0 only; the constructor refuses anyone else, so a guest
 * cannot get them by any path.
 *
 * `regions` hands out the guest's own SharedArrayBuffer, found in this thread's
 * MemoryDirectory (the host posts every domain's buffer to every worker): one region, the whole
 * memory at GPA 0. `mapForDevice` range-checks `[gpa, gpa + len)` with the guest memory's
 * overflow-safe `checkRange` (it never adds the two numbers before both are known in range),
 * then inserts the spanned pages in the IOMMU of a device this domain owns with the same
 * `mapForeign` a grant device map uses, so the host's revocation of a dead guest's extents
 * (HostDevices.release) covers these mappings too.
 *
 * The mapping table (handle → extent) is thread-local, like the grant maptrack: it dies with
 * this domain's thread, and the host clears the IOMMU of every device the dead domain owned.
 */

import { pvError } from '../../protocol/errors.js';
import type { ForeignDeviceMapping, ForeignMemoryOps, ForeignRegion } from '../../protocol/Hypercalls.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import {
  DOM0,
  DOMID_MAX,
  type DomId,
  type Gfn,
  type GuestPhysAddr,
  type Iova,
  type MapHandle,
  PAGE_SIZE,
} from '../../protocol/Types.js';
import type { IommuContext } from '../iommu/IommuContext.js';
import type { MemoryDirectory } from './MemoryDirectory.js';
import type { SharedArrayGuestMemory } from './SharedArrayGuestMemory.js';

/** Options of `SimForeignOps`. */
export interface SimForeignOpsOptions {
  /** IOMMU contexts of the devices this domain owns, by name (as SimGrantOpsOptions.devices). */
  readonly devices?: ReadonlyMap<string, IommuContext>;
  /** Bus address at which an owned device sees IOVA 0, by name (absent: 0; SimGrantOpsOptions.deviceDmaBase). */
  readonly deviceDmaBase?: ReadonlyMap<string, number>;
  /** Most live device mappings at once (a finite table, as Xen's maptrack). Default 65536. */
  readonly maxMappings?: number;
}

/** One live device mapping. */
interface DeviceMapRecord {
  readonly device: IommuContext;
  readonly iova: Iova;
}

/** True when `domid` may reach other domains' memory (see the file comment). */
export function isPrivileged(domid: DomId): boolean {
  return domid === DOM0;
}

/** Foreign-memory operations of one privileged domain (see the file comment). */
export class SimForeignOps implements ForeignMemoryOps {
  /** The domain these operations act for. */
  readonly domid: DomId;
  private readonly _memories: MemoryDirectory;
  private readonly _devices: ReadonlyMap<string, IommuContext>;
  private readonly _dmaBase: ReadonlyMap<string, number>;
  private readonly _maxMappings: number;
  private readonly _maps = new Map<number, DeviceMapRecord>();
  private _nextHandle = 1;

  /** The ops for `domid`, or undefined when it is not privileged (what a guest's hypercalls carry). */
  static forDomain(
    domid: DomId,
    memories: MemoryDirectory,
    opts: SimForeignOpsOptions = {},
  ): SimForeignOps | undefined {
    return isPrivileged(domid) ? new SimForeignOps(domid, memories, opts) : undefined;
  }

  /**
   * `memories` is this thread's directory (every domain's memory). Throws `PV_ERR_CONFIG` when
   * `domid` is not privileged or an option is malformed.
   */
  constructor(domid: DomId, memories: MemoryDirectory, opts: SimForeignOpsOptions = {}) {
    if (!isPrivileged(domid)) {
      throw pvError('PV_ERR_CONFIG', `domain ${domid} is not privileged: it may not map foreign memory`);
    }
    const max = opts.maxMappings ?? 65536;
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw pvError('PV_ERR_CONFIG', `maxMappings must be a positive integer, got ${max}`);
    }
    this._dmaBase = opts.deviceDmaBase ?? new Map();
    for (const [name, base] of this._dmaBase) {
      if (!Number.isSafeInteger(base) || base < 0) {
        throw pvError('PV_ERR_CONFIG', `device ${name}: DMA base ${base} is not a bus address`);
      }
    }
    this.domid = domid;
    this._memories = memories;
    this._devices = opts.devices ?? new Map();
    this._maxMappings = max;
  }

  /** The memory of `domid`: one region, all of it at GPA 0, aliasing the guest's own buffer. */
  regions(domid: DomId): ForeignRegion[] {
    const memory = this._foreign(domid);
    return [{ gpa: 0 as GuestPhysAddr, size: memory.size, buffer: memory.buffer, offset: 0 }];
  }

  /**
   * Maps the pages `[gpa, gpa + len)` spans in the IOMMU of `device` (owned by this domain),
   * read-only unless `writable`; `deviceAddr` is the bus address of `gpa` itself.
   */
  mapForDevice(domid: DomId, gpa: GuestPhysAddr, len: number, writable: boolean, device: string): ForeignDeviceMapping {
    // Stage ledger: a foreign device map costs what a grant device map does (GRANT time).
    const prev = stages.enter(Stage.GRANT);
    try {
      return this._map(domid, gpa, len, writable === true, device);
    } finally {
      stages.enter(prev);
    }
  }

  /** Removes the mapping's IOMMU extent (valid or already revoked by a guest's death). */
  unmapForDevice(handle: MapHandle): void {
    const record = Number.isInteger(handle) ? this._maps.get(handle) : undefined;
    if (record === undefined) {
      throw pvError('PV_ERR_INVALID_ARG', `domain ${this.domid}: no foreign device mapping ${String(handle)}`);
    }
    const prev = stages.enter(Stage.GRANT);
    try {
      // False when the extent is already gone (a cleared context): the handle is freed either way.
      record.device.unmapForeign(record.iova);
      this._maps.delete(handle);
    } finally {
      stages.enter(prev);
    }
  }

  /** Live device mappings. */
  liveDeviceMappings(): number {
    return this._maps.size;
  }

  private _map(domid: DomId, gpa: GuestPhysAddr, len: number, writable: boolean, name: string): ForeignDeviceMapping {
    const device = this._ownedDevice(name);
    const memory = this._foreign(domid);
    if (len === 0) throw pvError('PV_ERR_INVALID_ARG', 'a device mapping of 0 bytes maps nothing');
    // Overflow-safe: refuses non-integers and negatives, and tests `len <= size - gpa`.
    memory.checkRange(gpa, len);
    if (this._maps.size >= this._maxMappings) {
      throw pvError('PV_ERR_LIMIT', `domain ${this.domid}: ${this._maxMappings} foreign device mappings live`);
    }
    // INVARIANT: checkRange proved 0 ≤ gpa and gpa + len ≤ size (a safe integer), so these are exact.
    const first = Math.floor(gpa / PAGE_SIZE);
    const last = Math.floor((gpa + len - 1) / PAGE_SIZE);
    const iova = device.mapForeign(domid, first as Gfn, last - first + 1, writable);
    const handle = this._allocHandle();
    this._maps.set(handle, { device, iova });
    // INVARIANT: the device is owned (checked above) and its base was validated at construction.
    const deviceAddr = ((this._dmaBase.get(name) ?? 0) + iova + (gpa - first * PAGE_SIZE)) as Iova;
    return { handle: handle as MapHandle, deviceAddr, len, writable };
  }

  /** Another live domain's memory; refuses malformed ids, the caller itself and unknown domains. */
  private _foreign(domid: DomId): SharedArrayGuestMemory {
    if (!Number.isInteger(domid) || domid < 0 || domid > DOMID_MAX) {
      throw pvError('PV_ERR_INVALID_ARG', `${String(domid)} is not a domain id`);
    }
    if (domid === this.domid) {
      throw pvError('PV_ERR_INVALID_ARG', `domain ${domid} reaches its own memory through hc.memory, not foreign`);
    }
    const memory = this._memories.get(domid);
    if (memory === undefined) throw pvError('PV_ERR_NO_DOMAIN', `domain ${domid} is unknown here`);
    return memory;
  }

  /** The IOMMU of a device this domain owns; `PV_ERR_INVALID_ARG` for any other name. */
  private _ownedDevice(name: string): IommuContext {
    const device = typeof name === 'string' ? this._devices.get(name) : undefined;
    if (device === undefined || device.owner() !== this.domid) {
      throw pvError('PV_ERR_INVALID_ARG', `domain ${this.domid} owns no device named ${String(name)}`);
    }
    return device;
  }

  private _allocHandle(): number {
    // Bounded: at most _maxMappings handles are live, so a free one is near.
    for (;;) {
      const handle = this._nextHandle;
      this._nextHandle = handle >= 0x7fffffff ? 1 : handle + 1;
      if (!this._maps.has(handle)) return handle;
    }
  }
}
