/**
 * SmartIO's shared memory segments across the fabric (TOCS 2021 §3; Dolphin SISCI
 * `SCICreateSegment` / `SCIConnectSegment` / `SCIMapRemoteSegment`): a host exports a segment of
 * its memory, other hosts map it through an NTB window, and devices lent to them DMA into it —
 * so a lent device and a cluster application share one global address space.
 *
 * ```
 *  export on A:   A's segment pool (top of A's RAM, SegmentPool.ts) ─► base (A bus address)
 *  map on B:      B bus windowAddr ─ B's window on ntb-A ═══ NTB ═══► A RAM base      (CPU view)
 *  device on B:   lender L bus addr ─ L's window on ntb-B ═══► B windowAddr ─ B's window ═══►
 *                   A RAM base ─ NtbDmaResolver: pool table says live ─► A's segment memory
 * ```
 * A device lent to B is physically on its lender L and issues lender-bus addresses (as for its
 * DMA window and P2P): `mapForDevice` opens one more window on L towards B onto `windowAddr`, so
 * the device reaches the segment THROUGH B's mapping and loses it with B's mapping: two NTB
 * crossings either way — L = A (A → B → A: B's adapter turns the TLP round, its window being in
 * its own aperture, so no B links) or an exporter C (A → B → C). The windows are exactly the segment's size, so a DMA
 * past its end is unroutable; the resolver checks the pool table as well (a stale window onto a
 * withdrawn segment faults).
 *
 * Program side: the exporter sees its segment as plain memory (`SegmentExport.local`); a mapping
 * host through its SegmentMapping (SegmentRegistry.ts: checked per access, revoked by a forced
 * unexport). Teardown: `unmap` closes the device windows, then the host's window; a forced
 * unexport revokes every mapping (closing their windows) before the pool slot is withdrawn and
 * freed; the end of a lease closes that lease's device windows (Cluster's registry events).
 */

import { pvError } from '../../protocol/errors.js';
import type { HostPhysAddr } from '../../protocol/Types.js';
import type { SegmentMapping, SegmentRegistry } from '../lending/SegmentRegistry.js';
import type { PcieCluster } from '../pcie/PcieCluster.js';
import { ApertureSpace, type Placement } from './FabricPlan.js';
import type { OpenedWindow, OpenWindow } from './P2pWindows.js';
import { SegmentPool, type SegmentPoolData } from './SegmentPool.js';

/** An exported segment, as `exportSegment` returns it to the exporter. */
export interface SegmentExport {
  readonly name: string;
  readonly host: string;
  /** Bus address of byte 0 on the exporter. */
  readonly base: number;
  readonly size: number;
  /** The exporter's own view of the segment (plain memory in its pool). */
  readonly local: Uint8Array;
}

/** A host's mapping of a segment through the fabric (what `mapSegment` returns). */
export interface SegmentWindow {
  readonly name: string;
  readonly exporter: string;
  readonly mapper: string;
  /** Bus address on `mapper` of byte 0 of the segment (= `base` when the exporter maps its own). */
  readonly windowAddr: number;
  readonly size: number;
  /** NTB crossings of one CPU access from the mapper's root complex (0 or 1). */
  readonly ntbCrossings: number;
  /** The program-side handle (checked reads and writes; SegmentRegistry.ts). */
  readonly mapping: SegmentMapping;
}

/** A lent device's path into a mapped segment (what `mapForDevice` returns). */
export interface DeviceSegmentWindow {
  /** Lender bus address the device DMAs to for byte 0 of the segment. */
  readonly addr: number;
  readonly size: number;
  /** Registry id of the lease (`accel0@A`). */
  readonly lease: string;
  /** One DMA along it: NTB crossings and link hops (from the router). */
  readonly ntbCrossings: number;
  readonly linkHops: number;
}

/** What the segment layer needs of the Cluster. */
export interface SegmentHooks {
  readonly fabric: PcieCluster;
  readonly registry: SegmentRegistry;
  /** Pools by host (hosts without one cannot export). */
  readonly pools: readonly SegmentPoolData[];
  /** Opens a window on `host`'s NTB side towards `peer` (Cluster: PV_ERR_PCIE_UNROUTABLE if unlinked). */
  readonly open: OpenWindow;
}

interface Exported {
  readonly pool: SegmentPool;
  readonly slot: number;
  readonly place: Placement;
}

interface Mapped {
  readonly windows: OpenedWindow[];
  readonly devices: Map<DeviceSegmentWindow, OpenedWindow[]>;
}

/** The Cluster's segments (see the file comment). */
export class ClusterSegments {
  private readonly _pools = new Map<string, { pool: SegmentPool; space: ApertureSpace }>();
  private readonly _exported = new Map<string, Exported>();
  private readonly _mapped = new Map<SegmentWindow, Mapped>();
  private _ids = 1;

  constructor(private readonly _h: SegmentHooks) {
    for (const p of _h.pools)
      this._pools.set(p.host, { pool: new SegmentPool(p), space: new ApertureSpace(0, p.bytes) });
  }

  /** Exports `bytes` of `host`'s segment pool as `name` (zeroed; placed on 64 KiB boundaries). */
  export(host: string, name: string, bytes: number): SegmentExport {
    const e = this._pools.get(host);
    if (e === undefined)
      throw pvError('PV_ERR_CONFIG', `${host} has no segment pool (segmentBytes 0, or no such host)`);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `segment ${name}: size must be a positive integer, got ${bytes}`);
    }
    if (this._exported.has(name)) throw pvError('PV_ERR_INVALID_ARG', `segment ${name} is already exported`);
    const place = e.space.place(bytes);
    const base = e.pool.data.base + place.base;
    let slot = -1;
    try {
      e.pool.bytes.fill(0, place.base, place.base + place.size);
      // Published before it is registered: no window reaches it until someone maps it.
      slot = e.pool.publish(place.base, bytes, this._ids++);
      this._h.registry.export({ name, host, size: bytes, base, buffer: e.pool.data.mem, bufferOffset: place.base });
    } catch (err) {
      if (slot >= 0) e.pool.withdraw(slot);
      e.space.free(place);
      throw err;
    }
    this._exported.set(name, { pool: e.pool, slot, place });
    return { name, host, base, size: bytes, local: new Uint8Array(e.pool.data.mem, place.base, bytes) };
  }

  /** Maps segment `name` on `byHost`: a window onto the exporter's `base` (none for the exporter itself). */
  map(name: string, byHost: string): SegmentWindow {
    const info = this._h.registry.lookup(name);
    // Only segments placed in a pool have a route the resolvers know (not ones exported into the
    // registry directly).
    if (!this._exported.has(name)) throw pvError('PV_ERR_LEND_NOT_FOUND', `segment ${name} is not in a segment pool`);
    const windows: OpenedWindow[] = [];
    const windowAddr =
      byHost === info.host ? info.base : this._h.open(byHost, info.host, info.size, info.base, windows);
    try {
      const route = this._h.fabric.route({ host: byHost, node: 'rc' }, windowAddr as HostPhysAddr, info.size);
      const rec: Mapped = { windows, devices: new Map() };
      let w: SegmentWindow | undefined;
      const mapping = this._h.registry.map(name, byHost, {
        // A forced unexport: close this mapping's windows (device paths first).
        onRevoke: () => {
          if (w !== undefined) this._close(w);
        },
      });
      w = {
        name,
        exporter: info.host,
        mapper: byHost,
        windowAddr,
        size: info.size,
        ntbCrossings: route.ntbCrossings,
        mapping,
      };
      this._mapped.set(w, rec);
      return w;
    } catch (err) {
      closeAll(this._h.fabric, windows);
      throw err;
    }
  }

  /**
   * Lets lent device `device` (its lease `lease`, physically at `lender`, borrowed by the
   * mapper) DMA into the segment through the mapper's window; returns the address it uses.
   */
  mapForDevice(w: SegmentWindow, lease: string, lender: string, device: string, borrower: string): DeviceSegmentWindow {
    const rec = this._live(w);
    if (borrower !== w.mapper) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${lease} is borrowed by ${borrower}, but ${w.mapper} mapped ${w.name}`);
    }
    const windows: OpenedWindow[] = [];
    const addr = this._h.open(lender, borrower, w.size, w.windowAddr, windows);
    try {
      const route = this._h.fabric.route({ host: lender, node: device }, addr as HostPhysAddr, w.size);
      const dw: DeviceSegmentWindow = {
        addr,
        size: w.size,
        lease,
        ntbCrossings: route.ntbCrossings,
        linkHops: route.hops.length - route.ntbCrossings,
      };
      rec.devices.set(dw, windows);
      return dw;
    } catch (err) {
      closeAll(this._h.fabric, windows);
      throw err;
    }
  }

  /** Closes one device path (its next DMA there faults); false if already gone. */
  unmapForDevice(dw: DeviceSegmentWindow): boolean {
    for (const rec of this._mapped.values()) {
      const windows = rec.devices.get(dw);
      if (windows === undefined) continue;
      closeAll(this._h.fabric, windows);
      rec.devices.delete(dw);
      return true;
    }
    return false;
  }

  /** Closes every device path of lease `lease` (the lease ended). */
  dropLease(lease: string): void {
    for (const rec of this._mapped.values()) {
      for (const [dw, windows] of rec.devices) {
        if (dw.lease !== lease) continue;
        closeAll(this._h.fabric, windows);
        rec.devices.delete(dw);
      }
    }
  }

  /** Unmaps: device paths, then the mapper's window, then the registry mapping; false if already gone. */
  unmap(w: SegmentWindow): boolean {
    if (!this._mapped.has(w)) return false;
    this._close(w);
    w.mapping.unmap();
    return true;
  }

  /**
   * Withdraws a segment (exporter only): refused while mapped (PV_ERR_LEND_IN_USE) unless
   * `force`, which revokes every mapping first (closing its windows). Returns the mappings revoked.
   */
  unexport(name: string, host: string, force = false): number {
    const e = this._exported.get(name);
    if (e === undefined) throw pvError('PV_ERR_LEND_NOT_FOUND', `no segment ${String(name)} is exported`);
    try {
      return this._h.registry.unexport(name, host, { force });
    } finally {
      // The registry drops the segment before running revocations, even if one throws.
      if (!this._h.registry.list().some((s) => s.name === name)) {
        // ORDERING: the slot is withdrawn (seq-cst, SegmentPool) before its range is reusable.
        e.pool.withdraw(e.slot);
        this._pools.get(e.pool.data.host)!.space.free(e.place);
        this._exported.delete(name);
      }
    }
  }

  private _live(w: SegmentWindow): Mapped {
    const rec = this._mapped.get(w);
    if (rec === undefined) throw pvError('PV_ERR_LEND_NOT_HOLDER', `${w.mapper} no longer maps segment ${w.name}`);
    return rec;
  }

  private _close(w: SegmentWindow): void {
    const rec = this._mapped.get(w);
    if (rec === undefined) return;
    this._mapped.delete(w);
    for (const windows of rec.devices.values()) closeAll(this._h.fabric, windows);
    rec.devices.clear();
    closeAll(this._h.fabric, rec.windows);
  }
}

function closeAll(fabric: PcieCluster, windows: OpenedWindow[]): void {
  for (const x of windows) {
    fabric.clearWindow(x.host, x.slot);
    x.free();
  }
  windows.length = 0;
}
