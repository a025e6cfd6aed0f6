/**
 * The PCIe path of a LOCAL device — the same shape every host has in a cluster (FabricPlan.ts):
 * ```
 *  rc ── sw ── device        DMA: device → sw → rc → RAM (2 links)   MMIO: CPU → rc → sw → BAR (2 links)
 * ```
 * With a timing profile other than `ideal`, every DMA a device model resolves and every BAR
 * access of its driver pays that route's modelled cost as real delay (payRoute, accounted as
 * FABRIC in the stage ledger), so `--fabric pcie3-x8-ntb` times local devices too and a lent
 * device differs from a local one only by what the NTB adds. With `ideal` nothing is wrapped:
 * the local path costs nothing and the fast path is untouched.
 *
 * Known simplification (as for lent devices): a queue view a device caches pays when it is
 * resolved, not per access; data transfers pay per transfer.
 */

import type { MmioRegion } from '../../protocol/Pci.js';
import { hostPhysAddr } from '../../protocol/Types.js';
import type { DmaRef, DmaResolver } from '../iommu/DmaResolver.js';
import { payRoute } from './PayNs.js';
import { PcieCluster } from './PcieCluster.js';
import { type FabricProfile, type FabricProfileName, fabricProfile } from './Profiles.js';
import type { Route } from './Types.js';

const RAM_BYTES = 1 << 30;
const BAR_BASE = 0x8000_0000;
const BAR_BYTES = 0x10_0000;

/** The one-host topology and its two routes (device → RAM, CPU → BAR), built once per thread. */
function localRoutes(): { dma: Route; mmio: Route } {
  const c = PcieCluster.create({
    hosts: [
      {
        name: 'local',
        ramBytes: RAM_BYTES,
        nodes: [
          { id: 'rc', kind: 'rc' },
          { id: 'sw', kind: 'switch' },
          {
            id: 'dev',
            kind: 'endpoint',
            config: { vendorId: 0x1af4, deviceId: 0x1000, classCode: 0x020700 },
            bars: [{ size: BAR_BYTES, base: BAR_BASE }],
          },
        ],
        links: [
          { a: 'rc', b: 'sw' },
          { a: 'sw', b: 'dev' },
        ],
      },
    ],
    ntbs: [],
  });
  return {
    dma: c.route({ host: 'local', node: 'dev' }, hostPhysAddr(0), 0),
    mmio: c.route({ host: 'local', node: 'rc' }, hostPhysAddr(BAR_BASE), 4),
  };
}

let routes: { dma: Route; mmio: Route } | undefined;

/** Local-device fabric costs for one profile. */
export class LocalFabric {
  readonly profile: FabricProfile;
  private readonly _dma: Route;
  private readonly _mmio: Route;

  constructor(name: FabricProfileName) {
    this.profile = fabricProfile(name);
    routes ??= localRoutes();
    this._dma = routes.dma;
    this._mmio = routes.mmio;
  }

  /** True when the profile charges anything (not `ideal`). */
  get charges(): boolean {
    return this.profile.name !== 'ideal';
  }

  /** Modelled ns of a DMA of `bytes` between a local device and RAM. */
  dmaNs(bytes: number, write: boolean): number {
    return this.profile.costNs(this._dma, bytes, write ? 'write' : 'read');
  }

  /** A resolver that pays the local route after each successful resolution; `inner` itself for ideal. */
  wrapResolver(inner: DmaResolver): DmaResolver {
    if (!this.charges) return inner;
    const profile = this.profile;
    const route = this._dma;
    return {
      resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
        if (!inner.resolve(iova, len, write, out)) return false;
        payRoute(profile, route, len, write ? 'write' : 'read');
        return true;
      },
      generation: () => inner.generation(),
    };
  }

  /** A BAR whose register reads pay a round trip and writes a posted write; `bar` itself for ideal. */
  wrapBar(bar: MmioRegion): MmioRegion {
    if (!this.charges) return bar;
    const profile = this.profile;
    const route = this._mmio;
    return {
      size: bar.size,
      read32(offset: number): number {
        payRoute(profile, route, 4, 'read');
        return bar.read32(offset);
      },
      write32(offset: number, value: number): void {
        payRoute(profile, route, 4, 'write');
        bar.write32(offset, value);
      },
    };
  }
}
