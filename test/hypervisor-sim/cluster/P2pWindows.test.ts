/**
 * Cross-host P2P between lent accelerators (P2pWindows.ts, Cluster.mapP2p) and the ping-pong
 * built on it (bench/accel/PingPong.ts), checked on counts only:
 *  - the route of a mapping crosses 0 NTBs within one lender, 1 over a direct link, 2 through
 *    the borrower; a store through it lands in the target's memory and is counted;
 *  - only mapped pairs resolve; unmapping, or the end of either lease, makes the next store
 *    fault and closes the windows;
 *  - the ping-pong's trips cross 0 / 1 / 2 NTBs per one-way trip for those placements.
 */

import assert from 'node:assert/strict';
import { runAccelPingPong } from '../../../bench/accel/PingPong.js';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { attachLentAccel } from '../../../hypervisor-sim/cluster/LentAccel.js';
import { hostPath } from '../../../hypervisor-sim/cluster/P2pWindows.js';
import type { AccelDevice } from '../../../hypervisor-sim/devices/accel/AccelDevice.js';
import { storePeer32 } from '../../../hypervisor-sim/devices/accel/PeerSignal.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';

const MEM = 1 << 20;

async function setup(links?: [string, string][]): Promise<{ cluster: Cluster; h: Record<string, LentHandle> }> {
  const cluster = new Cluster({
    hosts: [
      {
        name: 'A',
        accels: [
          { name: 'accel0', memBytes: MEM },
          { name: 'accel1', memBytes: MEM },
        ],
      },
      { name: 'B' },
      { name: 'C', accels: [{ name: 'accel0', memBytes: MEM }] },
    ],
    links,
  });
  const h: Record<string, LentHandle> = {};
  for (const id of [
    await cluster.lend('A', 'accel0'),
    await cluster.lend('A', 'accel1'),
    await cluster.lend('C', 'accel0'),
  ]) {
    h[id] = await cluster.borrow(id, 'B');
  }
  return { cluster, h };
}

/** The accelerator of `handle` attached in this thread (as its owner's thread would). */
function attach(cluster: Cluster, handle: LentHandle): AccelDevice {
  const data = cluster.lending('B').data(handle.name);
  if (data.kind !== 'accel') throw new Error('not an accelerator');
  return attachLentAccel(data, new MemoryDirectory()).dev;
}

function word(cluster: Cluster, host: string, dev: string, offset: number): number {
  return new Int32Array(cluster.host(host).devices.accelData(dev).state.mem)[offset >> 2];
}

describe('cross-host P2P mappings between lent accelerators', function () {
  this.timeout(60_000);

  it('routes cross 0 NTBs within one lender, 1 over the A–C link, 2 through the borrower', async () => {
    for (const [links, want] of [
      [undefined, 1],
      [
        [
          ['A', 'B'],
          ['B', 'C'],
        ],
        2,
      ],
    ] as const) {
      const { cluster, h } = await setup(links as [string, string][] | undefined);
      try {
        const local = cluster.mapP2p(h['accel0@A'], h['accel1@A']);
        const remote = cluster.mapP2p(h['accel0@A'], h['accel0@C']);
        assert.deepEqual([local.ntbCrossings, local.linkHops, local.hosts], [0, 2, ['A']]);
        assert.equal(remote.ntbCrossings, want);
        assert.equal(remote.linkHops, 2 + 2 * want);
        assert.deepEqual(remote.hosts, hostPath(cluster.fabric, 'A', 'C'));
        const dev = attach(cluster, h['accel0@A']);
        assert.equal(storePeer32(dev, local.addr + 64, 111), true);
        assert.equal(storePeer32(dev, remote.addr + 64, 222), true);
        assert.equal(word(cluster, 'A', 'accel1', 64), 111);
        assert.equal(word(cluster, 'C', 'accel0', 64), 222);
        const s = h['accel0@A'].stats.snapshot();
        assert.deepEqual([s.p2pWrites, s.p2pNtbCrossings, s.p2pLinkHops], [2, want, 2 + 2 + 2 * want]);
      } finally {
        await cluster.shutdown();
      }
    }
  });

  it('only a mapped pair resolves; unmapping makes the next store fault and closes the windows', async () => {
    const { cluster, h } = await setup();
    try {
      const m = cluster.mapP2p(h['accel0@A'], h['accel0@C']);
      const pong = attach(cluster, h['accel0@C']);
      // accel0@C was given no mapping back: the same bus address means nothing on C's side.
      assert.equal(storePeer32(pong, m.addr, 1), false);
      const dev = attach(cluster, h['accel0@A']);
      const windows = cluster.fabric.windows('A').length;
      assert.equal(storePeer32(dev, m.addr, 5), true);
      assert.equal(cluster.unmapP2p(m), true);
      assert.equal(cluster.unmapP2p(m), false);
      assert.equal(cluster.fabric.windows('A').length, windows - 1);
      assert.equal(storePeer32(dev, m.addr, 6), false);
      // Same lender: no window to close, the permission table alone refuses it.
      const local = cluster.mapP2p(h['accel0@A'], h['accel1@A']);
      cluster.unmapP2p(local);
      assert.equal(storePeer32(dev, local.addr, 7), false);
      assert.equal(word(cluster, 'A', 'accel1', 0), 0);
      assert.ok(h['accel0@A'].stats.snapshot().dmaFaults >= 2);
    } finally {
      await cluster.shutdown();
    }
  });

  it('the end of the target’s lease ends the mapping; P2P needs two accelerators of one borrower', async () => {
    const { cluster, h } = await setup();
    try {
      const m = cluster.mapP2p(h['accel0@A'], h['accel1@A']);
      const dev = attach(cluster, h['accel0@A']);
      assert.equal(storePeer32(dev, m.addr, 9), true);
      await cluster.giveBack(h['accel1@A']);
      assert.equal(storePeer32(dev, m.addr, 10), false);
      assert.equal(cluster.unmapP2p(m), false, 'already gone with the lease');
      assert.throws(() => cluster.mapP2p(h['accel0@A'], h['accel1@A']), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      assert.throws(() => cluster.mapP2p(h['accel0@A'], h['accel0@A']), { code: 'PV_ERR_CONFIG' });
      const byC = await cluster.borrow('accel1@A', 'C');
      assert.throws(() => cluster.mapP2p(h['accel0@A'], byC), { code: 'PV_ERR_LEND_NOT_HOLDER' });
    } finally {
      await cluster.shutdown();
    }
  });
});

describe('accelerator ping-pong: NTB crossings per trip by placement (counts, never time)', function () {
  this.timeout(120_000);

  for (const [lenders, route, ntb, links] of [
    [1, 'direct', 0, 2],
    [2, 'direct', 1, 4],
    [2, 'via-borrower', 2, 6],
  ] as const) {
    it(`${lenders} lender(s)${lenders === 2 ? `, ${route}` : ''}: ${ntb} NTB crossings and ${links} links per trip`, async () => {
      for (const threads of [1, 2] as const) {
        const r = await runAccelPingPong({ lenders, route, profile: 'ideal', iters: 50, warmup: 5, threads });
        assert.equal(r.rttNs.samples.length, 50);
        assert.equal(r.ntbCrossingsPerTrip, ntb);
        assert.equal(r.linkHopsPerTrip, links);
        assert.equal(r.modelTripNs, 0, 'ideal');
      }
    });
  }

  it('pcie3-x8-ntb prices the two-lender trip above the one-lender trip by one NTB and two links', async () => {
    const one = await runAccelPingPong({ lenders: 1, profile: 'pcie3-x8-ntb', iters: 5, warmup: 0 });
    const two = await runAccelPingPong({ lenders: 2, profile: 'pcie3-x8-ntb', iters: 5, warmup: 0 });
    assert.equal(two.ntbCrossingsPerTrip - one.ntbCrossingsPerTrip, 1);
    assert.ok(
      Math.abs(two.modelTripNs - one.modelTripNs - (360 + 2 * 100)) < 1,
      `${two.modelTripNs - one.modelTripNs}`,
    );
  });
});
