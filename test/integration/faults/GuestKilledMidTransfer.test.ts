/**
 * Rule (issue 7, "faults, nothing lost"): a guest killed mid-transfer — RDMA WRITEs on its send
 * queue and block requests on its ring — leaves nothing behind in the backend: dom0's
 * live-mapping count, its connection counts and the NIC's live PDs, MRs, CQs and QPs return to
 * the values they had before that guest connected, while another guest on the same backend goes
 * on doing block and RDMA I/O and completes every request exactly once with the right data.
 * Real Workers through the Host, as deployed (FaultHost.ts).
 */

import assert from 'node:assert/strict';
import { FaultHost, until, VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE } from './FaultHost.js';

const HONEST = 1;
const VICTIM = 2;

describe('faults: a guest killed mid-transfer', function () {
  this.timeout(60_000);

  it('the backend unmaps and frees everything of the dead guest; its neighbour completes every request with the right data', async () => {
    const fh = new FaultHost(true);
    try {
      const dom0 = fh.startDom0();
      const honest = fh.guest(HONEST, { role: 'honest', base: 0, rdma: true });
      await fh.plug(HONEST, [VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE]);
      await fh.hold(HONEST);
      const before = await fh.probe();
      const nicBefore = fh.nicObjects();
      assert.equal(before.rdmaConnections, 1);
      assert.equal(before.blkConnections, 1);
      assert.ok(
        nicBefore.qp >= 2 && nicBefore.mr >= 1,
        `the neighbour's objects are on the NIC: ${JSON.stringify(nicBefore)}`,
      );
      await fh.release(HONEST);

      const victim = fh.guest(VICTIM, { role: 'victim', base: 4096, rdma: true });
      const died = victim.result.then(
        () => 'returned',
        () => 'killed',
      );
      await fh.plug(VICTIM, [VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE]);
      await until(async () => (await fh.read(VICTIM, 'busy')) === '1', 'the victim to fill its queues');
      const during = await fh.probe();
      assert.equal(during.rdmaConnections, 2);
      assert.equal(during.blkConnections, 2);
      assert.ok(during.liveMappings > before.liveMappings, 'the victim has rings, MRs and a CQ mapped');
      const nicDuring = fh.nicObjects();
      assert.ok(nicDuring.qp >= nicBefore.qp + 2, 'the victim has QPs on the NIC');

      await fh.host.destroyDomain(VICTIM);
      assert.equal(await died, 'killed');
      // The toolstack removes the dead guest's backend directories; the backend disconnects.
      await until(async () => {
        const c = await fh.probe();
        return c.rdmaConnections === 1 && c.blkConnections === 1;
      }, 'the backend to disconnect the dead guest');

      const roundsAt = await fh.hold(HONEST);
      const after = await fh.probe();
      assert.equal(after.liveMappings, before.liveMappings, 'every grant of the dead guest was unmapped');
      assert.deepEqual(fh.nicObjects(), nicBefore, "the dead guest's PDs, MRs, CQs and QPs were destroyed on the NIC");
      assert.equal(after.rdma?.teardownErrors, 0, dom0.console.join('\n'));
      assert.equal(after.blk.halted, 0);
      assert.deepEqual(after.watcherErrors, []);
      await fh.release(HONEST);

      // The neighbour keeps going after the death, then stops.
      await until(async () => (await fh.hold(HONEST)) > roundsAt + 1, 'the neighbour to make progress after the death');
      await fh.write(HONEST, 'stop', '1');
      await fh.release(HONEST);
      const r = await fh.report(honest);
      assert.deepEqual(r.notes, []);
      assert.equal(r.mismatches, 0);
      assert.deepEqual(r.failed, {}, 'no request of the neighbour failed');
      assert.equal(r.settledTwice, 0);
      assert.equal(r.unsettled, 0);
      assert.equal(r.ok, r.issued);
      assert.deepEqual(r.rdmaBad, []);
      assert.equal(r.rdmaOk, r.rounds, 'one checked RDMA WRITE per round, each completed once');
      assert.ok(r.rounds >= 2);
    } finally {
      await fh.shutdown();
    }
  });
});
