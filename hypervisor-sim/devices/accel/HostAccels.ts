/**
 * The host's accelerators (`HostOptions.accels`), kept the way HostDevices keeps NVMe SSDs: each
 * gets its state, its own IOMMU context and a host-thread handle used only for function-level
 * reset and counters; ownership follows VFIO (one live owner, IOMMU programmed at assignment,
 * cleared — with the device memory scrubbed — when the owner dies). HostDevices holds one of
 * these and looks accelerators up here by name.
 */

import { pvError } from '../../../protocol/errors.js';
import type { DomId } from '../../../protocol/Types.js';
import { IommuContext } from '../../iommu/IommuContext.js';
import { MemoryDirectory } from '../../memory/MemoryDirectory.js';
import type { AccelData } from './AccelAttach.js';
import { type AccelConfig, AccelDevice } from './AccelDevice.js';

/** One accelerator of a host, as `HostOptions.accels` lists it (`accel0`, …). */
export type AccelSpec = AccelConfig;

/** One accelerator and its owner. */
export interface HostAccel {
  readonly data: AccelData;
  /** The host thread's view of the IOMMU (it resolves nothing: its directory stays empty). */
  readonly iommu: IommuContext;
  /** The host thread's handle: function-level reset and counters. */
  readonly device: AccelDevice;
  owner: DomId | undefined;
}

/** A host's accelerators (see the file comment). */
export class HostAccels {
  private readonly _accels = new Map<string, HostAccel>();

  /**
   * Creates `specs`, PCI addresses on buses `firstBus`, `firstBus + 1`, …; `taken` says whether
   * a name is already another device's (PV_ERR_CONFIG).
   */
  constructor(specs: readonly AccelSpec[], firstBus: number, taken: (name: string) => boolean) {
    specs.forEach((spec, i) => {
      if (taken(spec.name) || this._accels.has(spec.name)) {
        throw pvError('PV_ERR_CONFIG', `two devices are named ${spec.name}`);
      }
      const state = AccelDevice.create(spec);
      const iommu = IommuContext.create({ device: spec.name });
      const bdf = `0000:${(firstBus + i).toString(16).padStart(2, '0')}:00.0`;
      const hostIommu = IommuContext.attach(iommu, new MemoryDirectory());
      this._accels.set(spec.name, {
        data: { state, iommu, bdf },
        iommu: hostIommu,
        device: new AccelDevice(state, hostIommu),
        owner: undefined,
      });
    });
  }

  /** The accelerator named `name`, if any. */
  get(name: string): HostAccel | undefined {
    return this._accels.get(name);
  }

  /** Names, in creation order. */
  names(): string[] {
    return [...this._accels.keys()];
  }

  /** Every accelerator's counters. */
  metrics(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, a] of this._accels) out[name] = a.device.metrics();
    return out;
  }

  /** What the thread of a domain owning `devices` attaches: the accelerators among them. */
  workerData(devices: ReadonlyArray<{ readonly device: string }>): AccelData[] {
    return [...this._accels.values()]
      .filter((a) => devices.some((d) => d.device === a.data.iommu.device))
      .map((a) => a.data);
  }

  /** `domid`'s thread is gone: FLR (memory scrubbed) and IOMMU cleared for what it owned. */
  release(domid: DomId): void {
    for (const a of this._accels.values()) {
      if (a.owner === domid) {
        a.device.functionReset();
        a.iommu.clear();
        a.owner = undefined;
      } else {
        a.iommu.revokeDomain(domid);
      }
    }
  }
}
