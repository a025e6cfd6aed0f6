import assert from 'node:assert/strict';
import { PcieCluster } from '../../../hypervisor-sim/pcie/PcieCluster.js';
import { MMIO_ALIGN, validateCluster } from '../../../hypervisor-sim/pcie/Validate.js';
import { PvError } from '../../../protocol/errors.js';
import { GIB, mutable, threeHosts } from './helpers/Clusters.js';

/** Asserts validating `spec` fails with PV_ERR_PCIE_BAD_TOPOLOGY whose message starts with `field:`. */
// biome-ignore lint/suspicious/noExplicitAny: the broken descriptions are not ClusterSpecs.
function refuses(spec: any, field: string, re?: RegExp): void {
  assert.throws(
    () => PcieCluster.create(spec),
    (e: unknown) => {
      assert.ok(e instanceof PvError);
      assert.equal(e.code, 'PV_ERR_PCIE_BAD_TOPOLOGY');
      assert.ok(e.message.startsWith(`${field}: `), `message names ${field}: ${e.message}`);
      if (re) assert.match(e.message, re);
      return true;
    },
  );
}

describe('pcie topology: validation names the offending field', () => {
  it('the reference cluster is valid', () => {
    assert.doesNotThrow(() => PcieCluster.create(threeHosts()));
  });

  it('a dangling link names its end', () => {
    const s = mutable();
    s.hosts[0].links[1].b = 'nvme9';
    refuses(s, 'hosts[0].links[1].b', /dangling/);
  });

  it('a link closing a cycle is refused (PCIe is a tree)', () => {
    const s = mutable();
    s.hosts[0].links.push({ a: 'nvme0', b: 'rc' });
    refuses(s, 'hosts[0].links[4]', /cycle/);
    const t = mutable();
    t.hosts[1].links.push({ a: 'sw1', b: 'rc' });
    refuses(t, 'hosts[1].links[4]', /cycle/);
  });

  it('overlapping BARs name the BAR and what it overlaps', () => {
    const s = mutable();
    s.hosts[0].nodes[3].bars[0].base = 0x8000_0000;
    refuses(s, 'hosts[0].nodes[3].bars[0].base', /overlaps hosts\[0\]\.nodes\[2\]\.bars\[0\]/);
  });

  it('a BAR inside RAM, misaligned, or not a power of two is refused', () => {
    const s = mutable();
    s.hosts[0].nodes[2].bars[0].base = 0x1000_0000;
    refuses(s, 'hosts[0].nodes[2].bars[0].base', /overlaps hosts\[0\]\.ramBytes/);
    const t = mutable();
    t.hosts[0].nodes[2].bars[0].base = 0x8000_1000;
    refuses(t, 'hosts[0].nodes[2].bars[0].base', /aligned/);
    const u = mutable();
    u.hosts[0].nodes[2].bars[0].size = 0x3000;
    refuses(u, 'hosts[0].nodes[2].bars[0].size');
  });

  it('overlapping windows, and a window leaving its aperture, name the window', () => {
    const s = mutable();
    s.ntbs[0].sides[0].windows[1].base = 0x9000_1000;
    refuses(s, 'ntbs[0].sides[0].windows[1]', /overlaps ntbs\[0\]\.sides\[0\]\.windows\[0\]/);
    const t = mutable();
    t.ntbs[0].sides[1].windows[0].base = 0x8f00_0000;
    refuses(t, 'ntbs[0].sides[1].windows[0]', /leaves the aperture/);
  });

  it('hosts: duplicate names, bad RAM, no or two root complexes', () => {
    const s = mutable();
    s.hosts[1].name = 'A';
    refuses(s, 'hosts[1].name', /duplicate/);
    const t = mutable();
    t.hosts[2].ramBytes = 0;
    refuses(t, 'hosts[2].ramBytes');
    const u = mutable();
    u.hosts[2].nodes[0].kind = 'switch';
    refuses(u, 'hosts[2].nodes', /exactly one 'rc'/);
    refuses({ hosts: [], ntbs: [] }, 'hosts');
  });

  it('nodes: duplicate ids, unknown kinds, bad config space, unreachable nodes, non-leaf endpoints', () => {
    const s = mutable();
    s.hosts[0].nodes[3].id = 'nvme0';
    refuses(s, 'hosts[0].nodes[3].id', /duplicate/);
    const t = mutable();
    t.hosts[0].nodes[1].kind = 'bridge';
    refuses(t, 'hosts[0].nodes[1].kind');
    const u = mutable();
    u.hosts[0].nodes[2].config.vendorId = 0x1_0000;
    refuses(u, 'hosts[0].nodes[2].config.vendorId');
    const v = mutable();
    v.hosts[0].links.splice(2, 1);
    refuses(v, 'hosts[0].nodes[3]', /not connected/);
    const w = mutable();
    w.hosts[0].links[2] = { a: 'nvme0', b: 'nic0' };
    refuses(w, 'hosts[0].nodes[2]', /must be a leaf/);
  });

  it('link parameters are checked', () => {
    const s = mutable();
    s.hosts[0].links[0].maxPayload = 100;
    refuses(s, 'hosts[0].links[0].maxPayload');
    const t = mutable();
    t.hosts[0].links[0].bytesPerNs = 0;
    refuses(t, 'hosts[0].links[0].bytesPerNs');
  });

  it('NTBs: both sides on one host, a side that is no adapter, an adapter used twice', () => {
    const s = mutable();
    s.ntbs[1].sides[1] = { host: 'B', node: 'ntbB1' };
    refuses(s, 'ntbs[1].sides[1].host', /same host/);
    const t = mutable();
    t.ntbs[1].sides[1].node = 'rc';
    refuses(t, 'ntbs[1].sides[1].node', /not an ntb adapter/);
    const u = mutable();
    u.ntbs[1].sides[0].node = 'ntbB1';
    refuses(u, 'ntbs[1].sides[0].node', /already belongs to NTB 'ab'/);
    const v = mutable();
    v.ntbs[1].sides[1].host = 'Q';
    refuses(v, 'ntbs[1].sides[1].host');
  });

  it('more initial windows than a host table holds is refused', () => {
    refuses({ ...threeHosts(), maxWindowsPerHost: 2 }, 'maxWindowsPerHost', /host 'A' starts with 3/);
  });
});

describe('pcie topology: enumeration and the JSON description', () => {
  it('BARs without a base are assigned naturally aligned above RAM, around fixed ones', () => {
    const s = mutable();
    s.hosts[0].nodes[2].bars = [{ size: 0x4000 }, { size: 0x10_0000 }];
    s.hosts[0].nodes[3].bars = [{ size: 0x1000, base: GIB }];
    const norm = validateCluster(s);
    const a = norm.hosts[0];
    assert.equal(a.mmioBase, Math.ceil(GIB / MMIO_ALIGN) * MMIO_ALIGN);
    const nvme = a.nodes[2];
    assert.ok(nvme.kind === 'endpoint');
    // The fixed 4 KiB BAR of nic0 sits at GIB: the 16 KiB BAR goes after it, aligned, then 1 MiB.
    assert.deepEqual(nvme.bars, [
      { size: 0x4000, base: GIB + 0x4000 },
      { size: 0x10_0000, base: GIB + 0x10_0000 },
    ]);
    const c = PcieCluster.create(s);
    assert.deepEqual(c.route({ host: 'A', node: 'rc' }, (GIB + 0x10_0008) as never, 4).target, {
      kind: 'bar',
      host: 'A',
      endpoint: 'nvme0',
      bar: 1,
      offset: 8,
    });
  });

  it('the normalised description is plain JSON and validates to itself', () => {
    const norm = validateCluster(threeHosts());
    const copy = JSON.parse(JSON.stringify(norm));
    assert.deepEqual(copy, norm);
    assert.deepEqual(validateCluster(copy), norm);
    assert.equal(norm.maxNtbCrossings, 4);
    assert.equal(norm.maxWindowsPerHost, 64);
  });
});
