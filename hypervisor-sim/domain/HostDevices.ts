/**
 * The host's PCIe devices: every NIC's state (registers and device memory, shared by every
 * thread that runs it), one IOMMU context per NIC, the fabric lock, and who owns what.
 *
 * Ownership follows VFIO: a device is assigned to at most one live domain (dom0 for the
 * paravirtual backends, a guest for passthrough, a native program with the IOMMU in bypass).
 * The host programs the owner's identity map in the device's IOMMU at assignment; when the owner
 * dies the context is cleared (every extent dropped, generation bumped) and the device is free
 * for another domain. When any other domain dies, the extents that target its memory are
 * revoked, so a device can never reach a dead domain's pages, nor a new domain that reuses the id.
 *
 * NVMe SSDs (`nvmes`) follow the same ownership rules and get their own IOMMU context each; their
 * controller always runs inline in the owner's thread (there is no NVMe device thread), and their
 * media files stay open until `closeMedia` (Host.shutdown).
 */

import { pvError } from '../../protocol/errors.js';
import type { DeviceAttachment } from '../../protocol/Pci.js';
import type { DomId } from '../../protocol/Types.js';
import type { LendingHook, LentData } from '../cluster/LentDevices.js';
import type { AccelData } from '../devices/accel/AccelAttach.js';
import { type AccelSpec, type HostAccel, HostAccels } from '../devices/accel/HostAccels.js';
import { type NvmeConfig, NvmeDevice, type NvmeState } from '../devices/nvme/NvmeDevice.js';
import { functionReset } from '../devices/rnic/FunctionReset.js';
import { type RnicConfig, RnicDevice, type RnicState } from '../devices/rnic/RnicDevice.js';
import { FabricWord, RnicFabric, WIRE_IDEAL, type WireProfile } from '../devices/rnic/RnicFabric.js';
import { breakLocksOf, threadLockOwner } from '../grant/EntryLock.js';
import { IommuContext, type IommuDescriptor, type IommuMode } from '../iommu/IommuContext.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { FabricProfileName } from '../pcie/Profiles.js';

/** One NIC of a host, as `HostOptions.nics` lists it; `portId` defaults to its index + 1. */
export type NicSpec = { readonly name: string; readonly portId?: number } & Partial<RnicConfig>;

/** One NVMe SSD of a host, as `HostOptions.nvmes` lists it (`nvme0`, …). */
export type NvmeSpec = NvmeConfig;

/** One NVMe SSD as handed to the thread of the domain that owns it (structured-cloneable). */
export interface NvmeData {
  /** Registers, device memory and media descriptor (NvmeDevice.create). */
  readonly state: NvmeState;
  /** The SSD's IOMMU context; `iommu.device` is its name. */
  readonly iommu: IommuDescriptor;
  /** PCI address, after the NICs' (e.g. `0000:05:00.0` on a host with two NICs). */
  readonly bdf: string;
}

/** A device a domain owns, as `DomainSpec.pci` lists it. */
export interface PciAssignment {
  /** Device name in the host (`nic0`). */
  readonly device: string;
  /** `translate` (passthrough, VFIO) or `bypass` (native, IOMMU off). */
  readonly iommu: IommuMode;
}

/** Where device engines run (DESIGN §4). */
export type DeviceEngineMode = 'inline' | 'dedicated';

/** One NIC as handed to a thread that attaches it (structured-cloneable). */
export interface NicData {
  /** Registers and device memory (RnicDevice.create). */
  readonly state: RnicState;
  /** The NIC's IOMMU context; `iommu.device` is the NIC's name. */
  readonly iommu: IommuDescriptor;
  /** PCI address, e.g. `0000:03:00.0`. */
  readonly bdf: string;
}

/** Device part of a domain worker's `workerData`. */
export interface DomainDeviceData {
  /** Which MMIO the owned functions get: `mmio('inline')` or `mmio('dedicated')`. */
  readonly engine: DeviceEngineMode;
  /** The host's fabric lock buffer (RnicFabric.createLock). */
  readonly fabricLock: SharedArrayBuffer;
  /** Wire model the thread's fabric applies. */
  readonly wire: WireProfile;
  /** PCIe timing profile local devices pay (pcie/LocalFabric.ts); default ideal. */
  readonly fabric?: FabricProfileName;
  /** NICs this thread attaches: all of the host's when it may run an inline engine, else the owned. */
  readonly nics: readonly NicData[];
  /** Devices the domain owns, in the order its spec listed them. */
  readonly owned: readonly PciAssignment[];
  /** The scenario's paravirt/tcp attachments, passed through untouched. */
  readonly attachments: readonly DeviceAttachment[];
  /** NVMe SSDs the domain owns (their controllers run inline in its thread). */
  readonly nvmes?: readonly NvmeData[];
  /** Devices this host borrowed (Device Lending, cluster/LentNic.ts, LentNvme.ts) the thread attaches. */
  readonly lent?: readonly LentData[];
  /** Accelerators the domain owns (their engines run inline in its thread). */
  readonly accels?: readonly AccelData[];
  /**
   * The domain thread's wire mailbox (HostOptions.wireMailboxes): its fabric then reaches NICs
   * of other host processes through it (devices/rnic/RemoteWire.ts).
   */
  readonly wireMailbox?: SharedArrayBuffer;
}

/** Options the host passes on. */
export interface HostDeviceOptions {
  /** The NICs to create. */
  readonly nics?: readonly NicSpec[];
  /** Default 'inline'. */
  readonly deviceEngine?: DeviceEngineMode;
  /** Default WIRE_IDEAL. */
  readonly wire?: WireProfile;
  /** PCIe timing profile of the host's local device paths (default `ideal`: no cost). */
  readonly fabric?: FabricProfileName;
  /** The NVMe SSDs to create. */
  readonly nvmes?: readonly NvmeSpec[];
  /** The accelerators to create (devices/accel/HostAccels.ts). */
  readonly accels?: readonly AccelSpec[];
}

interface Nic {
  readonly data: NicData;
  /** The host thread's view of the IOMMU (it resolves nothing: its directory stays empty). */
  readonly iommu: IommuContext;
  /** The host thread's handle on the device, used only for function-level reset. */
  readonly device: RnicDevice;
  owner: DomId | undefined;
}

interface Nvme {
  readonly data: NvmeData;
  /** The host thread's view of the IOMMU. */
  readonly iommu: IommuContext;
  /** The host thread's handle on the controller: function-level reset and counters. */
  readonly device: NvmeDevice;
  owner: DomId | undefined;
}

/** Devices of one host and their ownership (see the file comment). */
export class HostDevices {
  /** Where the NICs' engines run. */
  readonly engine: DeviceEngineMode;
  /** Wire model between the NICs. */
  readonly wire: WireProfile;
  /** PCIe timing profile of local device paths. */
  readonly fabric: FabricProfileName;
  /** The one lock every NIC of the host takes, in every thread. */
  readonly fabricLock: SharedArrayBuffer;
  private readonly _nics = new Map<string, Nic>();
  private readonly _nvmes = new Map<string, Nvme>();
  /** Accelerators (`accels`), on the buses after the NVMe SSDs'. */
  private readonly _accels: HostAccels;
  private _mediaClosed = false;
  /** Device Lending (cluster/LentDevices.ts): borrowed NICs, and local ones lent out. */
  private _lending: LendingHook | undefined;

  constructor(opts: HostDeviceOptions) {
    this.engine = opts.deviceEngine ?? 'inline';
    if (this.engine !== 'inline' && this.engine !== 'dedicated') {
      throw pvError('PV_ERR_CONFIG', `deviceEngine must be 'inline' or 'dedicated', got ${String(this.engine)}`);
    }
    this.wire = opts.wire ?? WIRE_IDEAL;
    this.fabric = opts.fabric ?? 'ideal';
    this.fabricLock = RnicFabric.createLock();
    const fabric = new RnicFabric(this.fabricLock, this.wire);
    const ports = new Set<number>();
    (opts.nics ?? []).forEach((spec, i) => {
      const portId = spec.portId ?? i + 1;
      if (this._nics.has(spec.name)) throw pvError('PV_ERR_CONFIG', `two NICs are named ${spec.name}`);
      if (ports.has(portId)) throw pvError('PV_ERR_CONFIG', `NIC ${spec.name}: port id ${portId} is taken`);
      ports.add(portId);
      const state = RnicDevice.create({ ...spec, portId });
      const iommu = IommuContext.create({ device: spec.name });
      const bdf = `0000:${(3 + i).toString(16).padStart(2, '0')}:00.0`;
      const hostIommu = IommuContext.attach(iommu, new MemoryDirectory());
      this._nics.set(spec.name, {
        data: { state, iommu, bdf },
        iommu: hostIommu,
        device: new RnicDevice(state, hostIommu, fabric),
        owner: undefined,
      });
    });
    const firstBus = 3 + this._nics.size;
    try {
      (opts.nvmes ?? []).forEach((spec, i) => {
        if (this._nics.has(spec.name) || this._nvmes.has(spec.name)) {
          throw pvError('PV_ERR_CONFIG', `two devices are named ${spec.name}`);
        }
        const state = NvmeDevice.create(spec);
        const iommu = IommuContext.create({ device: spec.name });
        const bdf = `0000:${(firstBus + i).toString(16).padStart(2, '0')}:00.0`;
        const hostIommu = IommuContext.attach(iommu, new MemoryDirectory());
        this._nvmes.set(spec.name, {
          data: { state, iommu, bdf },
          iommu: hostIommu,
          device: new NvmeDevice(state, hostIommu),
          owner: undefined,
        });
      });
    } catch (err) {
      // The media opened so far would leak: close them before refusing the configuration.
      this.closeMedia();
      throw err;
    }
    try {
      const taken = (n: string): boolean => this._nics.has(n) || this._nvmes.has(n);
      this._accels = new HostAccels(opts.accels ?? [], firstBus + this._nvmes.size, taken);
    } catch (err) {
      this.closeMedia();
      throw err;
    }
  }

  /** Every accelerator's counters (DMA transfers and bytes, kernels, errors, …). */
  accelMetrics(): Record<string, Record<string, number>> {
    return this._accels.metrics();
  }

  /** Accelerator names, in creation order. */
  accelNames(): string[] {
    return this._accels.names();
  }

  /** An accelerator's shared state and IOMMU descriptor (Device Lending hands the state to a borrower). */
  accelData(device: string): AccelData {
    const a = this._accels.get(device);
    if (a === undefined) throw pvError('PV_ERR_CONFIG', `this host has no accelerator named ${String(device)}`);
    return a.data;
  }

  /** Installs the Device Lending hook (the Cluster does, once, right after creating the host). */
  attachLending(hook: LendingHook): void {
    this._lending = hook;
  }

  /** Every NVMe SSD's counters (commands, bytes, flushes, errors, …), read from its shared state. */
  nvmeMetrics(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, n] of this._nvmes) out[name] = n.device.metrics();
    return out;
  }

  /** NVMe SSD names, in creation order. */
  nvmeNames(): string[] {
    return [...this._nvmes.keys()];
  }

  /** An NVMe SSD's shared state and IOMMU descriptor (Device Lending hands the state to a borrower). */
  nvmeData(device: string): NvmeData {
    const n = this._nvmes.get(device);
    if (n === undefined) throw pvError('PV_ERR_CONFIG', `this host has no NVMe named ${String(device)}`);
    return n.data;
  }

  /** An NVMe SSD's backing file (tests check that writes reach it). */
  backingFile(device: string): string {
    const n = this._nvmes.get(device);
    if (n === undefined) throw pvError('PV_ERR_CONFIG', `this host has no NVMe named ${String(device)}`);
    return n.data.state.media.path;
  }

  /**
   * Closes every NVMe SSD's media (temporary files are removed). Only once every domain that
   * could run a controller is gone (Host.shutdown); later calls do nothing, so a descriptor
   * number reused by someone else is never closed twice.
   */
  closeMedia(): void {
    if (this._mediaClosed) return;
    this._mediaClosed = true;
    for (const n of this._nvmes.values()) NvmeDevice.destroy(n.data.state);
  }

  /** Devices this host borrowed (Device Lending) and their owners here; none without lending. */
  borrowedDevices(): ReturnType<LendingHook['borrowed']> {
    return this._lending?.borrowed() ?? [];
  }

  /** Every NIC's and SSD's queue depth now (work rung and not yet taken by the device). */
  queueDepths(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, nic] of this._nics) out[name] = nic.device.queueDepth();
    for (const [name, n] of this._nvmes) out[name] = n.device.queueDepth();
    return out;
  }

  /** Every NIC's counters (WRs, bytes, CQEs, faults, …), read from its shared state. */
  metrics(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, nic] of this._nics) out[name] = nic.device.metrics.snapshot();
    return out;
  }

  /** Device names, in creation order. */
  names(): string[] {
    return [...this._nics.keys()];
  }

  /** Every NIC, for a thread that attaches them all (the dedicated engine). */
  allNics(): NicData[] {
    return [...this._nics.values()].map((n) => n.data);
  }

  /** The live domain that owns `device`, if any. */
  owner(device: string): DomId | undefined {
    return this._fn(device).owner;
  }

  /** The host's view of a device's IOMMU context (diagnostics and tests). */
  iommu(device: string): IommuContext {
    return this._fn(device).iommu;
  }

  /**
   * Checks a domain's device list before anything is created: known devices, each listed once,
   * none owned by a live domain, and attachments that carry no PCI function (those are made by
   * the domain's thread from `pci`). Throws `PV_ERR_CONFIG` naming the device.
   */
  validate(name: string, pci: readonly PciAssignment[], attachments: readonly DeviceAttachment[]): void {
    const seen = new Set<string>();
    for (const a of pci) {
      if (this._lending?.validate(name, a, seen) === true) continue;
      const nic = this._fn(a.device);
      if (a.iommu !== 'translate' && a.iommu !== 'bypass') {
        throw pvError('PV_ERR_CONFIG', `${a.device}: iommu must be 'translate' or 'bypass', got ${String(a.iommu)}`);
      }
      if (seen.has(a.device)) throw pvError('PV_ERR_CONFIG', `domain ${name} lists device ${a.device} twice`);
      seen.add(a.device);
      if (nic.owner !== undefined) {
        throw pvError(
          'PV_ERR_CONFIG',
          `device ${a.device} is already owned by domain ${nic.owner}; domain ${name} cannot own it too`,
        );
      }
    }
    for (const a of attachments) {
      if (a.pci !== undefined) {
        throw pvError('PV_ERR_CONFIG', `attachment ${a.device} carries a PCI function: list owned devices in pci`);
      }
    }
  }

  /** Gives the devices to `domid` and programs their IOMMUs (call after `validate`). */
  assign(domid: DomId, ownerBytes: number, pci: readonly PciAssignment[]): void {
    for (const a of pci) {
      if (this._lending?.assign(domid, ownerBytes, a) === true) continue;
      const nic = this._fn(a.device);
      nic.iommu.assign(domid, ownerBytes, a.iommu);
      nic.owner = domid;
    }
  }

  /** The device part of a domain worker's data. */
  workerData(pci: readonly PciAssignment[], attachments: readonly DeviceAttachment[]): DomainDeviceData {
    const all = [...this._nics.values()];
    // Inline engines run in the doorbell writer's thread, and a WRITE from one NIC executes its
    // target side on the peer NIC in that same thread: an owner attaches every NIC.
    const runsEngine = this.engine === 'inline' && pci.length > 0;
    const nics = runsEngine ? all : all.filter((n) => pci.some((a) => a.device === n.data.iommu.device));
    return {
      engine: this.engine,
      fabricLock: this.fabricLock,
      wire: this.wire,
      fabric: this.fabric,
      nics: nics.map((n) => n.data),
      owned: pci.map((a) => ({ device: a.device, iommu: a.iommu })),
      attachments: [...attachments],
      nvmes: [...this._nvmes.values()]
        .filter((n) => pci.some((a) => a.device === n.data.iommu.device))
        .map((n) => n.data),
      lent: this._lending?.workerData(pci, runsEngine),
      accels: this._accels.workerData(pci),
    };
  }

  /**
   * A domain's thread was terminated, possibly inside a NIC command or WR (an inline engine runs
   * in the thread that rings the doorbell, under the host's fabric lock): break the fabric lock
   * if that thread held it, or the reset below and every other NIC user would wait forever. The
   * owner tag is that thread's `threadLockOwner(threadId)` (EntryLock.ts), as RnicFabric takes it. Call only
   * once the thread has exited. Returns how many locks were broken (0 or 1).
   */
  breakLocksOfThread(threadId: number): number {
    if (threadId < 0) return 0;
    return breakLocksOf(new Int32Array(this.fabricLock), FabricWord.LOCK, 1, 1, threadLockOwner(threadId));
  }

  /**
   * A domain's thread is gone: the devices it owned are reset (PCIe function-level reset: no
   * PD, MR, CQ or QP of the dead owner survives) and released (IOMMU cleared), and every
   * extent other devices held on its memory is revoked.
   */
  release(domid: DomId): void {
    this._lending?.release(domid);
    for (const nic of this._nics.values()) {
      if (nic.owner === domid) {
        // FLR first (the dead owner's objects go), then the IOMMU (its memory goes).
        functionReset(nic.device.ctx);
        nic.iommu.clear();
        nic.owner = undefined;
      } else {
        nic.iommu.revokeDomain(domid);
      }
    }
    for (const n of this._nvmes.values()) {
      if (n.owner === domid) {
        // FLR: the dead owner's queues go and the controller is disabled, then its memory goes.
        n.device.functionReset();
        n.iommu.clear();
        n.owner = undefined;
      } else {
        n.iommu.revokeDomain(domid);
      }
    }
    this._accels.release(domid);
  }

  /** A NIC or an NVMe SSD by name (ownership and IOMMU are the same for both). */
  private _fn(device: string): Nic | Nvme | HostAccel {
    return this._nvmes.get(device) ?? this._accels.get(device) ?? this._nic(device);
  }

  private _nic(device: string): Nic {
    const nic = this._nics.get(device);
    if (nic === undefined) throw pvError('PV_ERR_CONFIG', `this host has no device named ${String(device)}`);
    return nic;
  }
}
