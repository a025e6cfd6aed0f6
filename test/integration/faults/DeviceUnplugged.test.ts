/**
 * Rule (issue 7, "faults, nothing lost"): a device unplugged by the toolstack while in use fails
 * what was outstanding with a clear status and never hangs; later requests fail at once.
 *  - vbd: every block request queued or in flight settles exactly once, those not served with
 *    PV_ERR_DISCONNECTED; requests issued afterwards reject with PV_ERR_DISCONNECTED at once.
 *  - vrdma: WRs outstanding (receives nothing is sent to) complete with WR_FLUSH_ERR when the
 *    backend destroys the QP, each once; the next verb throws PV_ERR_DISCONNECTED.
 * dom0 is left with nothing of the guest mapped.
 */

import assert from 'node:assert/strict';
import { WcStatus } from '../../../protocol/rdma/Verbs.js';
import { FaultHost, until, VBD_DEVICE_TYPE, VRDMA_DEVICE_TYPE } from './FaultHost.js';

const GUEST = 1;

describe('faults: a device unplugged while in use', function () {
  this.timeout(60_000);

  it('vbd: outstanding requests fail with PV_ERR_DISCONNECTED, each once, and later ones fail at once', async () => {
    const fh = new FaultHost(false);
    try {
      fh.startDom0();
      const g = fh.guest(GUEST, { role: 'stream', base: 0 });
      await fh.plug(GUEST, [VBD_DEVICE_TYPE]);
      await until(async () => (await fh.read(GUEST, 'streaming')) === '1', 'the guest to stream');
      await fh.unplug(GUEST, VBD_DEVICE_TYPE);
      const r = await fh.report(g);
      assert.equal(r.settledTwice, 0);
      assert.equal(r.unsettled, 0, 'no request hangs');
      assert.deepEqual(Object.keys(r.failed), ['PV_ERR_DISCONNECTED'], JSON.stringify(r.failed));
      assert.equal(r.ok + (r.failed.PV_ERR_DISCONNECTED ?? 0), r.issued);
      assert.deepEqual(r.lateCodes, [
        'PV_ERR_DISCONNECTED',
        'PV_ERR_DISCONNECTED',
        'PV_ERR_DISCONNECTED',
        'PV_ERR_DISCONNECTED',
      ]);
      const c = await fh.probe();
      assert.equal(c.blkConnections, 0);
      assert.equal(c.liveMappings, 0, 'the backend unmapped the ring and every data page');
    } finally {
      await fh.shutdown();
    }
  });

  it('vrdma: WRs in flight complete with WR_FLUSH_ERR, each once; the next verb throws PV_ERR_DISCONNECTED', async () => {
    const fh = new FaultHost(true);
    try {
      fh.startDom0();
      const nicBefore = fh.nicObjects();
      const g = fh.guest(GUEST, { role: 'verbs', stuck: true });
      await fh.plug(GUEST, [VRDMA_DEVICE_TYPE]);
      await until(async () => (await fh.read(GUEST, 'busy')) === '1', 'the guest to post its receives');
      await fh.unplug(GUEST, VRDMA_DEVICE_TYPE);
      await until(async () => (await fh.probe()).rdmaConnections === 0, 'the backend to disconnect');
      await fh.write(GUEST, 'gone', '1');
      const r = await fh.report(g);
      assert.deepEqual(r.rdmaBad, []);
      assert.deepEqual(r.wcStatuses, new Array(4).fill(WcStatus.WR_FLUSH_ERR), 'every outstanding receive was flushed');
      assert.equal(r.afterError, 'PV_ERR_DISCONNECTED');
      const c = await fh.probe();
      assert.equal(c.liveMappings, 0);
      assert.deepEqual(fh.nicObjects(), nicBefore);
    } finally {
      await fh.shutdown();
    }
  });
});
