/**
 * A host that lives in another thread of the process (a `pvio compare` cell's pool worker) is
 * seen by the process's monitor source: its snapshot and its domains' console screens arrive over
 * the BroadcastChannel, and once it shuts down it is gone from the next snapshot.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { processSource } from '../../../hypervisor-sim/monitor/ProcessSource.js';

function next(w: Worker, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once('message', (m) => (m === what ? resolve() : reject(new Error(`expected ${what}, got ${String(m)}`))));
    w.once('error', reject);
  });
}

describe('monitor: hosts of other threads (ThreadHosts over BroadcastChannel)', function () {
  this.timeout(60_000);

  it('a worker thread’s host shows in the snapshot with its domain, its console screen is served, and it leaves on shutdown', async () => {
    const w = new Worker(new URL('./helpers/HostWorker.js', import.meta.url));
    try {
      await next(w, 'ready');
      const src = processSource('test');
      const snap = await src.snapshot();
      const h = snap.hosts.find((x) => x.name === 'w-host');
      assert.ok(h, `the worker's host is in the snapshot: ${JSON.stringify(snap.hosts.map((x) => x.name))}`);
      assert.deepEqual(
        h.domains.map((d) => [d.name, d.state]),
        [['talker', 'running']],
      );
      const byName = await src.console('talker');
      assert.deepEqual(byName?.screen, ['hello from talker']);
      assert.equal((await src.console('w-host/talker'))?.name, 'talker');
      assert.equal(await src.console('w-host/nobody'), undefined);
      w.postMessage('stop');
      await next(w, 'done');
      const after = await src.snapshot();
      assert.ok(!after.hosts.some((x) => x.name === 'w-host'), 'gone after shutdown');
    } finally {
      await w.terminate();
    }
  });
});
