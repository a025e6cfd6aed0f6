/**
 * The virtio-rdma device model against hostile and careless guests (real guest Workers, the real
 * dom0 backend program): every guest-physical address a guest names is its own memory or is
 * refused; a chain of the wrong shape is used with length 0; a queue the guest breaks needs a
 * reset and costs nobody else a request; and a device whose guest reset or vanished holds no
 * mapping afterwards. Each `describe` runs one scenario in `before`; its `it`s judge what the
 * guests returned (programs/) and what dom0 counted (`result.backend.value`).
 */

import assert from 'node:assert/strict';
import type { VirtioRdmaBackendStats } from '../../../../backend/rdma/virtio/VirtioRdmaBackend.js';
import { runScenario, type ScenarioResult } from '../../../../hypervisor-sim/scenario/Scenario.js';
import type { GuestSpec } from '../../../../hypervisor-sim/scenario/ScenarioSpec.js';
import { VIRTIO_STATUS_DEVICE_NEEDS_RESET } from '../../../../protocol/virtio/DeviceStatus.js';
import type { BreakOut, RefuseOut } from './programs/HostileVirtioGuest.js';
import type { LeakOut, WorkloadOut } from './programs/NeighbourVirtioGuest.js';

const HOSTILE = new URL('./programs/HostileVirtioGuest.js', import.meta.url);
const NEIGHBOUR = new URL('./programs/NeighbourVirtioGuest.js', import.meta.url);

/** What dom0's RdmaBackendProgram returns (the fields judged here). */
interface BackendOut {
  readonly virtio: VirtioRdmaBackendStats;
  readonly liveMappingsAtShutdown: number;
  readonly liveMappings: number;
  readonly watcherErrors: readonly string[];
  readonly closeErrors: readonly string[];
}

/** One NIC served over split virtio queues to every guest. */
function run(guests: ReadonlyArray<Omit<GuestSpec, 'devices' | 'memoryMiB'>>): Promise<ScenarioResult> {
  return runScenario({
    host: { nics: 1 },
    guests: guests.map((g) => ({ ...g, memoryMiB: 32, devices: [{ device: 'nic0', transport: 'virtio' }] })),
  });
}

function dom0(result: ScenarioResult): BackendOut {
  const v = result.backend.value as BackendOut | undefined;
  assert.ok(v?.virtio !== undefined, 'dom0 returned its result (it did not crash)');
  return v;
}

/** dom0 ended cleanly: no error at teardown, in its watchers or closing its NICs, nothing mapped. */
function assertCleanEnd(b: BackendOut): void {
  assert.equal(b.virtio.teardownErrors, 0, 'teardown errors');
  assert.deepEqual(b.watcherErrors, []);
  assert.deepEqual(b.closeErrors, []);
  assert.equal(b.liveMappings, 0, 'foreign device mappings left after the devices ended');
}

describe('virtio-rdma: bad guest-physical addresses and malformed chains are refused, the guest goes on', function () {
  this.timeout(60_000);
  let result: ScenarioResult;
  let g: RefuseOut;

  before(async () => {
    result = await run([{ name: 'h', program: HOSTILE, args: { mode: 'refuse' } }]);
    g = result.guests.h.value as RefuseOut;
  });

  it('an MR outside the guest memory or wrapping past 2^53 is PV_ERR_RDMA_BAD_MEMORY; regMr and WRITEs work after', () => {
    assert.equal(g.memBytes, 32 << 20);
    for (const [what, code] of Object.entries(g.mr)) assert.equal(code, 'PV_ERR_RDMA_BAD_MEMORY', what);
    assert.equal(Object.keys(g.mr).length, 6);
    assert.equal(g.afterRefusals, 'ok');
  });

  it('a CreateCq ring that is unaligned, outside memory or 0 is PV_ERR_RDMA_BAD_MEMORY; refs over virtio are PV_ERR_BAD_REQUEST', () => {
    const { 'a page of its own (control)': control, 'with ring refs': refs, ...bad } = g.cq;
    assert.equal(control, 'ok', 'the same raw command with a good ring address succeeds');
    for (const [what, code] of Object.entries(bad)) assert.equal(code, 'PV_ERR_RDMA_BAD_MEMORY', what);
    assert.equal(Object.keys(bad).length, 4);
    assert.equal(refs, 'PV_ERR_BAD_REQUEST', 'CreateCq with ring refs');
    assert.equal(g.regMrWithRefs, 'PV_ERR_BAD_REQUEST', 'RegMr with indirect refs');
  });

  it('a data chain whose readable part is not one 128-byte slot (or whose writable part is short) is used with length 0 and counted; later WRs complete', () => {
    assert.deepEqual(g.malformedLens, { 'readable 64': 0, 'readable 256': 0, 'writable 64': 0 });
    const b = dom0(result);
    assert.equal(b.virtio.malformed, 3);
    assert.equal(b.virtio.brokenQueues, 0, 'a malformed chain is refused, not fatal to the queue');
    assert.equal(g.afterMalformed, 'ok');
    assert.equal(g.channelRefused, 0, 'the channel never saw the raw chains');
  });

  it('nothing a refused command touched stays mapped, and dom0 ends cleanly', () => {
    const b = dom0(result);
    assert.equal(b.virtio.connects, 1);
    assert.equal(b.virtio.sessions, 1);
    assertCleanEnd(b);
  });
});

describe('virtio-rdma: a descriptor loop breaks the data queue; the device needs a reset, dom0 survives', function () {
  this.timeout(60_000);
  let result: ScenarioResult;
  let g: BreakOut;

  before(async () => {
    result = await run([{ name: 'h', program: HOSTILE, args: { mode: 'break', how: 'loop' } }]);
    g = result.guests.h.value as BreakOut;
  });

  it('the loop breaks the queue: dom0 counts it and the guest reads DEVICE_NEEDS_RESET (status bit 64)', () => {
    assert.equal(g.before, 'ok', 'the session worked before the loop');
    assert.equal(VIRTIO_STATUS_DEVICE_NEEDS_RESET, 64);
    assert.notEqual(g.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0, `status 0x${g.status.toString(16)}`);
    assert.equal(dom0(result).virtio.brokenQueues, 1);
  });

  it('verbs after the break throw PV_ERR_DISCONNECTED', () => {
    assert.deepEqual(g.after, {
      queryPort: 'PV_ERR_DISCONNECTED',
      postSend: 'PV_ERR_DISCONNECTED',
      regMr: 'PV_ERR_DISCONNECTED',
      createCq: 'PV_ERR_DISCONNECTED',
    });
    assert.equal(g.lost, true);
  });

  it('dom0 does not crash, the reset (Status 0) is applied, and the session it ended holds no mapping', () => {
    assert.equal(g.resetError, undefined);
    assert.equal(g.resetStatus, 0);
    const b = dom0(result);
    assert.ok(b.virtio.resets >= 1, `resets ${b.virtio.resets}`);
    assert.equal(b.virtio.sessions, 1);
    // The session was dropped at the break/reset: the unplug that followed had nothing left to
    // release, so a mapping the reset did not release would still be counted here.
    assert.equal(b.liveMappingsAtShutdown, 0);
    assertCleanEnd(b);
  });
});

describe('virtio-rdma isolation: a guest that breaks its queue loses no request of another guest', function () {
  this.timeout(60_000);
  let result: ScenarioResult;
  let h: BreakOut;
  let w: WorkloadOut;

  before(async () => {
    result = await run([
      { name: 'h', program: HOSTILE, args: { mode: 'break', how: 'addr', partner: 'w' } },
      { name: 'w', program: NEIGHBOUR, args: { mode: 'workload', partner: 'h' } },
    ]);
    h = result.guests.h.value as BreakOut;
    w = result.guests.w.value as WorkloadOut;
  });

  it('a descriptor address past guest memory breaks the hostile queue (DEVICE_NEEDS_RESET)', () => {
    assert.notEqual(h.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0, `status 0x${h.status.toString(16)}`);
    assert.equal(w.partnerStatus, h.status);
    assert.equal(h.after.queryPort, 'PV_ERR_DISCONNECTED');
    assert.equal(dom0(result).virtio.brokenQueues, 1, 'only the hostile queue broke');
  });

  it('every WRITE of the other guest completes with SUCCESS and its data, during and after the break', () => {
    assert.ok(w.rounds >= 1 && w.rounds < 20_000, `${w.rounds} rounds ran while the partner broke its queue`);
    assert.deepEqual(w.during, { ok: w.rounds * 32, problem: undefined });
    assert.deepEqual(w.after, { ok: 10 * 32, problem: undefined });
    assert.equal(w.refused, 0);
    assert.equal(w.flushed, 0);
    const b = dom0(result);
    assert.equal(b.virtio.sessions, 2);
    assertCleanEnd(b);
  });
});

describe('virtio-rdma teardown: a guest that never closes its device leaves nothing mapped', function () {
  this.timeout(60_000);
  let result: ScenarioResult;
  let g: LeakOut;

  before(async () => {
    result = await run([{ name: 'g', program: NEIGHBOUR, args: { mode: 'leak' } }]);
    g = result.guests.g.value as LeakOut;
  });

  it('MRs, CQs and QPs left registered (WRs in flight) are released when the toolstack unplugs the device', () => {
    assert.deepEqual(g.first, { ok: 8, problem: undefined }, 'the session worked');
    assert.equal(g.mrs + g.cqs + g.qps, 6);
    assert.equal(g.outstanding, 8, 'the WRITEs left outstanding');
    const b = dom0(result);
    assert.equal(b.virtio.connects, 1);
    assert.equal(b.virtio.disconnects, 1, 'the device was unplugged');
    // No reset ended this session: only the unplug could have released its mappings.
    assert.equal(b.virtio.resets, 0);
    assertCleanEnd(b);
  });
});
