/**
 * The PCIe fabric's vocabulary: the plain JSON-able description a cluster is built from (so it
 * can be posted to worker threads as is), and what `route()` answers.
 *
 * Model (DESIGN §1 "PCIe fabric", reference §4 "Device Lending / SmartIO"):
 * ```
 *  host A                                    host B
 *  RAM [0, ramBytes)                         RAM [0, ramBytes)
 *    │                                         │
 *   rc ── link ── switch ── link ── nvme0     rc ── link ── ntb1 ═══ NTB "ab" ═══ …
 *                   │                          │
 *                  link ── ntbA ══ NTB "ab" ══ ntbB (peer side: windows map B's addresses onto A's)
 * ```
 * Each host is a tree rooted at its root complex (`rc`), which owns host RAM. Endpoints and NTB
 * adapters are leaves with BARs in the host's address space. An NTB adapter's aperture is a BAR
 * whose sub-ranges (translation windows, set at run time) forward to the peer host's address
 * space; the rest of the aperture answers nothing (PV_ERR_PCIE_NO_WINDOW).
 *
 * Addresses are byte addresses in ONE host's address space (`HostPhysAddr`); a route translates
 * them at each NTB crossing.
 */

import type { HostPhysAddr } from '../../protocol/Types.js';

/** PCI configuration-space identity of a function (PCI Local Bus spec §6.2.1). */
export interface ConfigSpaceSpec {
  /** 16-bit vendor id (e.g. 0x15b3 Mellanox, 0x8086 Intel, 0x11c8 Dolphin). */
  readonly vendorId: number;
  /** 16-bit device id. */
  readonly deviceId: number;
  /** 24-bit class code: base class, sub-class, programming interface (0x010802 = NVMe). */
  readonly classCode: number;
}

/** One memory BAR. */
export interface BarSpec {
  /** Bytes; a power of two ≥ 16 (PCI memory BARs are naturally aligned powers of two). */
  readonly size: number;
  /** Assigned address; omitted → enumeration assigns one above RAM, aligned to `size`. */
  readonly base?: number;
}

/** A node of one host's PCIe tree. */
export type NodeSpec =
  | { readonly id: string; readonly kind: 'rc' }
  | { readonly id: string; readonly kind: 'switch' }
  | { readonly id: string; readonly kind: 'endpoint'; readonly config: ConfigSpaceSpec; readonly bars: BarSpec[] }
  | {
      readonly id: string;
      readonly kind: 'ntb';
      /** The adapter's window aperture (a BAR); every window of this side lies inside it. */
      readonly aperture: BarSpec;
      readonly config?: ConfigSpaceSpec;
    };

/** Kinds of node. */
export type NodeKind = NodeSpec['kind'];

/**
 * A link between two nodes of the same host. The optional fields override the timing profile's
 * defaults for this link (e.g. a x4 slot); the `ideal` profile ignores them.
 */
export interface LinkSpec {
  readonly a: string;
  readonly b: string;
  /** One-way latency of the link and its two ports, ns. */
  readonly latencyNs?: number;
  /** Raw bandwidth, bytes per ns (= GB/s), before TLP overhead. */
  readonly bytesPerNs?: number;
  /** Max payload size of a TLP on this link, bytes (128 … 4096, a power of two). */
  readonly maxPayload?: number;
}

/** One simulated machine's fabric. */
export interface HostSpec {
  readonly name: string;
  /** Host RAM, behind the root complex, at [0, ramBytes). */
  readonly ramBytes: number;
  /** Where enumeration starts assigning BARs; default: RAM rounded up to 256 MiB. */
  readonly mmioBase?: number;
  readonly nodes: NodeSpec[];
  readonly links: LinkSpec[];
}

/** A translation window of one NTB side: [base, base + size) here → [peerBase, …) on the peer. */
export interface WindowSpec {
  readonly base: number;
  readonly size: number;
  readonly peerBase: number;
}

/** One side of an NTB: the adapter node on a host, and its windows at start-up. */
export interface NtbSideSpec {
  readonly host: string;
  readonly node: string;
  readonly windows?: WindowSpec[];
}

/** A non-transparent bridge joining two hosts (Dolphin PXH830 style, back to back or via a cable). */
export interface NtbSpec {
  readonly name: string;
  readonly sides: readonly [NtbSideSpec, NtbSideSpec];
}

/** The whole cluster: hosts and the NTBs between them. */
export interface ClusterSpec {
  readonly hosts: HostSpec[];
  readonly ntbs: NtbSpec[];
  /** Windows each host's shared table holds (all its NTB sides together); default 64. */
  readonly maxWindowsPerHost?: number;
  /** Loop guard: NTB crossings one route may make; default 4. */
  readonly maxNtbCrossings?: number;
}

/** Where an access starts: a node of a host (`rc` for the CPU / host RAM side). */
export interface NodeRef {
  readonly host: string;
  readonly node: string;
}

/** A link traversed (in direction from → to). */
export interface LinkHop {
  readonly kind: 'link';
  readonly host: string;
  /** Index into the host's `links`. */
  readonly link: number;
  readonly from: string;
  readonly to: string;
  /** The link's own overrides (undefined → the profile's default). */
  readonly latencyNs?: number;
  readonly bytesPerNs?: number;
  readonly maxPayload?: number;
}

/** An NTB crossing through one window. */
export interface NtbHop {
  readonly kind: 'ntb';
  readonly ntb: string;
  readonly fromHost: string;
  readonly toHost: string;
  /** Slot of the window in the sending host's table. */
  readonly window: number;
}

/** One hop of a route. */
export type Hop = LinkHop | NtbHop;

/** A route's end: host RAM … */
export interface RamTarget {
  readonly kind: 'ram';
  readonly host: string;
  readonly addr: HostPhysAddr;
}

/** … or a BAR of an endpoint. */
export interface BarTarget {
  readonly kind: 'bar';
  readonly host: string;
  readonly endpoint: string;
  readonly bar: number;
  readonly offset: number;
}

/** What `route()` answers. */
export interface Route {
  readonly from: NodeRef;
  readonly addr: HostPhysAddr;
  readonly bytes: number;
  readonly target: RamTarget | BarTarget;
  readonly hops: readonly Hop[];
  readonly ntbCrossings: number;
}
