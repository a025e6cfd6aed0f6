/**
 * A block split-driver host in ONE thread, built from the real pieces: XenStore with a
 * LocalStoreClient per domain, real grant tables and event channels over SharedArrayGuestMemory,
 * the real blkback (BlkBackend + RingServer + BackendDirWatcher) over a real FileBlockDevice in a
 * temp file, and guests that connect with the real blkfront (`openBlkfront`), whose waits run
 * the backend's serving round instead of sleeping (the one thread must do both).
 *
 * Used by the blkback tests (test/backend/blk/helpers/BlkWorld.ts re-exports it) and by the blk
 * fuzz target, which wraps the backend domain's GrantOps to record every map (`wrapBackendGrant`)
 * and gives each guest its own disk (`diskPerGuest`) so an adversary cannot touch the sectors an
 * honest neighbour checks.
 *
 * `rawRequest` is a hostile guest's tool: it writes whatever words it likes into the next ring
 * slot, publishes, serves the backend and returns the response words taken off the ring.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlkBackend } from '../../backend/blk/BlkBackend.js';
import { FileBlockDevice } from '../../backend/blk/FileBlockDevice.js';
import { RingServer } from '../../backend/ring/RingServer.js';
import { BackendDirWatcher } from '../../backend/xenbus/BackendDirWatcher.js';
import { type BlkConnectOptions, type BlkDevice, openBlkfront } from '../../frontend/blk/BlkConnect.js';
import { EvtchnSpace } from '../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { GrantTableSpace } from '../../hypervisor-sim/grant/GrantTableSpace.js';
import type { SimGrantOps } from '../../hypervisor-sim/grant/SimGrantOps.js';
import { MemoryDirectory } from '../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { LocalStoreClient } from '../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../hypervisor-sim/store/XenStore.js';
import { VBD_DEVICE_TYPE } from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SLOT_WORDS } from '../../protocol/blkif/BlkifSlot.js';
import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import type { GrantOps } from '../../protocol/Hypercalls.js';
import type { FrontRing } from '../../protocol/ring/FrontRing.js';
import { DOM0, type DomId } from '../../protocol/Types.js';
import { createDevicePaths, removeDevicePaths } from '../../protocol/xenbus/XenbusPaths.js';
import { type Dom, makeDom } from '../core/WorldDomain.js';

export type { Dom } from '../core/WorldDomain.js';

/** Options of a world. */
export interface BlkWorldOptions {
  readonly guests?: number;
  readonly guestPages?: number;
  /** Disk size (default 4 MiB). */
  readonly diskBytes?: number;
  readonly readOnly?: boolean;
  /** Wrap the file device (e.g. to act while the backend does I/O). */
  readonly wrap?: (dev: FileBlockDevice) => BlockDevice;
  /** Grant entries per domain (default 4096). */
  readonly entriesPerDomain?: number;
  /** Wraps dom0's GrantOps as the backend sees it (the fuzzer's recording wrapper). */
  readonly wrapBackendGrant?: (inner: SimGrantOps, space: GrantTableSpace) => GrantOps;
  /** One disk per guest domain instead of one shared by all (`disk` is then guest 1's). */
  readonly diskPerGuest?: boolean;
  /** Directory for the disk images (default the OS temp dir; /dev/shm makes fsync cheap). */
  readonly diskDir?: string;
  /** Chooses the device of a vbd before the defaults (undefined: the guest's or the shared disk). */
  readonly deviceFor?: (front: DomId, devid: number) => BlockDevice | undefined;
}

/** The world; see the file comment. */
export class BlkWorld {
  readonly xs = new XenStore();
  readonly toolstack: LocalStoreClient;
  readonly dom0: Dom;
  readonly guests: Dom[] = [];
  /** The shared disk (guest 1's with `diskPerGuest`). */
  readonly disk: FileBlockDevice;
  readonly server: RingServer;
  readonly backend: BlkBackend;
  readonly watcher: BackendDirWatcher;
  /** The host-wide grant tables (the fuzzer reads guests' entries from here). */
  readonly grants: GrantTableSpace;
  readonly log: string[] = [];
  private readonly _disks = new Map<DomId, FileBlockDevice>();
  private readonly _served = new Map<DomId, BlockDevice>();
  private readonly _dir: string | undefined;
  private readonly _extra: FileBlockDevice[] = [];
  private readonly _diskBytes: number;

  private constructor(opts: BlkWorldOptions) {
    const n = opts.guests ?? 1;
    const grants = GrantTableSpace.create({ maxDomains: n + 1, entriesPerDomain: opts.entriesPerDomain ?? 4096 });
    this.grants = grants;
    const evtchn = EvtchnSpace.create({ maxDomains: n + 1, portsPerDomain: 64 });
    const memories = new MemoryDirectory();
    const spaces = { xs: this.xs, grants, evtchn, memories };
    const make = (domid: DomId, pages: number): Dom => {
      const mem = memories.addMemory(SharedArrayGuestMemory.create(domid, pages * 4096));
      const wrap = opts.wrapBackendGrant;
      return makeDom(spaces, domid, mem, undefined, domid === DOM0 && wrap ? (g) => wrap(g, grants) : undefined);
    };
    this.dom0 = make(DOM0, 256);
    for (let i = 1; i <= n; i++) this.guests.push(make(i as DomId, opts.guestPages ?? 1024));
    this.toolstack = new LocalStoreClient(this.xs, DOM0);
    this._dir = opts.diskDir === undefined ? undefined : mkdtempSync(join(opts.diskDir, 'pvio-vbd-'));
    this._diskBytes = opts.diskBytes ?? 4 << 20;
    this.disk = this._newDisk('disk', 512);
    if (opts.diskPerGuest) {
      this.guests.forEach((g, i) => {
        this._disks.set(g.domid, i === 0 ? this.disk : this._newDisk(`dom${g.domid}`, 512));
      });
    }
    const serve = (d: FileBlockDevice): BlockDevice => {
      const served = opts.wrap ? opts.wrap(d) : d;
      return opts.readOnly ? readOnlyView(served) : served;
    };
    const shared = serve(this.disk);
    for (const [domid, d] of this._disks) this._served.set(domid, d === this.disk ? shared : serve(d));
    this.server = new RingServer(this.dom0.evtchn, { spinBudget: 0, idleTimeoutMs: 1 });
    this.backend = new BlkBackend(
      this.dom0.hc,
      this.server,
      (front, devid) => opts.deviceFor?.(front, devid) ?? this._served.get(front) ?? shared,
      (line) => this.log.push(line),
    );
    this.watcher = new BackendDirWatcher(this.dom0.store, DOM0, VBD_DEVICE_TYPE, this.backend.hooks);
  }

  /** Builds a world and starts the backend's directory watch. */
  static async create(opts: BlkWorldOptions = {}): Promise<BlkWorld> {
    const w = new BlkWorld(opts);
    await w.watcher.start();
    return w;
  }

  /** Another disk image (same size, `sectorSize` bytes per sector), closed with the world. */
  addDisk(name: string, sectorSize: number): FileBlockDevice {
    const d = this._newDisk(name, sectorSize);
    this._extra.push(d);
    return d;
  }

  private _newDisk(name: string, sectorSize: number): FileBlockDevice {
    return new FileBlockDevice({
      path: this._dir === undefined ? undefined : join(this._dir, `${name}.img`),
      sizeBytes: this._diskBytes,
      sectorSize,
      readOnly: false,
    });
  }

  /** The disk `guest`'s vbds are served from. */
  diskOf(guest: DomId): FileBlockDevice {
    return this._disks.get(guest) ?? this.disk;
  }

  /** One serving round of the backend. */
  serve(rounds = 1): number {
    let work = 0;
    for (let i = 0; i < rounds; i++) work += this.server.serveOnce();
    return work;
  }

  /** Plugs a vbd for `guest` (the toolstack's part of a device hotplug). */
  async plug(guest: DomId, devid: number): Promise<void> {
    await createDevicePaths(this.toolstack, { type: VBD_DEVICE_TYPE, devid, frontDomid: guest, backDomid: DOM0 });
  }

  /** Removes a vbd's store directories (unplug after the frontend closed). */
  async unplug(guest: DomId, devid: number): Promise<void> {
    await removeDevicePaths(this.toolstack, { type: VBD_DEVICE_TYPE, devid, frontDomid: guest, backDomid: DOM0 });
  }

  /** Plugs a vbd for `guest` and connects it with the real blkfront. */
  async open(
    guest: Dom,
    devid = 0,
    maxIndirectSegments?: number,
    extra: Omit<BlkConnectOptions, 'devid' | 'idle'> = {},
  ): Promise<BlkDevice> {
    await this.plug(guest.domid, devid);
    return openBlkfront(guest.hc, {
      connectTimeoutMs: 5000,
      ...extra,
      devid,
      idle: () => this.serve(),
      maxIndirectSegments,
    });
  }

  /** Stops the watch (every vbd is disconnected), closes the store clients and the disks. */
  async close(): Promise<void> {
    await this.watcher.stop();
    for (const d of [this.dom0, ...this.guests]) d.store.close();
    this.toolstack.close();
    this.disk.close();
    for (const d of [...this._disks.values(), ...this._extra]) d.close();
    if (this._dir !== undefined) rmSync(this._dir, { recursive: true, force: true });
  }
}

/** A read-only vbd over `served`: the backend must never write it. */
function readOnlyView(served: BlockDevice): BlockDevice {
  return {
    sectors: served.sectors,
    sectorSize: served.sectorSize,
    readOnly: true,
    read: (s, c, b) => served.read(s, c, b),
    write: () => {
      throw new Error('the backend wrote to a read-only device');
    },
    flush: () => served.flush(),
  };
}

/** The default temp dir, or /dev/shm when it exists (an image there makes fsync nearly free). */
export function fastDiskDir(): string {
  try {
    rmSync(mkdtempSync('/dev/shm/pvio-probe-'), { recursive: true });
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/**
 * Writes one slot with `write` (all 28 words zeroed first), publishes it, serves the backend and
 * returns a copy of the 28 slot words after the response (the response is words 0-3).
 */
export function rawRequest(
  world: BlkWorld,
  ring: FrontRing,
  write: (words: Int32Array, w: number) => void,
): Int32Array {
  const w = ring.nextRequestSlot();
  ring.words.fill(0, w, w + BLKIF_SLOT_WORDS);
  write(ring.words, w);
  ring.commitRequest();
  ring.pushRequests();
  for (let i = 0; i < 10 && ring.unconsumedResponses() === 0; i++) world.serve();
  if (ring.unconsumedResponses() === 0) throw new Error('the backend did not answer');
  const at = ring.responseSlot();
  const out = ring.words.slice(at, at + BLKIF_SLOT_WORDS);
  ring.consumeResponse();
  return out;
}
