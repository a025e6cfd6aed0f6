/**
 * The RDMA conformance suite over every transport: the same guest program
 * (programs/ConformanceGuest.ts) runs in two real guest Workers — and, for the paravirtual
 * transports, against the real backend in dom0 — and every case must pass on both sides.
 */

import assert from 'node:assert/strict';
import { runScenario, type ScenarioResult } from '../../../hypervisor-sim/scenario/Scenario.js';
import type { GuestDeviceSpec } from '../../../hypervisor-sim/scenario/ScenarioSpec.js';
import type { Transport } from '../../../protocol/Pci.js';
import { CASE_NAMES } from './programs/ConformanceGuest.js';

const PROGRAM = new URL('./programs/ConformanceGuest.js', import.meta.url);

interface GuestOut {
  transport: string;
  cases: Record<string, string>;
}

function devicesFor(transport: Transport): [GuestDeviceSpec, GuestDeviceSpec] {
  if (transport === 'tcp')
    return [
      { device: 'tcp0', transport },
      { device: 'tcp0', transport },
    ];
  return [
    { device: 'nic0', transport },
    { device: 'nic1', transport },
  ];
}

function suite(transport: Transport, engine: 'inline' | 'dedicated', only?: readonly string[]): void {
  describe(`rdma conformance over ${transport} (${engine} device engine)`, function () {
    this.timeout(300_000);
    let result: ScenarioResult;

    before(async () => {
      const [da, db] = devicesFor(transport);
      result = await runScenario({
        host: { nics: 2, deviceEngine: engine },
        guests: [
          { name: 'a', program: PROGRAM, memoryMiB: 48, devices: [da], args: { only } },
          { name: 'b', program: PROGRAM, memoryMiB: 48, devices: [db], args: { only } },
        ],
      });
    });

    it('both guests ran over the transport they were given', () => {
      for (const g of ['a', 'b']) assert.equal((result.guests[g].value as GuestOut).transport, transport);
    });

    for (const name of only ?? CASE_NAMES) {
      it(name, () => {
        for (const g of ['a', 'b']) {
          const cases = (result.guests[g].value as GuestOut).cases;
          assert.equal(cases[name], 'ok', `guest ${g}: ${cases[name] ?? 'not reached (an earlier case failed)'}`);
        }
      });
    }
  });
}

for (const t of ['paravirt', 'paravirt-copy', 'virtio', 'virtio-packed', 'passthrough', 'native', 'tcp'] as const) {
  suite(t, 'inline');
}

// The same device model on its own device thread (DESIGN §4): a subset that moves data both ways.
const DEDICATED = [
  'RDMA_WRITE delivers every size from 1 B to 8 MiB, odd sizes included',
  'RDMA_READ returns every size from 1 B to 8 MiB',
  'SEND lands in the posted receive for every size, with byte_len',
  'a forged rkey fails with REM_ACCESS_ERR',
];
suite('paravirt', 'dedicated', DEDICATED);
suite('passthrough', 'dedicated', DEDICATED);
