import assert from 'node:assert/strict';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import { TRANSPORTS } from '../../hypervisor-sim/scenario/ScenarioSpec.js';

const PROGRAM = new URL('../../examples/HelloRdma.js', import.meta.url);

describe('example: HelloRdma runs unchanged over every transport and prints the same result', function () {
  this.timeout(120_000);

  it('same console lines and verified results over every transport (paravirt, paravirt-copy, virtio, virtio-packed, passthrough, native, tcp)', async () => {
    const seen = new Map<string, string>();
    for (const transport of TRANSPORTS) {
      const device = (i: number) => (transport === 'tcp' ? 'tcp0' : `nic${i}`);
      const r = await runScenario({
        guests: [
          { name: 'server', program: PROGRAM, devices: [{ device: device(0), transport }] },
          { name: 'client', program: PROGRAM, devices: [{ device: device(1), transport }] },
        ],
      });
      for (const g of ['server', 'client']) {
        assert.equal((r.guests[g].value as { verified: boolean }).verified, true, `${g} over ${transport}`);
      }
      const nic = Object.values(r.counters.nics).reduce((n, m) => n + m.wrs, 0);
      if (transport === 'tcp') assert.equal(nic, 0, 'tcp moves no byte through a NIC');
      else assert.ok(nic >= 3, `the NICs executed the WRs over ${transport} (${nic})`);
      seen.set(transport, [...r.guests.server.console, ...r.guests.client.console].join('\n'));
    }
    const outputs = new Set(seen.values());
    assert.equal(outputs.size, 1, `outputs differ: ${[...seen].map(([t, o]) => `${t}: ${o}`).join(' | ')}`);
    assert.match([...outputs][0], /server: received 1048576 bytes by RDMA WRITE/);
  });
});
