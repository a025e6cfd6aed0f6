import assert from 'node:assert/strict';
import { PcieCluster } from '../../../hypervisor-sim/pcie/PcieCluster.js';
import type { Hop, NodeRef, Route } from '../../../hypervisor-sim/pcie/Types.js';
import { PvError } from '../../../protocol/errors.js';
import { type HostPhysAddr, hostPhysAddr } from '../../../protocol/Types.js';
import { MIB, threeHosts } from './helpers/Clusters.js';

const A_RC: NodeRef = { host: 'A', node: 'rc' };
const addr = (v: number): HostPhysAddr => hostPhysAddr(v);
/** End of A's RAM. */
const GIB_END = 0x4000_0000;

/** Hops as short text: `A:rc>sw0` for a link, `ntb:ab A>B` for a crossing. */
function path(r: Route): string[] {
  return r.hops.map((h: Hop) =>
    h.kind === 'link' ? `${h.host}:${h.from}>${h.to}` : `ntb:${h.ntb} ${h.fromHost}>${h.toHost}`,
  );
}

/** Asserts `fn` throws a PvError with `code` whose message matches `re`. */
function throwsCode(fn: () => unknown, code: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PvError, `a typed PvError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (re) assert.match(e.message, re);
    return true;
  });
}

describe('pcie routing: accesses on one host', () => {
  const c = PcieCluster.create(threeHosts());

  it('a CPU access to local RAM ends at the root complex with no hop', () => {
    const r = c.route(A_RC, addr(0x1000), 64);
    assert.deepEqual(r.target, { kind: 'ram', host: 'A', addr: 0x1000 });
    assert.deepEqual(r.hops, []);
    assert.equal(r.ntbCrossings, 0);
  });

  it('a device DMA to local RAM climbs through its switch to the root complex', () => {
    const r = c.route({ host: 'A', node: 'nvme0' }, addr(0x20_0000), 4096);
    assert.deepEqual(r.target, { kind: 'ram', host: 'A', addr: 0x20_0000 });
    assert.deepEqual(path(r), ['A:nvme0>sw0', 'A:sw0>rc']);
  });

  it('an MMIO to a BAR lands on that endpoint at the offset inside the BAR', () => {
    const r = c.route(A_RC, addr(0x8000_0010), 4);
    assert.deepEqual(r.target, { kind: 'bar', host: 'A', endpoint: 'nvme0', bar: 0, offset: 0x10 });
    assert.deepEqual(path(r), ['A:rc>sw0', 'A:sw0>nvme0']);
  });

  it('peer-to-peer between two endpoints under one switch turns at the switch, not the root', () => {
    const r = c.route({ host: 'A', node: 'nic0' }, addr(0x8000_0100), 256);
    assert.deepEqual(r.target, { kind: 'bar', host: 'A', endpoint: 'nvme0', bar: 0, offset: 0x100 });
    assert.deepEqual(path(r), ['A:nic0>sw0', 'A:sw0>nvme0']);
  });

  it('an address outside RAM, every BAR and every aperture is PV_ERR_PCIE_UNROUTABLE', () => {
    throwsCode(() => c.route(A_RC, addr(0x7000_0000), 4), 'PV_ERR_PCIE_UNROUTABLE', /A: 0x70000000/);
    throwsCode(() => c.route(A_RC, addr(0x8000_4000), 4), 'PV_ERR_PCIE_UNROUTABLE');
  });

  it('a zero-length access routes like a one-byte one', () => {
    assert.deepEqual(c.route(A_RC, addr(0x8000_0000), 0).target.kind, 'bar');
    throwsCode(() => c.route(A_RC, addr(GIB_END), 0), 'PV_ERR_PCIE_UNROUTABLE');
  });

  it('an unknown host or node, or a bad address or length, is PV_ERR_INVALID_ARG', () => {
    throwsCode(() => c.route({ host: 'Z', node: 'rc' }, addr(0), 4), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.route({ host: 'A', node: 'gpu0' }, addr(0), 4), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.route(A_RC, -1 as HostPhysAddr, 4), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.route(A_RC, addr(0), 1.5), 'PV_ERR_INVALID_ARG');
  });
});

describe('pcie routing: NTB window translation', () => {
  it('A → B RAM: the window translates the address and the route crosses one NTB', () => {
    const c = PcieCluster.create(threeHosts());
    const r = c.route(A_RC, addr(0x9000_0100), 64);
    assert.deepEqual(r.target, { kind: 'ram', host: 'B', addr: 0x1000_0100 });
    assert.deepEqual(path(r), ['A:rc>ntbA', 'ntb:ab A>B', 'B:ntbB1>rc']);
    assert.equal(r.ntbCrossings, 1);
  });

  it('A → B BAR: MMIO to a borrowed device reaches its BAR through the window', () => {
    const c = PcieCluster.create(threeHosts());
    const r = c.route(A_RC, addr(0x9400_0020), 4);
    assert.deepEqual(r.target, { kind: 'bar', host: 'B', endpoint: 'gpu0', bar: 0, offset: 0x20 });
    assert.deepEqual(path(r), ['A:rc>ntbA', 'ntb:ab A>B', 'B:ntbB1>rc', 'B:rc>sw1', 'B:sw1>gpu0']);
  });

  it('B device → A RAM: a lent device DMAs to the borrower through the lender-side DMA window', () => {
    const c = PcieCluster.create(threeHosts());
    const r = c.route({ host: 'B', node: 'gpu0' }, addr(0x9000_0008), 4096);
    assert.deepEqual(r.target, { kind: 'ram', host: 'A', addr: 0x0100_0008 });
    assert.deepEqual(path(r), ['B:gpu0>sw1', 'B:sw1>rc', 'B:rc>ntbB1', 'ntb:ab B>A', 'A:ntbA>rc']);
  });

  it('A → B → C: a route chains through two NTBs, translating at each', () => {
    const c = PcieCluster.create(threeHosts());
    const r = c.route(A_RC, addr(0x9800_0040), 128);
    assert.deepEqual(r.target, { kind: 'ram', host: 'C', addr: 0x0200_0040 });
    assert.deepEqual(path(r), ['A:rc>ntbA', 'ntb:ab A>B', 'B:ntbB1>rc', 'B:rc>ntbB2', 'ntb:bc B>C', 'C:ntbC>rc']);
    assert.equal(r.ntbCrossings, 2);
  });

  it('a DMA into an aperture outside every window is PV_ERR_PCIE_NO_WINDOW, a typed error', () => {
    const c = PcieCluster.create(threeHosts());
    throwsCode(() => c.route({ host: 'B', node: 'gpu0' }, addr(0x9100_0000), 64), 'PV_ERR_PCIE_NO_WINDOW', /B\/ntbB1/);
  });

  it('a window miss on the peer side of a chain is PV_ERR_PCIE_NO_WINDOW naming the peer', () => {
    const c = PcieCluster.create(threeHosts());
    assert.equal(c.clearWindow('B', 1), true);
    throwsCode(() => c.route(A_RC, addr(0x9800_0040), 8), 'PV_ERR_PCIE_NO_WINDOW', /B\/ntbB2/);
  });

  it('a window onto a hole of the peer is PV_ERR_PCIE_UNROUTABLE naming the peer', () => {
    const c = PcieCluster.create(threeHosts());
    c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x7000_0000 });
    throwsCode(() => c.route(A_RC, addr(0x9c00_0000), 8), 'PV_ERR_PCIE_UNROUTABLE', /B: 0x70000000/);
  });

  it('two windows pointing at each other stop at the loop guard', () => {
    const c = PcieCluster.create({ ...threeHosts(), maxNtbCrossings: 3 });
    c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x9f00_0000 });
    c.setWindow('B', 'ab', { base: 0x9f00_0000, size: 0x1000, peerBase: 0x9c00_0000 });
    throwsCode(() => c.route(A_RC, addr(0x9c00_0010), 8), 'PV_ERR_PCIE_UNROUTABLE', /loop guard: more than 3/);
  });

  it('windows opened and closed at run time change routes and bump the generation', () => {
    const c = PcieCluster.create(threeHosts());
    const g = c.generation('A');
    const slot = c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x3000_0000 });
    assert.equal(c.generation('A'), g + 1);
    assert.deepEqual(c.route(A_RC, addr(0x9c00_0004), 4).target, { kind: 'ram', host: 'B', addr: 0x3000_0004 });
    assert.equal(c.clearWindow('A', slot), true);
    assert.equal(c.clearWindow('A', slot), false, 'closing twice is a no-op');
    assert.equal(c.generation('A'), g + 2);
    throwsCode(() => c.route(A_RC, addr(0x9c00_0004), 4), 'PV_ERR_PCIE_NO_WINDOW');
  });

  it('a window must lie inside its side aperture and overlap no open window (PV_ERR_INVALID_ARG)', () => {
    const c = PcieCluster.create(threeHosts());
    throwsCode(() => c.setWindow('A', 'ab', { base: 0x8f00_0000, size: 0x1000, peerBase: 0 }), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.setWindow('A', 'ab', { base: 0x9fff_f000, size: 0x2000, peerBase: 0 }), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.setWindow('A', 'ab', { base: 0x9000_1000, size: 0x1000, peerBase: 0 }), 'PV_ERR_INVALID_ARG');
    throwsCode(() => c.setWindow('A', 'bc', { base: 0x9c00_0000, size: 0x1000, peerBase: 0 }), 'PV_ERR_INVALID_ARG');
  });
});

describe('pcie routing: a transfer straddling an edge never spills', () => {
  // Window 0 of A ends at 0x9400_0000, exactly where window 1 (onto gpu0's BAR) begins.
  const edge = 0x9000_0000 + 64 * MIB;

  it('route() refuses a transfer across a window edge with PV_ERR_PCIE_NO_WINDOW, even into the next window', () => {
    const c = PcieCluster.create(threeHosts());
    throwsCode(() => c.route(A_RC, addr(edge - 32), 64), 'PV_ERR_PCIE_NO_WINDOW', /straddles the end of window 0/);
    assert.equal(c.route(A_RC, addr(edge - 32), 32).bytes, 32, 'up to the edge is fine');
  });

  it('route() refuses a transfer across the end of RAM or of a BAR with PV_ERR_PCIE_UNROUTABLE', () => {
    const c = PcieCluster.create(threeHosts());
    throwsCode(() => c.route(A_RC, addr(GIB_END - 16), 32), 'PV_ERR_PCIE_UNROUTABLE', /RAM of A/);
    throwsCode(() => c.route(A_RC, addr(0x8000_3ff0), 32), 'PV_ERR_PCIE_UNROUTABLE', /BAR 0 of A\/nvme0/);
  });

  it('routeSplit() cuts at the window edge: each piece goes where its own window says', () => {
    const c = PcieCluster.create(threeHosts());
    const parts = c.routeSplit(A_RC, addr(edge - 32), 64);
    assert.equal(parts.length, 2);
    assert.deepEqual(
      parts.map((p) => [p.addr, p.bytes, p.target]),
      [
        [edge - 32, 32, { kind: 'ram', host: 'B', addr: 0x1000_0000 + 64 * MIB - 32 }],
        [edge, 32, { kind: 'bar', host: 'B', endpoint: 'gpu0', bar: 0, offset: 0 }],
      ],
    );
  });

  it('routeSplit() cuts at a peer-side edge too, and a piece landing nowhere still fails', () => {
    const c = PcieCluster.create(threeHosts());
    // B's 1 MiB window onto C becomes two 512 KiB windows onto distant places of C's RAM.
    assert.equal(c.clearWindow('B', 1), true);
    c.setWindow('B', 'bc', { base: 0xa000_0000, size: MIB / 2, peerBase: 0x0200_0000 });
    c.setWindow('B', 'bc', { base: 0xa008_0000, size: MIB / 2, peerBase: 0x0300_0000 });
    throwsCode(() => c.route(A_RC, addr(0x9800_0000), MIB), 'PV_ERR_PCIE_NO_WINDOW', /of B\/ntbB2/);
    const parts = c.routeSplit(A_RC, addr(0x9800_0000), MIB);
    assert.deepEqual(
      parts.map((p) => [p.addr, p.bytes, p.target, p.ntbCrossings]),
      [
        [0x9800_0000, MIB / 2, { kind: 'ram', host: 'C', addr: 0x0200_0000 }, 2],
        [0x9808_0000, MIB / 2, { kind: 'ram', host: 'C', addr: 0x0300_0000 }, 2],
      ],
    );
    throwsCode(() => c.routeSplit(A_RC, addr(0x9800_0000), 2 * MIB), 'PV_ERR_PCIE_NO_WINDOW');
    throwsCode(() => c.routeSplit(A_RC, addr(GIB_END - 16), 32), 'PV_ERR_PCIE_UNROUTABLE');
  });
});
