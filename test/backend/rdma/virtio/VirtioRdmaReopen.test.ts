/**
 * virtio-rdma close and reopen: the register window and its event channel belong to the device
 * until unplug (the device model serves the window every round), so closing the device never
 * hands the window page back to the guest's allocator — memory the guest reuses is never written
 * by dom0 — and opening the device again reuses them and works, as it does over the vrdma rings.
 */

import assert from 'node:assert/strict';
import { runScenario, type ScenarioResult } from '../../../../hypervisor-sim/scenario/Scenario.js';
import type { ReopenOut } from './programs/ReopenVirtioGuest.js';

const PROGRAM = new URL('./programs/ReopenVirtioGuest.js', import.meta.url);

for (const transport of ['virtio', 'virtio-packed'] as const) {
  describe(`virtio-rdma over ${transport}: close, reuse the memory, open again`, function () {
    this.timeout(60_000);
    let r: ScenarioResult;
    let g: ReopenOut;

    before(async () => {
      r = await runScenario({
        host: { nics: 1 },
        guests: [{ name: 'g', program: PROGRAM, memoryMiB: 32, devices: [{ device: 'nic0', transport }] }],
      });
      g = r.guests.g.value as ReopenOut;
    });

    it('after a close, no page the guest allocates is the window, and dom0 writes none of them', () => {
      assert.equal(g.first.problem, undefined);
      assert.equal(g.first.ok, 24);
      assert.ok(g.windowBefore !== undefined && /^\d+$/.test(g.windowBefore), `mmio-gpa ${g.windowBefore}`);
      assert.equal(g.windowReused, 0, 'the window page stayed reserved');
      assert.equal(g.clobbered, 0, 'no byte of the reused memory changed while dom0 kept serving');
    });

    it('a second open reuses the window and moves data again; dom0 ran two sessions and kept no mapping', () => {
      assert.equal(g.second.problem, undefined);
      assert.equal(g.second.ok, 24);
      assert.equal(g.windowAfter, g.windowBefore);
      const b = r.backend.value as { virtio: Record<string, number>; liveMappings: number };
      assert.equal(b.virtio.connects, 1, 'one device, built once');
      assert.equal(b.virtio.sessions, 2);
      assert.equal(b.virtio.resets, 2, 'each close reset the device');
      assert.equal(b.liveMappings, 0);
    });
  });
}
