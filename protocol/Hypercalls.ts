/**
 * The Hypercalls interface: everything a frontend or a backend may ask of the hypervisor.
 *
 * Frontends and backends import only this file (never `hypervisor-sim/`), so they can be run
 * against the real simulator inside a domain worker, against fakes in unit tests, or against a
 * recording wrapper in the fuzzer. The shape follows Xen: grant-table ops
 * (`GNTTABOP_map_grant_ref`, `unmap`, `copy`, end access), event-channel ops
 * (`EVTCHNOP_alloc_unbound`, `bind_interdomain`, `send`, `close`, mask/unmask), and xenstore
 * requests. Grant and event-channel ops are synchronous (a hypercall traps and returns); store
 * ops are asynchronous (xenstored is a separate daemon reached over a ring).
 */

import type { DomId, EvtchnPort, Gfn, GrantRef, GuestPhysAddr, Iova, MapHandle } from './Types.js';

/** Consumer-side view of one domain's own guest-physical memory (rust-vmm `GuestMemory`). */
export interface GuestMemory {
  /** Owning domain. */
  readonly domid: DomId;
  /** Size in bytes (a multiple of PAGE_SIZE). */
  readonly size: number;
  /** Throws `PV_ERR_OUT_OF_BOUNDS` unless `[addr, addr + len)` lies inside memory (overflow-safe). */
  checkRange(addr: GuestPhysAddr, len: number): void;
  /** A bounds-checked zero-copy view of `[addr, addr + len)`. Do not keep it across a free. */
  view(addr: GuestPhysAddr, len: number): Uint8Array;
  /** Copies `dst.length` bytes from `addr` into `dst`. */
  read(addr: GuestPhysAddr, dst: Uint8Array): void;
  /** Copies `src` to `addr`. */
  write(addr: GuestPhysAddr, src: Uint8Array): void;
  /** Allocates `count` contiguous zeroed pages; throws `PV_ERR_NO_MEMORY` when none are left. */
  allocPages(count: number): GuestPhysAddr;
  /** Returns pages to the allocator; refuses pages that were not allocated. */
  freePages(addr: GuestPhysAddr, count: number): void;
  /** Pages still free. */
  freePageCount(): number;
}

/** A live grant mapping: a zero-copy view onto the granter's pages. */
export interface GrantMapping {
  /** Needed to unmap (a maptrack index in the mapping domain). */
  readonly handle: MapHandle;
  /** The granter's pages, contiguous, `refs.length * PAGE_SIZE` bytes. */
  readonly view: Uint8Array;
  /** True when mapped writable. */
  readonly writable: boolean;
  /**
   * With `mapGrants(…, { device })`: the I/O virtual address at which that device reaches the
   * pages (contiguous), as Xen's `GNTMAP_device_map` returns `dev_bus_addr`.
   */
  readonly deviceAddr?: Iova;
}

/** Options of a grant map. */
export interface MapGrantOptions {
  /**
   * Also map the pages for DMA by this device (one the calling domain owns): the hypervisor
   * inserts IOMMU entries and returns `deviceAddr`. Unmapping removes them.
   */
  readonly device?: string;
}

/** One side of a grant copy: a granted page of another domain, or the caller's own memory. */
export type GrantCopySide =
  | { readonly domid: DomId; readonly ref: GrantRef; readonly offset: number }
  | { readonly gpa: GuestPhysAddr };

/** `GNTTABOP_copy`: at most one page on each side; a copy that crosses a page is refused. */
export interface GrantCopyOp {
  readonly source: GrantCopySide;
  readonly dest: GrantCopySide;
  readonly len: number;
}

/** Grant-table operations (Xen `grant_table.h`). */
export interface GrantOps {
  /** Grants `remote` access to one of our frames; returns the reference to hand to it. */
  grantAccess(remote: DomId, frame: Gfn, readonly: boolean): GrantRef;
  /** Ends a grant; throws `PV_ERR_GRANT_IN_USE` while it is mapped (never revokes silently). */
  endAccess(ref: GrantRef): void;
  /** True while the grant is mapped by its grantee (GTF_reading / GTF_writing). */
  isGrantInUse(ref: GrantRef): boolean;
  /** Maps grants of `granter` contiguously (their frames must be contiguous in the granter). */
  mapGrants(granter: DomId, refs: readonly GrantRef[], writable: boolean, opts?: MapGrantOptions): GrantMapping;
  /** Unmaps a mapping made by `mapGrants`. */
  unmapGrant(handle: MapHandle): void;
  /** Grant copy, page-bounded on both sides; source needs read and dest write permission. */
  grantCopy(op: GrantCopyOp): void;
  /** Number of live mappings this domain holds (for leak checks after teardown). */
  liveMappings(): number;
}

/** How long and how hard to wait: spin first, then sleep (DESIGN §4). */
export interface WaitOptions {
  /** Polls of the word before sleeping in `Atomics.wait`; 0 sleeps at once. */
  readonly spinBudget: number;
  /** Give up after this many milliseconds (Infinity for no limit). */
  readonly timeoutMs: number;
}

/** Event-channel operations (Xen `event_channel.h`, 2-level ABI semantics). */
export interface EvtchnOps {
  /** `EVTCHNOP_alloc_unbound`: a local port that `remote` may bind to. */
  allocUnbound(remote: DomId): EvtchnPort;
  /** `EVTCHNOP_bind_interdomain`: binds to `remotePort` of `remote`; the new port starts pending. */
  bindInterdomain(remote: DomId, remotePort: EvtchnPort): EvtchnPort;
  /** `EVTCHNOP_send`: sets the peer port pending and wakes its domain unless masked. */
  notify(port: EvtchnPort): void;
  /** `EVTCHNOP_close`: the peer's end goes back to unbound. */
  close(port: EvtchnPort): void;
  /** Masks delivery: a notify keeps the port pending but does not wake. */
  mask(port: EvtchnPort): void;
  /** Unmasks; a port left pending while masked wakes the domain now. */
  unmask(port: EvtchnPort): void;
  /** Clears and returns the pending bit (clear before scanning the ring, then re-check). */
  testAndClearPending(port: EvtchnPort): boolean;
  /** Reads the pending bit without clearing it. */
  isPending(port: EvtchnPort): boolean;
  /** Snapshot of this domain's wake word; pass it to `waitForEvent`. */
  wakeSnapshot(): number;
  /** Sleeps until the wake word differs from `snapshot` or the timeout ends; true if woken. */
  waitForEvent(snapshot: number, opts: WaitOptions): boolean;
  /** Wakes this domain's waiters without an event (used to deliver control-plane work). */
  kickSelf(): void;
}

/** Store permission (xenstore `XS_PERM_*`): owner has all rights; others as listed. */
export interface StorePerm {
  readonly domid: DomId;
  readonly read: boolean;
  readonly write: boolean;
}

/** Transaction handle; 0 means "no transaction". */
export type StoreTx = number;

/** Removes a watch. */
export type Unwatch = () => Promise<void>;

/** xenstore operations, asynchronous. Paths are absolute (`/local/domain/1/device/vif/0`). */
export interface StoreOps {
  /** Reads a value; throws `PV_ERR_STORE_NOENT`. */
  read(path: string, tx?: StoreTx): Promise<string>;
  /** Reads a value or returns undefined. */
  tryRead(path: string, tx?: StoreTx): Promise<string | undefined>;
  /** Writes a value, creating missing parents (owned by the writer). */
  write(path: string, value: string, tx?: StoreTx): Promise<void>;
  /** Creates a node with an empty value if missing. */
  mkdir(path: string, tx?: StoreTx): Promise<void>;
  /** Removes a node and its subtree. */
  rm(path: string, tx?: StoreTx): Promise<void>;
  /** Names of the children of a node. */
  directory(path: string, tx?: StoreTx): Promise<string[]>;
  /** Sets the permissions of a node (owner only). The first entry is the owner. */
  setPerms(path: string, perms: readonly StorePerm[], tx?: StoreTx): Promise<void>;
  /** Gets the permissions of a node. */
  getPerms(path: string, tx?: StoreTx): Promise<StorePerm[]>;
  /**
   * Watches a subtree: `cb(changedPath)` fires at least once after registration and after every
   * change (level-triggered: re-read state in the callback; events may coalesce).
   */
  watch(path: string, cb: (changedPath: string) => void): Promise<Unwatch>;
  /** Starts a transaction. */
  transactionStart(): Promise<StoreTx>;
  /** Ends a transaction; with `commit` it throws `PV_ERR_STORE_AGAIN` on conflict. */
  transactionEnd(tx: StoreTx, commit: boolean): Promise<void>;
}

/** A ring-end record of the host's monitor buffer (protocol/monitor/MonitorLayout.ts), taken by `MonitorOps`. */
export interface MonitorRingRecord {
  /** The record's counters (RingCounter order); only the thread that took the record writes them. */
  readonly counters: Float64Array;
  /** Frees the record (the ring end is torn down); idempotent. */
  release(): void;
}

/**
 * Publishing counters to monitors (`pvio top`): the hypervisor hands out records of a shared
 * buffer the host's main thread reads. Optional: fakes and the fuzzer have none, and a ring end
 * then keeps counting privately.
 */
export interface MonitorOps {
  /**
   * A record for one end of a ring of `kind` ('blkif', 'vrdma-ctrl', 'vrdma-data', 'io') shared
   * with `peer`, owned by the calling domain; undefined when the pool is exhausted.
   */
  ringRecord(kind: string, peer: DomId, end: 'front' | 'back'): MonitorRingRecord | undefined;
}

/**
 * One region of another domain's guest-physical memory, as a privileged domain reaches it: the
 * bytes `[gpa, gpa + size)` of the guest live at `buffer[offset, offset + size)`. The buffer is
 * the guest's own memory (shared, zero copy): a write through it is a write into the guest.
 */
export interface ForeignRegion {
  /** First guest-physical address of the region. */
  readonly gpa: GuestPhysAddr;
  /** Bytes (> 0, a whole number of pages). */
  readonly size: number;
  /** The guest's memory holding the region. */
  readonly buffer: SharedArrayBuffer;
  /** Byte offset of `gpa` inside `buffer`. */
  readonly offset: number;
}

/** A live IOMMU mapping of a foreign guest-physical range for a device (`mapForDevice`). */
export interface ForeignDeviceMapping {
  /** Needed to unmap. Its own namespace: not a grant `MapHandle` of `GrantOps`. */
  readonly handle: MapHandle;
  /**
   * What the device puts on its bus to reach the mapped `gpa` (the byte itself, not its page):
   * the IOVA of the first page spanned, plus the in-page offset of `gpa`, plus the device's DMA
   * base (non-zero for a lent device), exactly as `GrantMapping.deviceAddr` is computed.
   */
  readonly deviceAddr: Iova;
  /** Bytes the device may reach from `deviceAddr` (the `len` asked for; whole pages are mapped). */
  readonly len: number;
  /** True when the device may write. */
  readonly writable: boolean;
}

/**
 * Foreign memory of other domains, for a PRIVILEGED backend domain (dom0): what vhost gets with
 * `VHOST_SET_MEM_TABLE` (the guest's memory regions, to translate the bare guest-physical
 * addresses of virtio descriptors), what vhost-vdpa's IOTLB / VFIO's DMA map give a device
 * (guest-physical ranges mapped in the IOMMU of a device the backend owns, for zero-copy DMA),
 * and what Xen's privcmd foreign mappings give dom0. No grant is involved: the guest does not
 * consent page by page, so only a privileged domain gets this member (`Hypercalls.foreign` is
 * undefined everywhere else): a guest must never reach another guest's memory.
 *
 * Nothing is pinned: guest memory never leaves its domain while the domain lives, and when the
 * guest dies the hypervisor revokes every IOMMU entry targeting its memory (a later DMA faults;
 * `unmapForDevice` still frees the handle). Regions already returned keep aliasing the dead
 * guest's buffer; a backend must drop them when the guest goes away.
 *
 * Errors: `PV_ERR_INVALID_ARG` for a malformed argument, the caller's own domid, a device the
 * caller does not own (same rule as `MapGrantOptions.device`) or an unknown handle;
 * `PV_ERR_NO_DOMAIN` for a domain this domain does not know (never existed or is gone);
 * `PV_ERR_OUT_OF_BOUNDS` for a range outside the guest's memory; from the IOMMU,
 * `PV_ERR_NOT_SUPPORTED` (device without translation) and `PV_ERR_LIMIT` (no room).
 */
export interface ForeignMemoryOps {
  /** The memory of `domid` as regions in address order (today one: all of it at GPA 0). */
  regions(domid: DomId): ForeignRegion[];
  /**
   * Maps `[gpa, gpa + len)` of `domid` (len > 0, inside its memory, checked without adding the
   * two) for DMA by `device`, which the caller must own: the pages the range spans are inserted
   * in the device's IOMMU, read-only unless `writable` (page granular, as an IOMMU is: the
   * device can reach the rest of the first and last page too).
   */
  mapForDevice(domid: DomId, gpa: GuestPhysAddr, len: number, writable: boolean, device: string): ForeignDeviceMapping;
  /** Removes a mapping's IOMMU entries; `PV_ERR_INVALID_ARG` for a handle that is not live. */
  unmapForDevice(handle: MapHandle): void;
  /** Live device mappings this domain holds (for leak checks after teardown). */
  liveDeviceMappings(): number;
}

/** Everything a domain may do to the hypervisor. */
export interface Hypercalls {
  readonly domid: DomId;
  readonly memory: GuestMemory;
  readonly grant: GrantOps;
  readonly evtchn: EvtchnOps;
  readonly store: StoreOps;
  /** Counter publishing for monitors, when the hypervisor offers it. */
  readonly monitor?: MonitorOps;
  /** Other domains' memory, for a privileged domain only (undefined in guests; see `ForeignMemoryOps`). */
  readonly foreign?: ForeignMemoryOps;
}

/** Retries `fn` inside a store transaction until it commits (xenstore's EAGAIN loop). */
export async function withTransaction<T>(
  store: StoreOps,
  fn: (tx: StoreTx) => Promise<T>,
  maxAttempts = 64,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const tx = await store.transactionStart();
    let result: T;
    try {
      result = await fn(tx);
    } catch (err) {
      await store.transactionEnd(tx, false);
      throw err;
    }
    try {
      await store.transactionEnd(tx, true);
      return result;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== 'PV_ERR_STORE_AGAIN' || attempt >= maxAttempts) throw err;
    }
  }
}
