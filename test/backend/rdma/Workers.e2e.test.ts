/**
 * The paravirtual transports end to end with real Workers through the Host: dom0 runs
 * RdmaBackendProgram and owns both NICs; two guests on paravirt (then on paravirt-copy) do
 * RDMA WRITE, READ and SEND of several sizes to each other through it and verify every byte.
 * Teardown is checked from dom0's side: when the guests have closed — or one has been killed —
 * the backend holds no connection and no grant mapping when it is shut down.
 */

import assert from 'node:assert/strict';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import type { DeviceAttachment, Transport } from '../../../protocol/Pci.js';
import { VRDMA_DEVICE_TYPE } from '../../../protocol/rdma/pv/PvConstants.js';
import type { PeerResult } from './programs/PvPeer.js';

const BACKEND = new URL('../../../backend/rdma/RdmaBackendProgram.js', import.meta.url);
const PEER = new URL('./programs/PvPeer.js', import.meta.url);

interface BackendResult {
  connects: number;
  disconnects: number;
  halted: number;
  teardownErrors: number;
  connectionsAtShutdown: number;
  liveMappingsAtShutdown: number;
  dataRejects: number;
  nics: string[];
}

function attach(device: string, transport: Transport): DeviceAttachment[] {
  return [{ device, kind: 'rdma-nic', transport, devid: 0, backendDomid: 0 }];
}

/** Waits (bounded, polling) for `pred`. */
async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function newHost(engine: 'inline' | 'dedicated'): Host {
  return new Host({ name: 'pv-e2e', nics: [{ name: 'nic0' }, { name: 'nic1' }], deviceEngine: engine });
}

function startBackend(host: Host) {
  return host.createDomain({
    name: 'dom0',
    domid: 0,
    program: BACKEND,
    memoryBytes: 128 << 20,
    pci: [
      { device: 'nic0', iommu: 'translate' },
      { device: 'nic1', iommu: 'translate' },
    ],
  });
}

const RUNS: Array<[Transport, 'inline' | 'dedicated']> = [
  ['paravirt', 'inline'],
  ['paravirt-copy', 'inline'],
  ['paravirt', 'dedicated'],
  ['paravirt-copy', 'dedicated'],
];

for (const [transport, engine] of RUNS) {
  describe(`${transport} end to end (real Workers, ${engine} device engine)`, function () {
    this.timeout(120_000);

    it('two guests WRITE, READ and SEND through dom0 and every byte arrives; dom0 ends with nothing mapped', async () => {
      const host = newHost(engine);
      try {
        const dom0 = startBackend(host);
        const a = host.createDomain({
          name: 'a',
          domid: 1,
          program: PEER,
          memoryBytes: 32 << 20,
          args: { role: 'a', peer: 2 },
          attachments: attach('nic0', transport),
        });
        const b = host.createDomain({
          name: 'b',
          domid: 2,
          program: PEER,
          memoryBytes: 32 << 20,
          args: { role: 'b', peer: 1 },
          attachments: attach('nic1', transport),
        });
        for (const g of [a, b]) {
          await host.addDevice({ type: VRDMA_DEVICE_TYPE, devid: 0, frontDomid: g.domid, backDomid: dom0.domid });
        }
        const ra = (await a.result).value as PeerResult;
        const rb = (await b.result).value as PeerResult;
        for (const [name, r] of [
          ['a', ra],
          ['b', rb],
        ] as const) {
          assert.equal(r.transport, transport);
          assert.deepEqual(r.failures, [], `guest ${name}: ${r.failures.join('; ')}`);
          assert.ok(r.checks >= 8, `guest ${name} checked its data (${r.checks} checks)`);
        }
        assert.notEqual(ra.portId, rb.portId, 'each guest was served on the NIC it asked for');
        const be = (await host.shutdownDomain(dom0.domid)).value as BackendResult;
        assert.deepEqual(be.nics, ['nic0', 'nic1']);
        assert.equal(be.connects, 2);
        assert.equal(be.disconnects, 2);
        assert.equal(be.connectionsAtShutdown, 0);
        assert.equal(be.liveMappingsAtShutdown, 0, 'every grant the guests gave was unmapped at their teardown');
        assert.equal(be.teardownErrors, 0);
        assert.equal(be.halted, 0);
        assert.equal(be.dataRejects, 0);
      } finally {
        await host.shutdown();
      }
    });
  });
}

describe('paravirt end to end: a guest killed with everything set up leaves nothing mapped in dom0', function () {
  this.timeout(60_000);

  for (const transport of ['paravirt', 'paravirt-copy'] as Transport[]) {
    it(`${transport}: the host crashes the guest; the backend tears its session down`, async () => {
      const host = newHost('inline');
      try {
        const dom0 = startBackend(host);
        const victim = host.createDomain({
          name: 'victim',
          domid: 1,
          program: PEER,
          memoryBytes: 32 << 20,
          args: { role: 'victim' },
          attachments: attach('nic0', transport),
        });
        const died = victim.result.catch(() => 'crashed');
        await host.addDevice({ type: VRDMA_DEVICE_TYPE, devid: 0, frontDomid: victim.domid, backDomid: dom0.domid });
        await until(
          async () => (await host.toolstack.tryRead(`/local/domain/${victim.domid}/data/ready`)) === '1',
          'the victim to set up its QP, CQ and 3 MiB MR',
        );
        await host.crashDomain(victim.domid);
        assert.equal(await died, 'crashed');
        await until(() => dom0.console.some((l) => /dom1\/0 disconnected/.test(l)), 'the backend to disconnect');
        const be = (await host.shutdownDomain(dom0.domid)).value as BackendResult;
        assert.equal(be.connects, 1);
        assert.equal(be.disconnects, 1);
        assert.equal(be.connectionsAtShutdown, 0);
        assert.equal(be.liveMappingsAtShutdown, 0, "the dead guest's MR, CQ and ring pages were all unmapped");
        assert.equal(be.teardownErrors, 0, dom0.console.join('\n'));
      } finally {
        await host.shutdown();
      }
    });
  }
});
