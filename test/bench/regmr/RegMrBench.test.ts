/**
 * `pvio reg-mr-bench` (bench/regmr): the same guest program registers memory over each
 * transport, the rows are real measurements of this run, and the two split designs really take
 * their two paths — grants per page for paravirt, none at all for virtio (dom0's monitor record
 * counts its grant maps).
 */

import assert from 'node:assert/strict';
import { formatRegMr, regMrMain, runRegMrBench } from '../../../bench/regmr/RegMrBench.js';
import { runScenario } from '../../../hypervisor-sim/scenario/Scenario.js';
import type { Transport } from '../../../protocol/Pci.js';

const GUEST = new URL('../../../bench/regmr/RegMrGuest.js', import.meta.url);

describe('pvio reg-mr-bench: memory registration per transport', function () {
  this.timeout(120_000);

  it('measures every transport and size it is given, and prints each beside the native floor', async () => {
    const rows = await runRegMrBench({
      transports: ['native', 'paravirt', 'virtio'],
      sizes: [4096, 1 << 20],
      iters: 5,
    });
    assert.deepEqual(
      rows.map((r) => `${r.transport} ${r.size}`),
      ['native 4096', 'native 1048576', 'paravirt 4096', 'paravirt 1048576', 'virtio 4096', 'virtio 1048576'],
    );
    for (const r of rows) {
      assert.equal(r.reg.n, 5);
      assert.ok(r.reg.median > 0 && Number.isFinite(r.reg.median), `${r.transport} ${r.size} reg`);
      assert.ok(r.dereg.median > 0 && Number.isFinite(r.dereg.median), `${r.transport} ${r.size} dereg`);
    }
    const text = formatRegMr(rows);
    assert.match(text, /1 MiB \(256 pages\):/);
    assert.match(text, /\n {2}native +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +1\.00\n/, 'native is its own floor');
  });

  it('paravirt registers by granting every page (dom0 grant-maps them); virtio by address, with no grant at all', async () => {
    const maps = async (transport: Transport): Promise<{ dom0Maps: number; guestNotifies: number }> => {
      const r = await runScenario({
        host: { nics: 1 },
        guests: [
          {
            name: 'guest',
            program: GUEST,
            memoryMiB: 40,
            devices: [{ device: 'nic0', transport }],
            args: { sizes: [1 << 20], iters: 2, warmup: 0 },
          },
        ],
      });
      return {
        dom0Maps: r.backend.events?.grantMaps ?? Number.NaN,
        guestNotifies: r.guests.guest.events?.notifies ?? Number.NaN,
      };
    };
    const pv = await maps('paravirt');
    const vio = await maps('virtio');
    // Two registrations of 256 pages: at least 2 × 256 page maps (plus indirect pages and rings).
    assert.ok(pv.dom0Maps >= 512, `paravirt dom0 grant maps ${pv.dom0Maps}`);
    assert.equal(vio.dom0Maps, 0, 'virtio-rdma maps guest memory without a single grant');
    assert.ok(pv.guestNotifies > 0 && vio.guestNotifies > 0, 'both guests notified dom0 (a vrdma push, a virtio trap)');
  });

  it('refuses a transport without memory registration, a size it cannot parse, and a bad count, saying what to pass', async () => {
    await assert.rejects(regMrMain(['--transports', 'tcp']), { code: 'PV_ERR_INVALID_ARG', message: /choose from/ });
    await assert.rejects(regMrMain(['--sizes', '12X']), { code: 'PV_ERR_INVALID_ARG', message: /64K, 16M/ });
    await assert.rejects(regMrMain(['-n', '0']), { code: 'PV_ERR_INVALID_ARG' });
  });
});
