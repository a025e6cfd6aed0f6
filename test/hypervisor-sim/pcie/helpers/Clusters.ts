/**
 * Cluster descriptions shared by the fabric tests. `threeHosts()` is a back-to-back chain
 * A ═ab═ B ═bc═ C with explicit addresses so tests read like the diagram:
 * ```
 * A (RAM 1 GiB)                       B (RAM 1 GiB)                          C (RAM 512 MiB)
 * rc ─ sw0 ─ nvme0 BAR0 0x8000_0000   rc ─ sw1 ─ gpu0 BAR0 0x8000_0000 (16 MiB)   rc ─ ntbC 0x9000_0000
 *       └─── nic0  BAR0 0x8001_0000    ├── ntbB1 aperture 0x9000_0000 (peer A)
 * rc ─ ntbA aperture 0x9000_0000      └── ntbB2 aperture 0xa000_0000 (peer C)
 *
 * windows  A 0x9000_0000 +64 MiB → B RAM 0x1000_0000      (slot 0)
 *          A 0x9400_0000 +16 MiB → B gpu0 BAR 0x8000_0000 (slot 1)
 *          A 0x9800_0000 +1 MiB  → B ntbB2 0xa000_0000     (slot 2: chains on to C)
 *          B 0x9000_0000 +16 MiB → A RAM 0x0100_0000      (slot 0: the DMA window back to A)
 *          B 0xa000_0000 +1 MiB  → C RAM 0x0200_0000      (slot 1)
 * ```
 */

import type { ClusterSpec, HostSpec } from '../../../../hypervisor-sim/pcie/Types.js';

export const GIB = 0x4000_0000;
export const MIB = 0x10_0000;

/** NVMe class code (mass storage / NVM / NVMe). */
export const NVME_CLASS = 0x010802;

export function hostA(): HostSpec {
  return {
    name: 'A',
    ramBytes: GIB,
    nodes: [
      { id: 'rc', kind: 'rc' },
      { id: 'sw0', kind: 'switch' },
      {
        id: 'nvme0',
        kind: 'endpoint',
        config: { vendorId: 0x8086, deviceId: 0x2700, classCode: NVME_CLASS },
        bars: [{ size: 0x4000, base: 0x8000_0000 }],
      },
      {
        id: 'nic0',
        kind: 'endpoint',
        config: { vendorId: 0x15b3, deviceId: 0x1017, classCode: 0x020700 },
        bars: [{ size: 0x1_0000, base: 0x8001_0000 }],
      },
      { id: 'ntbA', kind: 'ntb', aperture: { size: 0x1000_0000, base: 0x9000_0000 } },
    ],
    links: [
      { a: 'rc', b: 'sw0' },
      { a: 'sw0', b: 'nvme0' },
      { a: 'sw0', b: 'nic0' },
      { a: 'rc', b: 'ntbA' },
    ],
  };
}

export function hostB(ramBytes = GIB): HostSpec {
  return {
    name: 'B',
    ramBytes,
    nodes: [
      { id: 'rc', kind: 'rc' },
      { id: 'sw1', kind: 'switch' },
      {
        id: 'gpu0',
        kind: 'endpoint',
        config: { vendorId: 0x10de, deviceId: 0x1bb1, classCode: 0x030000 },
        bars: [{ size: 16 * MIB, base: 0x8000_0000 }],
      },
      { id: 'ntbB1', kind: 'ntb', aperture: { size: 0x1000_0000, base: 0x9000_0000 } },
      { id: 'ntbB2', kind: 'ntb', aperture: { size: 0x1000_0000, base: 0xa000_0000 } },
    ],
    links: [
      { a: 'rc', b: 'sw1' },
      { a: 'sw1', b: 'gpu0' },
      { a: 'rc', b: 'ntbB1' },
      { a: 'rc', b: 'ntbB2' },
    ],
  };
}

export function hostC(): HostSpec {
  return {
    name: 'C',
    ramBytes: 512 * MIB,
    nodes: [
      { id: 'rc', kind: 'rc' },
      { id: 'ntbC', kind: 'ntb', aperture: { size: 0x1000_0000, base: 0x9000_0000 } },
    ],
    links: [{ a: 'rc', b: 'ntbC' }],
  };
}

/** The three-host chain of the file comment. */
export function threeHosts(): ClusterSpec {
  return {
    hosts: [hostA(), hostB(), hostC()],
    ntbs: [
      {
        name: 'ab',
        sides: [
          {
            host: 'A',
            node: 'ntbA',
            windows: [
              { base: 0x9000_0000, size: 64 * MIB, peerBase: 0x1000_0000 },
              { base: 0x9400_0000, size: 16 * MIB, peerBase: 0x8000_0000 },
              { base: 0x9800_0000, size: MIB, peerBase: 0xa000_0000 },
            ],
          },
          { host: 'B', node: 'ntbB1', windows: [{ base: 0x9000_0000, size: 16 * MIB, peerBase: 0x0100_0000 }] },
        ],
      },
      {
        name: 'bc',
        sides: [
          { host: 'B', node: 'ntbB2', windows: [{ base: 0xa000_0000, size: MIB, peerBase: 0x0200_0000 }] },
          { host: 'C', node: 'ntbC' },
        ],
      },
    ],
  };
}

/** A deep copy of `threeHosts()` as plain JSON, for tests that break one field. */
// biome-ignore lint/suspicious/noExplicitAny: validation tests break fields into any shape on purpose.
export function mutable(): any {
  return JSON.parse(JSON.stringify(threeHosts()));
}
