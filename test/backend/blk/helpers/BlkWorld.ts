/**
 * A block split-driver host in ONE thread, built from the real pieces: XenStore with a
 * LocalStoreClient per domain, real grant tables and event channels over SharedArrayGuestMemory,
 * the real blkback (BlkBackend + RingServer + BackendDirWatcher) over a real FileBlockDevice in a
 * temp file, and guests that connect with the real blkfront (`openBlkfront`), whose waits run
 * the backend's serving round instead of sleeping (the one thread must do both).
 *
 * `rawRequest` is a hostile guest's tool: it writes whatever words it likes into the next ring
 * slot, publishes, serves the backend and returns the response words taken off the ring.
 */

import { BlkBackend } from '../../../../backend/blk/BlkBackend.js';
import { FileBlockDevice } from '../../../../backend/blk/FileBlockDevice.js';
import { RingServer } from '../../../../backend/ring/RingServer.js';
import { BackendDirWatcher } from '../../../../backend/xenbus/BackendDirWatcher.js';
import { type BlkDevice, openBlkfront } from '../../../../frontend/blk/BlkConnect.js';
import { EvtchnSpace } from '../../../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { SimEvtchnOps } from '../../../../hypervisor-sim/evtchn/SimEvtchnOps.js';
import { GrantTableSpace } from '../../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../../hypervisor-sim/grant/SimGrantOps.js';
import { MemoryDirectory } from '../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { LocalStoreClient } from '../../../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../../../hypervisor-sim/store/XenStore.js';
import { VBD_DEVICE_TYPE } from '../../../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SLOT_WORDS } from '../../../../protocol/blkif/BlkifSlot.js';
import type { BlockDevice } from '../../../../protocol/blkif/BlockDevice.js';
import type { Hypercalls } from '../../../../protocol/Hypercalls.js';
import type { FrontRing } from '../../../../protocol/ring/FrontRing.js';
import { DOM0, type DomId } from '../../../../protocol/Types.js';
import { createDevicePaths } from '../../../../protocol/xenbus/XenbusPaths.js';

/** One domain of the world. */
export interface Dom {
  readonly domid: DomId;
  readonly mem: SharedArrayGuestMemory;
  readonly grant: SimGrantOps;
  readonly evtchn: SimEvtchnOps;
  readonly store: LocalStoreClient;
  readonly hc: Hypercalls;
}

/** Options of a world. */
export interface BlkWorldOptions {
  readonly guests?: number;
  readonly guestPages?: number;
  /** Disk size (default 4 MiB). */
  readonly diskBytes?: number;
  readonly readOnly?: boolean;
  /** Wrap the file device (e.g. to act while the backend does I/O). */
  readonly wrap?: (dev: FileBlockDevice) => BlockDevice;
}

/** The world; see the file comment. */
export class BlkWorld {
  readonly xs = new XenStore();
  readonly toolstack: LocalStoreClient;
  readonly dom0: Dom;
  readonly guests: Dom[] = [];
  readonly disk: FileBlockDevice;
  readonly server: RingServer;
  readonly backend: BlkBackend;
  readonly watcher: BackendDirWatcher;
  readonly log: string[] = [];

  private constructor(opts: BlkWorldOptions) {
    const n = opts.guests ?? 1;
    const grants = GrantTableSpace.create({ maxDomains: n + 1, entriesPerDomain: 4096 });
    const evtchn = EvtchnSpace.create({ maxDomains: n + 1, portsPerDomain: 64 });
    const memories = new MemoryDirectory();
    const make = (domid: DomId, pages: number): Dom => {
      const mem = memories.addMemory(SharedArrayGuestMemory.create(domid, pages * 4096));
      this.xs.introduceDomain(domid);
      evtchn.resetDomain(domid);
      const grant = new SimGrantOps(domid, grants, memories);
      const ev = new SimEvtchnOps(domid, evtchn);
      const store = new LocalStoreClient(this.xs, domid);
      return { domid, mem, grant, evtchn: ev, store, hc: { domid, memory: mem, grant, evtchn: ev, store } };
    };
    this.dom0 = make(DOM0, 256);
    for (let i = 1; i <= n; i++) this.guests.push(make(i as DomId, opts.guestPages ?? 1024));
    this.toolstack = new LocalStoreClient(this.xs, DOM0);
    this.disk = new FileBlockDevice({ sizeBytes: opts.diskBytes ?? 4 << 20, readOnly: false });
    const served = opts.wrap ? opts.wrap(this.disk) : this.disk;
    const device: BlockDevice = opts.readOnly
      ? {
          sectors: served.sectors,
          sectorSize: served.sectorSize,
          readOnly: true,
          read: (s, c, b) => served.read(s, c, b),
          write: () => {
            throw new Error('the backend wrote to a read-only device');
          },
          flush: () => served.flush(),
        }
      : served;
    this.server = new RingServer(this.dom0.evtchn, { spinBudget: 0, idleTimeoutMs: 1 });
    this.backend = new BlkBackend(
      this.dom0.hc,
      this.server,
      () => device,
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

  /** One serving round of the backend. */
  serve(rounds = 1): number {
    let work = 0;
    for (let i = 0; i < rounds; i++) work += this.server.serveOnce();
    return work;
  }

  /** Plugs a vbd for `guest` and connects it with the real blkfront. */
  async open(guest: Dom, devid = 0, maxIndirectSegments?: number): Promise<BlkDevice> {
    await createDevicePaths(this.toolstack, { type: VBD_DEVICE_TYPE, devid, frontDomid: guest.domid, backDomid: DOM0 });
    return openBlkfront(guest.hc, { devid, idle: () => this.serve(), connectTimeoutMs: 5000, maxIndirectSegments });
  }

  /** Stops the watch (every vbd is disconnected), closes the store clients and the disk. */
  async close(): Promise<void> {
    await this.watcher.stop();
    for (const d of [this.dom0, ...this.guests]) d.store.close();
    this.toolstack.close();
    this.disk.close();
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
