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
 *    device ends with a clear code — but no WR is silently lost: every WR the guest still had
 *    outstanding (the NIC was reset with dom0 and writes no CQE for it) completes with
 *    WR_FLUSH_ERR through pollCq, exactly once, as a QP going to ERR would flush it; every WR
 *    that did complete before the crash is not flushed too; then every later verb throws
 *    PV_ERR_DISCONNECTED, none hangs.
 */

import assert from 'node:assert/strict';
import { WcOpcode, WcStatus } from '../../../protocol/rdma/Verbs.js';
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
      // The crash must land mid-stream: wait (bounded) until the first backend served part of it.
      await until(async () => (await fh.probe()).blk.requests > 32, 'the first backend to serve the stream');

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

  it('a paravirt RDMA device whose backend died ends: outstanding WRs complete with WR_FLUSH_ERR exactly once, then verbs throw PV_ERR_DISCONNECTED', async () => {
    const fh = new FaultHost(true);
    try {
      fh.startDom0();
      const g = fh.guest(GUEST, { role: 'verbs', mixed: true });
      await fh.plug(GUEST, [VRDMA_DEVICE_TYPE]);
      await until(async () => (await fh.read(GUEST, 'busy')) === '1', 'the guest to post its WRITEs');
      await fh.host.crashDomain(0);
      fh.startDom0();
      await fh.replugBackend(GUEST, VRDMA_DEVICE_TYPE);
      await fh.write(GUEST, 'gone', '1');
      const r = await fh.report(g);
      assert.deepEqual(r.rdmaBad, [], 'no WR completed twice');
      const posted = r.posted;
      assert.ok(posted !== undefined && r.wcs !== undefined);
      const by = new Map<number, Array<[number, number]>>();
      for (const [wrId, status, opcode] of r.wcs) by.set(wrId, [...(by.get(wrId) ?? []), [status, opcode]]);
      // The receives were posted on a QP nothing is sent to: outstanding at the crash, flushed.
      for (const id of posted.recv) {
        assert.deepEqual(by.get(id), [[WcStatus.WR_FLUSH_ERR, WcOpcode.RECV]], `receive ${id} flushed once`);
      }
      // Each signaled WRITE completes once: done before the crash, or flushed.
      for (const id of posted.signaled) {
        const got = by.get(id) ?? [];
        assert.equal(got.length, 1, `signaled WRITE ${id} completed once (${JSON.stringify(got)})`);
        assert.ok(
          got[0][0] === WcStatus.SUCCESS || got[0][0] === WcStatus.WR_FLUSH_ERR,
          `WRITE ${id}: status ${got[0][0]}`,
        );
        assert.equal(got[0][1], WcOpcode.RDMA_WRITE);
      }
      // An unsignaled WRITE completes only if it was still outstanding at the crash (a flush).
      for (const id of posted.unsignaled) {
        for (const [status] of by.get(id) ?? []) assert.equal(status, WcStatus.WR_FLUSH_ERR, `WRITE ${id}`);
      }
      // RC order on the send queue: once one WRITE flushed, every later one flushed too.
      const sends = r.wcs.filter(([, , opcode]) => opcode === WcOpcode.RDMA_WRITE);
      const firstFlush = sends.findIndex(([, status]) => status === WcStatus.WR_FLUSH_ERR);
      if (firstFlush >= 0) {
        assert.ok(
          sends.slice(firstFlush).every(([, status]) => status === WcStatus.WR_FLUSH_ERR),
          'no success after a flush',
        );
      }
      assert.equal(r.afterError, 'PV_ERR_DISCONNECTED');
    } finally {
      await fh.shutdown();
    }
  });
});
