/**
 * Rule (issue 7, "faults, nothing lost"): when the backend's driver domain is killed and a new
 * one started (as Xen's toolstack restarts a driver domain: same domain id, the backend
 * directories written again for the frontends still plugged), frontends see the backend go away,
 * go through the reconnect handshake and re-establish their rings:
 *  - block: every request that was in flight or queued is re-issued on the new ring and
 *    completes exactly once (none lost, none twice, counted per request), data written before the
 *    crash reads back after it (the disk is a real file: it survives), and so does every batch
 *    completed across it;
 *  - RDMA: verbs objects live in the dead backend's session and cannot be re-issued, so the
 *    device ends with a clear code — every later verb throws PV_ERR_DISCONNECTED, none hangs.
 */

import assert from 'node:assert/strict';
import { FaultHost, until, VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE } from './FaultHost.js';

const GUEST = 1;

describe('faults: the backend killed and restarted', function () {
  this.timeout(60_000);

  it('blkfront reconnects, re-issues every outstanding request exactly once, and data written before the crash reads back', async () => {
    const fh = new FaultHost(false);
    try {
      const first = fh.startDom0();
      const g = fh.guest(GUEST, { role: 'stream', base: 0 });
      await fh.plug(GUEST, [VBD_DEVICE_TYPE]);
      await until(async () => (await fh.read(GUEST, 'streaming')) === '1', 'the guest to write region A and stream');
      const served = (await fh.probe()).blk.requests;
      assert.ok(served > 32, `the first backend served the stream (${served} requests)`);

      await fh.host.crashDomain(0);
      assert.equal(
        await first.result.then(
          () => 'returned',
          () => 'crashed',
        ),
        'crashed',
      );
      fh.startDom0();
      await fh.replugBackend(GUEST);
      await until(async () => (await fh.probe()).blkConnections === 1, 'the guest to reconnect to the new backend');
      await until(async () => (await fh.probe()).blk.okay > 64, 'the new backend to serve the stream');
      await fh.write(GUEST, 'stop', '1');

      const r = await fh.report(g);
      assert.deepEqual(r.notes, []);
      assert.equal(r.mismatches, 0, 'region A (before the crash) and the last batches read back');
      assert.ok(r.requeued > 0, `requests in flight at the crash were re-issued (${r.requeued})`);
      assert.deepEqual(r.failed, {}, 'no request failed: all were re-issued');
      assert.equal(r.settledTwice, 0, 'no request completed twice');
      assert.equal(r.unsettled, 0, 'no request was lost');
      assert.equal(r.ok, r.issued);
      const after = await fh.probe();
      assert.equal(after.blk.halted, 0);
      assert.deepEqual(after.watcherErrors, []);
    } finally {
      await fh.shutdown();
    }
  });

  it('a paravirt RDMA device whose backend died ends: later verbs throw PV_ERR_DISCONNECTED', async () => {
    const fh = new FaultHost(true);
    try {
      fh.startDom0();
      const g = fh.guest(GUEST, { role: 'verbs' });
      await fh.plug(GUEST, [VRDMA_DEVICE_TYPE]);
      await until(async () => (await fh.read(GUEST, 'busy')) === '1', 'the guest to post its WRITEs');
      await fh.host.crashDomain(0);
      fh.startDom0();
      await fh.replugBackend(GUEST, VRDMA_DEVICE_TYPE);
      await fh.write(GUEST, 'gone', '1');
      const r = await fh.report(g);
      assert.equal(r.afterError, 'PV_ERR_DISCONNECTED');
      assert.ok(
        (r.wcStatuses ?? []).length <= 32,
        `no WR completed more than once (${(r.wcStatuses ?? []).length} completions for 32 WRs)`,
      );
    } finally {
      await fh.shutdown();
    }
  });
});
