/**
 * What the fault tests share: a host with one NIC and a file-backed disk in a temp directory,
 * dom0 running FaultDom0 (the real RDMA backend and blkback on one RingServer), guests running
 * FaultGuest, and the toolstack's views of the backend: its counters through the probe, and the
 * NIC's live objects counted in the device's own tables (host side, no guest involved). Every
 * wait is bounded.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevLayout } from '../../../hypervisor-sim/devices/rnic/DevLayout.js';
import type { Domain } from '../../../hypervisor-sim/domain/Domain.js';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { VBD_DEVICE_TYPE } from '../../../protocol/blkif/BlkifConstants.js';
import { withTransaction } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import { VRDMA_DEVICE_TYPE } from '../../../protocol/rdma/pv/PvConstants.js';
import { type DomId, domId } from '../../../protocol/Types.js';
import { type DeviceSpec, writeBackendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import type { Dom0Counters } from './programs/FaultDom0.js';
import type { GuestReport } from './programs/FaultGuest.js';

const DOM0_PROGRAM = new URL('./programs/FaultDom0.js', import.meta.url);
const GUEST_PROGRAM = new URL('./programs/FaultGuest.js', import.meta.url);
export const DISK_BYTES = 8 << 20;

/** Waits (bounded, polling) for `pred`. */
export async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A host, its disk file, and the helpers the tests drive it with. */
export class FaultHost {
  readonly host: Host;
  readonly dir = mkdtempSync(join(tmpdir(), 'pvio-faults-'));
  readonly disk = join(this.dir, 'disk.img');
  private _probes = 0;
  private _holds = 0;

  constructor(nics: boolean) {
    this.host = new Host({ name: 'faults', nics: nics ? [{ name: 'nic0' }] : [] });
  }

  /** Starts (or restarts) the driver domain as dom0 on the same disk file. */
  startDom0(): Domain {
    const nics = this.host.devices.names().length > 0;
    return this.host.createDomain({
      name: 'dom0',
      domid: 0,
      program: DOM0_PROGRAM,
      memoryBytes: 64 << 20,
      args: { path: this.disk, sizeBytes: DISK_BYTES },
      pci: nics ? [{ device: 'nic0', iommu: 'translate' }] : [],
    });
  }

  /** Starts a guest running FaultGuest with `args`; with `rdma` it gets a paravirt vrdma attachment. */
  guest(domid: number, args: Record<string, unknown>): Domain {
    const attachments: DeviceAttachment[] =
      args.rdma === true || args.role === 'verbs'
        ? [{ device: 'nic0', kind: 'rdma-nic', transport: 'paravirt', devid: 0, backendDomid: 0 }]
        : [];
    return this.host.createDomain({
      name: `guest${domid}`,
      domid,
      program: GUEST_PROGRAM,
      memoryBytes: 32 << 20,
      args,
      attachments,
    });
  }

  /** Plugs the guest's vbd (and vrdma if asked). */
  async plug(front: number, types: readonly string[] = [VBD_DEVICE_TYPE]): Promise<void> {
    for (const type of types)
      await this.host.addDevice({ type, devid: 0, frontDomid: domId(front), backDomid: domId(0) });
  }

  /**
   * The toolstack's part of a backend restart: the new driver domain's backend directory for a
   * frontend whose own directory is still there (libxl re-adding the backend half).
   */
  async replugBackend(front: number, type: string = VBD_DEVICE_TYPE): Promise<void> {
    const spec: DeviceSpec = { type, devid: 0, frontDomid: domId(front), backDomid: domId(0) };
    await withTransaction(this.host.toolstack, (tx) => writeBackendDir(this.host.toolstack, spec, tx));
  }

  /** Unplugs a device (both directories removed). */
  unplug(front: number, type: string): Promise<void> {
    return this.host.removeDevice({ type, devid: 0, frontDomid: domId(front), backDomid: domId(0) });
  }

  /** dom0's counters, read in its own thread while it serves (FaultDom0's probe). */
  async probe(): Promise<Dom0Counters> {
    const n = String(++this._probes);
    const ts = this.host.toolstack;
    await ts.write('/local/domain/0/data/probe', n);
    let out: Dom0Counters | undefined;
    await until(async () => {
      const raw = await ts.tryRead('/local/domain/0/data/counters');
      const c = raw === undefined ? undefined : (JSON.parse(raw) as Dom0Counters);
      if (c?.probe === n) out = c;
      return out !== undefined;
    }, `dom0 to answer probe ${n}`);
    return out as Dom0Counters;
  }

  /** Reads `data/<key>` of a domain. */
  read(domid: number, key: string): Promise<string | undefined> {
    return this.host.toolstack.tryRead(`/local/domain/${domid}/data/${key}`);
  }

  /** Writes `data/<key>` of a domain (the test talking to a guest). */
  write(domid: number, key: string, value: string): Promise<void> {
    return this.host.toolstack.write(`/local/domain/${domid}/data/${key}`, value);
  }

  /** Asks an `honest` guest to park between rounds; resolves with the rounds it had done. */
  async hold(domid: number): Promise<number> {
    const token = String(++this._holds);
    await this.write(domid, 'hold', token);
    let rounds = -1;
    await until(async () => {
      const held = (await this.read(domid, 'held'))?.split(':');
      if (held?.[0] === token) rounds = Number(held[1]);
      return rounds >= 0;
    }, `guest ${domid} to hold`);
    return rounds;
  }

  /** Lets a held guest go on. */
  release(domid: number): Promise<void> {
    return this.write(domid, 'hold', '0');
  }

  /** The guest's report (its program's result). */
  async report(d: Domain): Promise<GuestReport> {
    return (await d.result).value as GuestReport;
  }

  /** Live objects on nic0 by table, counted from the device's own state (VALID words). */
  nicObjects(): { pd: number; mr: number; cq: number; qp: number } {
    const nic = this.host.devices.allNics()[0];
    const cfg = nic.state.config;
    const layout = new DevLayout({ maxQp: cfg.maxQp, maxCq: cfg.maxCq, maxMr: cfg.maxMr });
    const dev = new Int32Array(nic.state.dev);
    const count = (n: number, base: (i: number) => number): number => {
      let live = 0;
      // ORDERING: a snapshot for a test; the owner thread writes these words with Atomics.
      for (let i = 1; i < n; i++) if (Atomics.load(dev, base(i)) !== 0) live++;
      return live;
    };
    return {
      pd: count(layout.maxPd, (i) => layout.pdBase(i)),
      mr: count(cfg.maxMr, (i) => layout.mrBase(i)),
      cq: count(cfg.maxCq, (i) => layout.cqBase(i)),
      qp: count(cfg.maxQp, (i) => layout.qpBase(i)),
    };
  }

  async shutdown(): Promise<void> {
    try {
      await this.host.shutdown();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

export type { DomId };
export { VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE };
