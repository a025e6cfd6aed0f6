/**
 * `pvio top` sees virtio-rdma: both ends of the control and data virtqueues publish their
 * counters to the host's monitor while the device is open (kinds virtio-ctrl / virtio-data, the
 * guest's end `front`, dom0's `back`), with the chains each end counted, and free their records
 * when the device closes: a guest that closes and opens again never shows more than one record
 * per queue end.
 */

import assert from 'node:assert/strict';
import type { Host } from '../../../../hypervisor-sim/domain/Host.js';
import { runScenario } from '../../../../hypervisor-sim/scenario/Scenario.js';
import { RingCounter } from '../../../../protocol/ring/RingCounters.js';

const PROGRAM = new URL('./programs/MonitoredVirtioGuest.js', import.meta.url);

describe('virtio-rdma queues in the monitor (pvio top)', function () {
  this.timeout(60_000);

  it('both ends of both queues are published with their counts while open, and released at close', async () => {
    let host: Host | undefined;
    let mostAtOnce = 0;
    const seen = new Map<string, { requests: number; responses: number; owner: number; peer: number }>();
    const timer = setInterval(() => {
      const live = (host?.monitor.liveRings() ?? []).filter((r) => r.kind.startsWith('virtio-'));
      mostAtOnce = Math.max(mostAtOnce, live.length);
      for (const r of live) {
        const key = `${r.kind} ${r.end}`;
        const prev = seen.get(key);
        const requests = r.counters[RingCounter.REQUESTS];
        if (prev === undefined || requests >= prev.requests) {
          seen.set(key, { requests, responses: r.counters[RingCounter.RESPONSES], owner: r.owner, peer: r.peer });
        }
      }
    }, 10);
    let left: number;
    try {
      const result = await runScenario(
        {
          host: { nics: 1 },
          guests: [{ name: 'g', program: PROGRAM, memoryMiB: 32, devices: [{ device: 'nic0', transport: 'virtio' }] }],
        },
        {
          onHost: (h) => {
            host = h;
          },
        },
      );
      assert.deepEqual(result.guests.g.value, { ok: 64, problem: undefined });
      left = (host as Host).monitor.liveRings().filter((r) => r.kind.startsWith('virtio-')).length;
    } finally {
      clearInterval(timer);
    }
    assert.deepEqual([...seen.keys()].sort(), [
      'virtio-ctrl back',
      'virtio-ctrl front',
      'virtio-data back',
      'virtio-data front',
    ]);
    const g = 1;
    const dom0 = 0;
    for (const end of ['front', 'back'] as const) {
      const d = seen.get(`virtio-data ${end}`);
      assert.ok(d !== undefined && d.requests >= 32, `data ${end}: ${d?.requests} chains (≥ 32 WRs were posted)`);
      assert.equal(d.owner, end === 'front' ? g : dom0);
      assert.equal(d.peer, end === 'front' ? dom0 : g);
      const c = seen.get(`virtio-ctrl ${end}`);
      // At least: queryPort, allocPd, regMr, createCq, createQp, and the modifyQp of the connect.
      assert.ok(c !== undefined && c.requests >= 6, `ctrl ${end}: ${c?.requests}`);
    }
    const back = seen.get('virtio-data back');
    assert.ok(back !== undefined && back.responses >= 32, 'dom0 used every chain it took');
    assert.equal(mostAtOnce, 4, 'the first session released its four records before the second claimed four');
    assert.equal(left, 0, 'no virtio record outlives the device');
  });
});
