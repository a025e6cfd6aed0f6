import assert from 'node:assert/strict';
import { PcieCluster } from '../../../hypervisor-sim/pcie/PcieCluster.js';
import type { NodeRef } from '../../../hypervisor-sim/pcie/Types.js';
import { PvError } from '../../../protocol/errors.js';
import { type HostPhysAddr, hostPhysAddr } from '../../../protocol/Types.js';
import { threeHosts } from './helpers/Clusters.js';

const A_RC: NodeRef = { host: 'A', node: 'rc' };
const addr = (v: number): HostPhysAddr => hostPhysAddr(v);

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof PvError && e.code === code);
}

describe('pcie route cache: a cached route never outlives the windows it went through', () => {
  it('the same access routed twice with no window change is served from the cache', () => {
    const c = PcieCluster.create(threeHosts());
    const r = c.route(A_RC, addr(0x9800_0040), 128);
    assert.equal(c.route({ host: 'A', node: 'rc' }, addr(0x9800_0040), 128), r, 'same issuer by value, same route');
  });

  it('a remap of the first window on the issuer host is seen by the next access', () => {
    const c = PcieCluster.create(threeHosts());
    const slot = c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x3000_0000 });
    assert.deepEqual(c.route(A_RC, addr(0x9c00_0004), 4).target, { kind: 'ram', host: 'B', addr: 0x3000_0004 });
    c.clearWindow('A', slot);
    c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x3100_0000 });
    assert.deepEqual(c.route(A_RC, addr(0x9c00_0004), 4).target, { kind: 'ram', host: 'B', addr: 0x3100_0004 });
  });

  it('a remap on the PEER host of a chain (A → B → C) is seen by the next access', () => {
    const c = PcieCluster.create(threeHosts());
    assert.deepEqual(c.route(A_RC, addr(0x9800_0040), 8).target, { kind: 'ram', host: 'C', addr: 0x0200_0040 });
    assert.equal(c.clearWindow('B', 1), true);
    throwsCode(() => c.route(A_RC, addr(0x9800_0040), 8), 'PV_ERR_PCIE_NO_WINDOW');
    c.setWindow('B', 'bc', { base: 0xa000_0000, size: 0x1000, peerBase: 0x0300_0000 });
    assert.deepEqual(c.route(A_RC, addr(0x9800_0040), 8).target, { kind: 'ram', host: 'C', addr: 0x0300_0040 });
  });

  it('another length at a cached address is checked again against the window edge', () => {
    const c = PcieCluster.create(threeHosts());
    c.setWindow('A', 'ab', { base: 0x9c00_0000, size: 0x1000, peerBase: 0x3000_0000 });
    assert.equal(c.route(A_RC, addr(0x9c00_0f00), 0x100).bytes, 0x100);
    throwsCode(() => c.route(A_RC, addr(0x9c00_0f00), 0x200), 'PV_ERR_PCIE_NO_WINDOW');
  });
});
