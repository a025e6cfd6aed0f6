/**
 * Timing profiles of the PCIe fabric (DESIGN §6): what crossing each link and NTB of a route costs.
 * The model is the usual store-and-forward-free PCIe one:
 *
 *   write (posted):  costNs = Σ hop latency + bytes / narrowest hop bandwidth
 *   read:            costNs = 2 · Σ hop latency + bytes / narrowest hop bandwidth
 *                    (the read request crosses every hop out, the completions cross them back)
 *
 * A link's bandwidth is its raw rate times the TLP efficiency at its max payload size,
 * `raw · MPS / (MPS + overhead)`; an NTB hop's bandwidth is the measured NTB DMA peak (which
 * already includes TLP overhead), different for writes and reads. Pipelining means only the
 * narrowest hop serialises the data; every other hop adds its latency once.
 *
 * `ideal` costs nothing anywhere (it isolates software costs, and ignores per-link overrides);
 * `pcie3-x8-ntb` is calibrated on the Dolphin PXH810/PXH830 figures in
 * reference/rdma-perftest-lending.md §6 — see PCIE3_X8_NTB below for each number and its source.
 */

import { pvError } from '../../protocol/errors.js';
import type { Hop, Route } from './Types.js';

/** Profile names, for validating `--fabric`. */
export const FABRIC_PROFILE_NAMES = ['ideal', 'pcie3-x8-ntb'] as const;
/** A profile name. */
export type FabricProfileName = (typeof FABRIC_PROFILE_NAMES)[number];
/** Direction of a transfer as seen by the initiator. */
export type Direction = 'write' | 'read';

/** The numbers a profile is made of. */
export interface ProfileParams {
  /** One-way latency of a link (both ports and the wire), ns. */
  readonly linkLatencyNs: number;
  /** Raw link bandwidth, bytes/ns (= GB/s). */
  readonly linkBytesPerNs: number;
  /** Default max payload size of a TLP, bytes. */
  readonly maxPayload: number;
  /** Per-TLP header + framing bytes on a link. */
  readonly tlpOverheadBytes: number;
  /** Latency an NTB crossing adds, ns. */
  readonly ntbHopNs: number;
  /** NTB peak throughput for writes / reads, bytes/ns. */
  readonly ntbWriteBytesPerNs: number;
  readonly ntbReadBytesPerNs: number;
}

/**
 * PCIe Gen3 x8 with a Dolphin PXH830-class NTB.
 * - linkBytesPerNs 7.877: 8 GT/s · 8 lanes · 128/130 (Gen3 line code) / 8 bits = 7.88 GB/s raw.
 * - tlpOverheadBytes 24: 4 B framing token + 2 B sequence number + 16 B 4DW header (64-bit
 *   address) + 4 B LCRC ≈ 24–26 B; with maxPayload 256 a link carries 7.88 · 256/280 ≈ 7.2 GB/s
 *   of data (128 B: ≈ 6.6 GB/s).
 * - ntbHopNs 360: "NTB adds 350–365 ns" (CC'19 §7.2.2, 3-node PXH830) and "350–370 ns"
 *   (CC'19 §7.4, back-to-back), one way.
 * - linkLatencyNs 100: the port-to-port latency of a Gen3 root port or switch hop, chosen so that
 *   a back-to-back one-way RAM → remote RAM write (two links + one NTB) costs 2·100 + 360 + 64 B /
 *   4.8 GB/s ≈ 573 ns: NOSSDAV'16 §6.1 measured ≈ 573 ns (PXH810), CC'19 §7.4 550–580 ns, and
 *   CC'19 §7.2.2 ≈ 700 ns with a switch on the way (three links + NTB ≈ 673 ns here).
 * - ntbWriteBytesPerNs 4.8 / ntbReadBytesPerNs 3.0: NTB DMA write / read peaks, NOSSDAV'16 §6.1
 *   (MRRS 512 B, MPS 128 B, 64 reads in flight); large transfers through one NTB are bound by these.
 */
export const PCIE3_X8_NTB: ProfileParams = {
  linkLatencyNs: 100,
  linkBytesPerNs: (8 * 8 * 128) / 130 / 8,
  maxPayload: 256,
  tlpOverheadBytes: 24,
  ntbHopNs: 360,
  ntbWriteBytesPerNs: 4.8,
  ntbReadBytesPerNs: 3.0,
};

/** No hardware cost. */
export const IDEAL: ProfileParams = {
  linkLatencyNs: 0,
  linkBytesPerNs: Number.POSITIVE_INFINITY,
  maxPayload: 4096,
  tlpOverheadBytes: 0,
  ntbHopNs: 0,
  ntbWriteBytesPerNs: Number.POSITIVE_INFINITY,
  ntbReadBytesPerNs: Number.POSITIVE_INFINITY,
};

/** A timing profile: per-hop numbers and the cost of a route. */
export class FabricProfile {
  readonly name: FabricProfileName;
  readonly params: ProfileParams;
  /** Whether per-link overrides in the topology count (not in `ideal`). */
  readonly honoursLinkOverrides: boolean;

  constructor(name: FabricProfileName, params: ProfileParams, honoursLinkOverrides: boolean) {
    this.name = name;
    this.params = params;
    this.honoursLinkOverrides = honoursLinkOverrides;
  }

  /** One-way latency of one hop, ns. */
  hopLatencyNs(hop: Hop): number {
    if (hop.kind === 'ntb') return this.params.ntbHopNs;
    return (this.honoursLinkOverrides ? hop.latencyNs : undefined) ?? this.params.linkLatencyNs;
  }

  /** Data bandwidth of one hop in `dir`, bytes/ns (Infinity for free). */
  hopBytesPerNs(hop: Hop, dir: Direction): number {
    const p = this.params;
    if (hop.kind === 'ntb') return dir === 'write' ? p.ntbWriteBytesPerNs : p.ntbReadBytesPerNs;
    const raw = (this.honoursLinkOverrides ? hop.bytesPerNs : undefined) ?? p.linkBytesPerNs;
    const mps = (this.honoursLinkOverrides ? hop.maxPayload : undefined) ?? p.maxPayload;
    return (raw * mps) / (mps + p.tlpOverheadBytes);
  }

  /** Σ one-way hop latency of `route`, ns. */
  latencyNs(route: Route): number {
    let ns = 0;
    for (const h of route.hops) ns += this.hopLatencyNs(h);
    return ns;
  }

  /** Time `bytes` take through the narrowest hop of `route`, ns (0 for a route with no hop). */
  serialisationNs(route: Route, bytes: number, dir: Direction): number {
    let narrowest = Number.POSITIVE_INFINITY;
    for (const h of route.hops) narrowest = Math.min(narrowest, this.hopBytesPerNs(h, dir));
    return narrowest === Number.POSITIVE_INFINITY ? 0 : bytes / narrowest;
  }

  /** Modeled time of moving `bytes` along `route` (see the file comment), ns. */
  costNs(route: Route, bytes: number, dir: Direction): number {
    if (!(Number.isFinite(bytes) && bytes >= 0)) {
      throw pvError('PV_ERR_INVALID_ARG', `costNs: bytes must be a finite number ≥ 0, got ${bytes}`);
    }
    const lat = this.latencyNs(route);
    return (dir === 'read' ? 2 * lat : lat) + this.serialisationNs(route, bytes, dir);
  }
}

const PROFILES: Readonly<Record<FabricProfileName, FabricProfile>> = {
  ideal: new FabricProfile('ideal', IDEAL, false),
  'pcie3-x8-ntb': new FabricProfile('pcie3-x8-ntb', PCIE3_X8_NTB, true),
};

/** True if `name` is a profile name. */
export function isFabricProfileName(name: unknown): name is FabricProfileName {
  return typeof name === 'string' && (FABRIC_PROFILE_NAMES as readonly string[]).includes(name);
}

/** The profile called `name` (PV_ERR_INVALID_ARG naming the choices otherwise). */
export function fabricProfile(name: FabricProfileName): FabricProfile {
  if (!isFabricProfileName(name)) {
    throw pvError(
      'PV_ERR_INVALID_ARG',
      `unknown fabric profile '${String(name)}' (${FABRIC_PROFILE_NAMES.join(', ')})`,
    );
  }
  return PROFILES[name];
}
