import assert from 'node:assert/strict';
import { runScenario, type ScenarioResult } from '../../../hypervisor-sim/scenario/Scenario.js';
import { type HostSpec, validateScenario } from '../../../hypervisor-sim/scenario/ScenarioSpec.js';
import type { Transport } from '../../../protocol/Pci.js';
import { Stage } from '../../../protocol/stage/StageLedger.js';

const PERFTEST = new URL('../../../bench/programs/PerftestGuest.js', import.meta.url);
const WINDOW_PAIR = new URL('./programs/WindowPair.js', import.meta.url);

const LAT = { test: 'write_lat', size: 64, iters: 300 };
const BW = { test: 'write_bw', size: 64 << 10, iters: 100 };

/** A perftest pair (server on nic0, client on nic1 — or two tcp endpoints) over `transport`. */
function pair(transport: Transport, args: Record<string, unknown>, host: HostSpec = {}): Promise<ScenarioResult> {
  const dev = (i: number) => (transport === 'tcp' ? 'tcp0' : `nic${i}`);
  const guest = (name: string, i: number) => ({
    name,
    program: PERFTEST,
    memoryMiB: 16,
    args: { ...args, tag: `${transport}-${String(args.test)}` },
    devices: [{ device: dev(i), transport }],
  });
  return runScenario({ host: { instrumentStages: true, ...host }, guests: [guest('server', 0), guest('client', 1)] });
}

/** Every ledger is Stage.COUNT finite, non-negative numbers. */
function wellFormed(ns: readonly number[] | undefined, who: string): readonly number[] {
  assert.ok(ns !== undefined, `${who} returned its stages`);
  assert.equal(ns.length, Stage.COUNT, `${who}: one entry per stage`);
  for (const v of ns) assert.ok(Number.isFinite(v) && v >= 0, `${who}: ${v} is a non-negative time`);
  return ns;
}

function ledgers(r: ScenarioResult) {
  return {
    client: wellFormed(r.guests.client.stagesNs, 'client'),
    server: wellFormed(r.guests.server.stagesNs, 'server'),
    dom0: wellFormed(r.backend.stagesNs, 'dom0'),
    threads: (r.deviceThreads ?? []).map((t) => ({ name: t.name, ns: wellFormed(t.stagesNs, t.name) })),
  };
}

/** DEVICE time summed over every thread of the run. */
function deviceNs(r: ScenarioResult): number {
  const l = ledgers(r);
  return [l.client, l.server, l.dom0, ...l.threads.map((t) => t.ns)].reduce((s, ns) => s + ns[Stage.DEVICE], 0);
}

describe('stages: every thread of an instrumented run returns a well-formed ledger', function () {
  this.timeout(120_000);

  for (const [name, args] of [
    ['write_lat 64 B', LAT],
    ['write_bw 64 KiB', BW],
  ] as const) {
    it(`paravirt ${name}: guests spend RING time and the NIC runs as DEVICE in dom0`, async () => {
      const r = await pair('paravirt', args);
      const l = ledgers(r);
      assert.ok(l.client[Stage.RING] > 0, 'client ring + notify');
      // The window is the client's measured loop; a write_bw server is passive inside it.
      if (args === LAT) assert.ok(l.server[Stage.RING] > 0, 'server ring + notify');
      assert.ok(l.dom0[Stage.RING] > 0, 'dom0 takes requests off the rings');
      assert.ok(l.dom0[Stage.DEVICE] > 0, 'the inline engine runs in dom0 (doorbells)');
      // The guests never drive the NIC: their doorbells are rung by the backend.
      assert.equal(l.client[Stage.DEVICE] + l.server[Stage.DEVICE], 0);
      assert.equal(r.deviceThreads, undefined, 'inline engine: no device thread');
    });

    it(`paravirt-copy ${name}: dom0 spends GRANT time copying through its bounce buffers`, async () => {
      const r = await pair('paravirt-copy', args);
      const l = ledgers(r);
      assert.ok(l.dom0[Stage.GRANT] > 0, 'grant copies (and MR grant maps) in dom0');
      assert.ok(l.client[Stage.RING] > 0, 'the client uses the rings');
      if (args === LAT) assert.ok(l.server[Stage.RING] > 0, 'the ping-pong server uses the rings');
      assert.ok(deviceNs(r) > 0, 'the NIC did work');
    });

    it(`native ${name}: no ring or grant anywhere; the guests run the NIC themselves`, async () => {
      const r = await pair('native', args);
      const l = ledgers(r);
      assert.equal(l.dom0[Stage.RING], 0, 'dom0 serves no ring');
      assert.equal(l.dom0[Stage.GRANT], 0, 'dom0 maps and copies nothing');
      assert.equal(l.client[Stage.RING] + l.server[Stage.RING], 0);
      assert.ok(l.client[Stage.DEVICE] > 0, 'the client rings doorbells that run the engine inline');
    });
  }

  it('passthrough on the ib-edr wire: the modeled wire is FABRIC, taken out of DEVICE', async () => {
    const r = await pair('passthrough', BW, { wire: 'ib-edr' });
    const l = ledgers(r);
    assert.ok(l.client[Stage.FABRIC] > 0, 'the requester waits for the wire');
    assert.ok(l.client[Stage.DEVICE] > 0);
    assert.equal(l.dom0[Stage.RING] + l.dom0[Stage.GRANT], 0);
  });

  it('a dedicated device engine reports its own thread, whose work is DEVICE (never HOME)', async () => {
    const r = await pair('paravirt', LAT, { deviceEngine: 'dedicated' });
    const l = ledgers(r);
    const engine = l.threads.find((t) => t.name === 'device-engine');
    assert.ok(engine !== undefined, 'the device thread is reported');
    assert.ok(engine.ns[Stage.DEVICE] > 0, 'it executed the WRs');
    assert.equal(engine.ns[Stage.HOME], 0, 'its base stage is DEVICE');
    assert.ok(r.deviceThreads?.[0]?.cpuNs !== undefined);
  });

  it('tcp: each guest files its NIC thread, which spends DEVICE and FABRIC (socket writes)', async () => {
    const r = await pair('tcp', LAT);
    const l = ledgers(r);
    const nics = l.threads.filter((t) => t.name.startsWith('tcp-nic '));
    assert.equal(nics.length, 2, 'one NIC thread per guest');
    for (const t of nics) {
      assert.ok(t.ns[Stage.DEVICE] > 0, `${t.name} did NIC work`);
      assert.ok(t.ns[Stage.FABRIC] > 0, `${t.name} wrote to its socket`);
      assert.equal(t.ns[Stage.HOME], 0);
    }
    assert.ok(l.client[Stage.RING] > 0, 'posting hands WQEs to the NIC thread (publish + bell)');
    assert.equal(l.dom0[Stage.RING] + l.dom0[Stage.GRANT] + l.dom0[Stage.DEVICE], 0, 'dom0 is not involved');
  });
});

describe('stages: measuring runs carry no ledger', function () {
  this.timeout(120_000);

  it('host.instrumentStages must be a boolean (named in the error)', () => {
    assert.throws(
      () =>
        validateScenario({
          host: { instrumentStages: 'yes' as unknown as boolean },
          guests: [{ name: 'a', program: PERFTEST }],
        }),
      (err: { code?: string; message: string }) =>
        err.code === 'PV_ERR_CONFIG' && err.message.startsWith('host.instrumentStages: '),
    );
  });

  it('with instrumentStages off no stagesNs is returned, by domains or device threads', async () => {
    const r = await pair('tcp', LAT, { instrumentStages: false });
    assert.equal(r.guests.client.stagesNs, undefined);
    assert.equal(r.guests.server.stagesNs, undefined);
    assert.equal(r.backend.stagesNs, undefined);
    const threads = r.deviceThreads ?? [];
    assert.equal(threads.length, 2, 'the tcp NIC threads still report their CPU time');
    for (const t of threads) {
      assert.equal(t.stagesNs, undefined);
      assert.ok(t.cpuNs !== 0);
    }
  });
});

describe('stages: the host window counts only what runs between its open and its close', function () {
  this.timeout(60_000);

  it('setup before the open and work after the close are dropped in every domain', async () => {
    const r = await runScenario({
      host: { instrumentStages: true, nics: 0 },
      guests: [
        { name: 'opener', program: WINDOW_PAIR, memoryMiB: 8 },
        { name: 'follower', program: WINDOW_PAIR, memoryMiB: 8 },
      ],
    });
    const opener = wellFormed(r.guests.opener.stagesNs, 'opener');
    const follower = wellFormed(r.guests.follower.stagesNs, 'follower');
    assert.deepEqual(r.guests.opener.value, { role: 'opener' });
    assert.equal(opener[Stage.GRANT], 0, "the opener's setup section is outside the window");
    assert.equal(follower[Stage.GRANT], 0, "the follower's setup section is outside the window");
    // Only a window shared through the host reaches the follower's thread (a private one would
    // never open there, and its GRANT section would count).
    assert.ok(follower[Stage.RING] > 0, 'the section inside the window counts in another thread');
    assert.equal(follower[Stage.FABRIC], 0, 'the section after the close is dropped');
  });
});
