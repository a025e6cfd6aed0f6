/**
 * `GrantOps` for one domain, over the host-wide `GrantTableSpace` (reference protocol.md §2).
 *
 * One instance lives in each domain's worker and plays two roles, as a Xen guest kernel and the
 * hypervisor do: the *granter* side (`grantAccess`, `endAccess`, `isGrantInUse`) writes this
 * domain's own entries with the guest protocol (fill, then publish the flags; end with a CAS that
 * fails while the entry is in use), and the *hypercall* side (`mapGrants`, `unmapGrant`,
 * `grantCopy`) runs the hypervisor checks on another domain's entries on this domain's behalf,
 * treating every entry field and every argument as hostile (§6).
 *
 * SharedArrayBuffers have no page protection, so a grant is a capability the hypervisor code
 * enforces, not the hardware: a read-only mapping is still a writable `Uint8Array`, and pins are
 * what keep a granter from ending (and reusing) a page while it is mapped or copied.
 *
 * The maptrack (handle → mapping) is thread-local: it dies with the domain's thread, which is
 * why `GrantTableSpace.releaseDomain` drops a dead grantee's pins from the shared entries.
 */

import { pvError } from '../../protocol/errors.js';
import type { GrantCopyOp, GrantMapping, GrantOps, MapGrantOptions } from '../../protocol/Hypercalls.js';
import { DomainCounter } from '../../protocol/monitor/MonitorLayout.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import {
  type DomId,
  domId,
  type Gfn,
  type GrantRef,
  type Iova,
  type MapHandle,
  PAGE_SIZE,
} from '../../protocol/Types.js';
import type { IommuContext } from '../iommu/IommuContext.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { SharedArrayGuestMemory } from '../memory/SharedArrayGuestMemory.js';
import { pinGrant, unpinGrant } from './ActiveEntry.js';
import { copyBetween, type ResolvedSide, resolveSide } from './GrantCopy.js';
import {
  GNTTAB_NR_RESERVED_ENTRIES,
  GRANT_ENTRY_WORDS,
  type GrantTableSpace,
  GrantWord,
  GTF_PV_CLAIMED,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_type_mask,
  GTF_writing,
  MAX_GRANT_RETRIES,
} from './GrantTableSpace.js';

/** Options of `SimGrantOps`. */
export interface SimGrantOpsOptions {
  /** Most grant refs this domain may hold mapped at once (Xen's finite maptrack). Default 65536. */
  readonly maxMappedRefs?: number;
  /**
   * IOMMU contexts of the devices this domain owns, by device name: `mapGrants(…, { device })`
   * maps the granted frames for that device's DMA (Xen `GNTMAP_device_map`).
   */
  readonly devices?: ReadonlyMap<string, IommuContext>;
  /**
   * Bus address at which a device of `devices` sees IOVA 0 of its IOMMU context, by device name
   * (absent: 0). A local device's DMA reaches the IOMMU directly, so its address IS the IOVA; a
   * lent device (Device Lending) issues DMA on the lender's bus, and the lender-side NTB DMA
   * window (base W) maps `W + x` onto the borrower's bus address `x` before the borrower's IOMMU
   * translates it — so the address the device must be given is `W + iova`. `deviceAddr` is
   * therefore always what the device really puts on its bus; callers never add an offset.
   */
  readonly deviceDmaBase?: ReadonlyMap<string, number>;
  /**
   * This domain's counters in the host's monitor buffer (DomainCounter order,
   * protocol/monitor/MonitorLayout.ts): refs mapped and unmapped, copies and bytes copied.
   * This thread is their only writer. Absent: counted privately.
   */
  readonly monitor?: Float64Array;
}

/** One maptrack entry. */
interface MapRecord {
  readonly granter: DomId;
  readonly bases: readonly number[];
  readonly writable: boolean;
  /** Device the frames are also mapped for, and their IOVA there (unmapped before the pins drop). */
  readonly device?: IommuContext;
  readonly deviceIova?: Iova;
}

/** Grant-table operations of one domain (see the file comment). */
export class SimGrantOps implements GrantOps {
  /** The domain these operations act for. */
  readonly domid: DomId;
  private readonly _space: GrantTableSpace;
  private readonly _memories: MemoryDirectory;
  private readonly _maxMappedRefs: number;
  private readonly _devices: ReadonlyMap<string, IommuContext>;
  private readonly _dmaBase: ReadonlyMap<string, number>;
  /** Word index of entry 0 of our own table. */
  private readonly _ownTable: number;
  /** Next ref grantAccess tries: round-robin, so an ended ref is not reused at once. */
  private _cursor = GNTTAB_NR_RESERVED_ENTRIES;
  private readonly _maptrack = new Map<number, MapRecord>();
  private _mappedRefs = 0;
  private _nextHandle = 1;
  /** Monitor counters (DomainCounter order): shared when the host has a monitor, else private. */
  private readonly _mon: Float64Array;

  /**
   * `memories` must hold this domain's memory and those of the domains it maps or copies from.
   * Throws `PV_ERR_CONFIG` if `domid` has no table in `space`.
   */
  constructor(domid: DomId, space: GrantTableSpace, memories: MemoryDirectory, opts: SimGrantOpsOptions = {}) {
    if (domid >= space.config.maxDomains) {
      throw pvError('PV_ERR_CONFIG', `domain ${domid} has no grant table (maxDomains ${space.config.maxDomains})`);
    }
    this.domid = domid;
    this._space = space;
    this._memories = memories;
    this._maxMappedRefs = opts.maxMappedRefs ?? 65536;
    this._devices = opts.devices ?? new Map();
    this._dmaBase = opts.deviceDmaBase ?? new Map();
    for (const [name, base] of this._dmaBase) {
      if (!Number.isSafeInteger(base) || base < 0) {
        throw pvError('PV_ERR_CONFIG', `device ${name}: DMA base ${base} is not a bus address`);
      }
    }
    this._ownTable = space.entryBase(domid, 0);
    this._mon = opts.monitor ?? new Float64Array(DomainCounter.COUNT);
  }

  /**
   * Grants `remote` access to our `frame`: claims a free entry (bounded search + CAS), writes
   * the frame, then publishes domid and flags in one seq-cst store (XG: "write domid, write
   * frame, wmb, write flags"; domid and flags share word 0 here).
   */
  grantAccess(remote: DomId, frame: Gfn, readonly: boolean): GrantRef {
    const grantee = domId(remote);
    const pages = this._memories.require(this.domid).pageCount;
    if (!Number.isInteger(frame) || frame < 0 || frame >= pages) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `frame ${frame} outside the ${pages} pages of domain ${this.domid}`);
    }
    const w = this._space.words;
    const n = this._space.config.entriesPerDomain;
    for (let tried = GNTTAB_NR_RESERVED_ENTRIES; tried < n; tried++) {
      const ref = this._cursor;
      this._cursor = ref + 1 < n ? ref + 1 : GNTTAB_NR_RESERVED_ENTRIES;
      const base = this._ownTable + ref * GRANT_ENTRY_WORDS;
      // ORDERING: cheap load first; the CAS below is what claims the entry.
      if (Atomics.load(w, base + GrantWord.FLAGS_DOMID) !== 0) continue;
      // ORDERING: seq-cst CAS claims the entry against another thread of ours granting too.
      if (Atomics.compareExchange(w, base + GrantWord.FLAGS_DOMID, 0, GTF_PV_CLAIMED) !== 0) continue;
      // ORDERING: the frame is stored before the flags are published below.
      Atomics.store(w, base + GrantWord.FRAME, frame);
      const flags = GTF_permit_access | (readonly ? GTF_readonly : 0);
      // ORDERING: seq-cst publish; a hypervisor load that sees permit_access sees the frame too.
      Atomics.store(w, base + GrantWord.FLAGS_DOMID, flags | (grantee << 16));
      return ref as GrantRef;
    }
    throw pvError('PV_ERR_GRANT_NO_SPACE', `domain ${this.domid}: no free grant entry`);
  }

  /**
   * Ends a grant with a CAS of the flags word to 0, refused with `PV_ERR_GRANT_IN_USE` while it
   * is mapped or being copied (GTF_reading/GTF_writing or a pin): Xen never revokes (§2.3).
   */
  endAccess(ref: GrantRef): void {
    const w = this._space.words;
    const base = this._space.entryBase(this.domid, ref);
    for (let tries = 0; tries < MAX_GRANT_RETRIES; tries++) {
      // ORDERING: seq-cst load; the CAS below fails if the hypervisor changed the word since.
      const word0 = Atomics.load(w, base + GrantWord.FLAGS_DOMID);
      if ((word0 & GTF_type_mask) !== GTF_permit_access) {
        throw pvError('PV_ERR_GRANT_BAD_REF', `grant ${ref} of domain ${this.domid} is not granted`);
      }
      if ((word0 & (GTF_reading | GTF_writing)) !== 0 || this._pins(base) > 0) {
        throw pvError('PV_ERR_GRANT_IN_USE', `grant ${ref} of domain ${this.domid} is mapped or being copied`);
      }
      // ORDERING: a pin raises its count before CASing the status bits into this word, so
      // either we saw the pin above or this CAS loses to the status CAS.
      if (Atomics.compareExchange(w, base + GrantWord.FLAGS_DOMID, word0, 0) === word0) return;
    }
    throw pvError('PV_ERR_GRANT_IN_USE', `grant ${ref} of domain ${this.domid}: entry keeps changing`);
  }

  /** True while the grant is mapped or copied (status bits or pins). */
  isGrantInUse(ref: GrantRef): boolean {
    const base = this._space.entryBase(this.domid, ref);
    // ORDERING: seq-cst load; the answer is a snapshot.
    const word0 = Atomics.load(this._space.words, base + GrantWord.FLAGS_DOMID);
    return (word0 & (GTF_reading | GTF_writing)) !== 0 || this._pins(base) > 0;
  }

  /**
   * Maps grants `refs` of `granter`, all-or-nothing (XSA-224): if any ref fails its checks, the
   * pins already taken are dropped before the error is thrown. The granted frames must be
   * contiguous in the granter; the result is one zero-copy view on its SharedArrayBuffer.
   * With `opts.device` (a device this domain owns, else `PV_ERR_INVALID_ARG`), the frames are
   * also mapped in that device's IOMMU — read-only unless `writable` — and `deviceAddr` is the
   * address the device uses to reach them: the IOVA plus the device's DMA base (see
   * `SimGrantOpsOptions.deviceDmaBase`; 0 for a local device).
   */
  mapGrants(granter: DomId, refs: readonly GrantRef[], writable: boolean, opts?: MapGrantOptions): GrantMapping {
    // Stage ledger: a map (and below, an unmap) is GRANT time wherever it is called from.
    const prev = stages.enter(Stage.GRANT);
    try {
      return this._map(granter, refs, writable, opts);
    } finally {
      stages.enter(prev);
    }
  }

  private _map(granter: DomId, refs: readonly GrantRef[], writable: boolean, opts?: MapGrantOptions): GrantMapping {
    const count = Array.isArray(refs) ? refs.length : 0;
    if (count === 0 || count > this._space.config.entriesPerDomain) {
      throw pvError('PV_ERR_INVALID_ARG', `map needs 1 … ${this._space.config.entriesPerDomain} refs, got ${count}`);
    }
    if (this._mappedRefs + count > this._maxMappedRefs) {
      throw pvError('PV_ERR_GRANT_NO_SPACE', `domain ${this.domid}: maptrack limit ${this._maxMappedRefs} reached`);
    }
    const deviceName = opts?.device;
    const device = deviceName === undefined ? undefined : this._ownedDevice(deviceName);
    const memory = this._granterMemory(granter);
    const write = writable === true;
    const bases: number[] = [];
    let first = 0;
    let deviceIova: Iova | undefined;
    try {
      for (let i = 0; i < count; i++) {
        const ref = refs[i];
        const base = this._space.entryBase(granter, ref);
        const frame = pinGrant(this._space, base, this.domid, write, { granter, ref });
        bases.push(base);
        checkFrame(frame, memory, granter, ref);
        if (i === 0) first = frame;
        else if (frame !== first + i) {
          throw pvError(
            'PV_ERR_INVALID_ARG',
            `grant frames are not contiguous in domain ${granter}: ref ${ref} is frame ${frame}, expected ${first + i}`,
          );
        }
      }
      // INVARIANT: the frames were pinned, checked inside the granter's memory and found
      // contiguous; only now may the device reach them.
      if (device !== undefined) deviceIova = device.mapForeign(granter, first as Gfn, count, write);
    } catch (err) {
      for (const base of bases) unpinGrant(this._space, base, this.domid, write);
      throw err;
    }
    const handle = this._allocHandle();
    this._maptrack.set(handle, { granter, bases, writable: write, device, deviceIova });
    this._mappedRefs += count;
    this._mon[DomainCounter.GRANT_MAPS] += count;
    // INVARIANT: every frame was checked inside the granter's memory and they are contiguous.
    const view = memory.bytes.subarray(first * PAGE_SIZE, (first + count) * PAGE_SIZE);
    const mapping = { handle: handle as MapHandle, view, writable: write };
    if (deviceIova === undefined || deviceName === undefined) return mapping;
    // INVARIANT: the device is owned (checked above) and its base was validated at construction.
    const deviceAddr = ((this._dmaBase.get(deviceName) ?? 0) + deviceIova) as Iova;
    return { ...mapping, deviceAddr };
  }

  /**
   * Unmaps a mapping and drops its pins; `PV_ERR_GRANT_BAD_HANDLE` for an unknown handle. A
   * device mapping leaves the IOMMU first, so the device can never reach a page the granter
   * got back once the pins are gone.
   */
  unmapGrant(handle: MapHandle): void {
    const prev = stages.enter(Stage.GRANT);
    try {
      this._unmap(handle);
    } finally {
      stages.enter(prev);
    }
  }

  private _unmap(handle: MapHandle): void {
    const record = this._maptrack.get(handle);
    if (record === undefined) throw pvError('PV_ERR_GRANT_BAD_HANDLE', `domain ${this.domid}: no mapping ${handle}`);
    // The IOMMU extent goes first (generation bumped), then the pins.
    if (record.device !== undefined && record.deviceIova !== undefined) record.device.unmapForeign(record.deviceIova);
    this._maptrack.delete(handle);
    this._mappedRefs -= record.bases.length;
    this._mon[DomainCounter.GRANT_UNMAPS] += record.bases.length;
    for (const base of record.bases) unpinGrant(this._space, base, this.domid, record.writable);
  }

  /**
   * `GNTTABOP_copy`: copies `len` ≤ PAGE_SIZE bytes without crossing a page on either side
   * (`PV_ERR_GRANT_BAD_COPY`). A granted side needs a read (source) or write (dest) grant to
   * this domain and holds a transient pin while the bytes move, so end access cannot race it.
   */
  grantCopy(op: GrantCopyOp): void {
    const len = op.len;
    if (!Number.isInteger(len) || len < 0 || len > PAGE_SIZE) {
      throw pvError('PV_ERR_GRANT_BAD_COPY', `copy length ${len} outside [0, ${PAGE_SIZE}]`);
    }
    if (len === 0) return;
    const own = this._memories.require(this.domid);
    // Validate both sides' numbers before taking any pin.
    const lookup = (d: DomId): SharedArrayGuestMemory => this._granterMemory(d);
    const source = resolveSide(op.source, len, own, this._space, lookup);
    const dest = resolveSide(op.dest, len, own, this._space, lookup);
    const srcAddr = this._pinSide(source, false);
    try {
      const dstAddr = this._pinSide(dest, true);
      try {
        copyBetween(source.memory, srcAddr, dest.memory, dstAddr, len);
        this._mon[DomainCounter.GRANT_COPIES]++;
        this._mon[DomainCounter.GRANT_COPY_BYTES] += len;
      } finally {
        this._unpinSide(dest, true);
      }
    } finally {
      this._unpinSide(source, false);
    }
  }

  /** Number of live mappings this domain holds. */
  liveMappings(): number {
    return this._maptrack.size;
  }

  /** Pins a granted side and returns its byte address in the granter; a `gpa` side as is. */
  private _pinSide(side: ResolvedSide, write: boolean): number {
    if (side.base < 0) return side.addr;
    const ref = side.ref;
    const frame = pinGrant(this._space, side.base, this.domid, write, { granter: side.memory.domid, ref });
    try {
      checkFrame(frame, side.memory, side.memory.domid, ref);
    } catch (err) {
      unpinGrant(this._space, side.base, this.domid, write);
      throw err;
    }
    // INVARIANT: resolveSide checked offset + len ≤ PAGE_SIZE, checkFrame the frame.
    return frame * PAGE_SIZE + side.addr;
  }

  private _unpinSide(side: ResolvedSide, write: boolean): void {
    if (side.base >= 0) unpinGrant(this._space, side.base, this.domid, write);
  }

  /** The IOMMU of a device this domain owns; `PV_ERR_INVALID_ARG` for any other name. */
  private _ownedDevice(name: string): IommuContext {
    const device = typeof name === 'string' ? this._devices.get(name) : undefined;
    if (device === undefined || device.owner() !== this.domid) {
      throw pvError('PV_ERR_INVALID_ARG', `domain ${this.domid} owns no device named ${String(name)}`);
    }
    return device;
  }

  /** The granter's memory; `PV_ERR_GRANT_BAD_DOMAIN` if this thread does not know it. */
  private _granterMemory(granter: DomId): SharedArrayGuestMemory {
    const memory = Number.isInteger(granter) ? this._memories.get(granter) : undefined;
    if (memory === undefined) throw pvError('PV_ERR_GRANT_BAD_DOMAIN', `domain ${granter} is unknown here`);
    return memory;
  }

  private _pins(base: number): number {
    const w = this._space.words;
    // ORDERING: seq-cst loads of hypervisor-written counts (see endAccess).
    return Atomics.load(w, base + GrantWord.READ_PINS) + Atomics.load(w, base + GrantWord.WRITE_PINS);
  }

  private _allocHandle(): number {
    // Bounded: the maptrack holds at most _maxMappedRefs handles, so a free one is near.
    for (;;) {
      const handle = this._nextHandle;
      this._nextHandle = handle >= 0x7fffffff ? 1 : handle + 1;
      if (!this._maptrack.has(handle)) return handle;
    }
  }
}

/** A frame read from a hostile entry must lie inside the granter's memory. */
function checkFrame(frame: number, memory: SharedArrayGuestMemory, granter: DomId, ref: number): void {
  if (frame < 0 || frame >= memory.pageCount) {
    throw pvError(
      'PV_ERR_GRANT_BAD_REF',
      `grant ${ref} of domain ${granter} names frame ${frame >>> 0}, outside its memory`,
    );
  }
}
