/**
 * The tcp transport through the public verbs API: two guest Workers open their device with
 * `openDevice` (the provider loader imports TcpProvider), connect with `connectRcQp`, and echo
 * SENDs back and forth with `pollCq`/`waitCq`, then finish with an RDMA WRITE_WITH_IMM — the same
 * calls a guest program makes over any transport. Closing the device gives every page back.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { fromWireError, type WireError } from '../../../../protocol/errors.js';
import type { VerbsInfo } from './helpers/VerbsPeerWorker.js';

interface Reply {
  ok: boolean;
  value?: unknown;
  error?: WireError;
}

/** Next reply of a worker, bounded. */
async function reply<T>(w: Worker, what: string): Promise<T> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 30_000);
  try {
    const [r] = (await once(w, 'message', { signal: ac.signal })) as [Reply];
    if (!r.ok) throw fromWireError(r.error!);
    return r.value as T;
  } catch (err) {
    if (ac.signal.aborted) throw new Error(`${what}: no reply within 30 s`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

describe('tcp transport through the verbs API (openDevice … pollCq/waitCq)', function () {
  this.timeout(60_000);

  it('echo of 200 SENDs with data checks, then WRITE_WITH_IMM; closeDevice returns every page', async () => {
    const url = new URL('./helpers/VerbsPeerWorker.js', import.meta.url);
    const a = new Worker(url, { workerData: 'A' });
    const b = new Worker(url, { workerData: 'B' });
    try {
      const [ia, ib] = await Promise.all([reply<VerbsInfo>(a, 'open A'), reply<VerbsInfo>(b, 'open B')]);
      assert.notEqual(ia.lid, ib.lid, 'each provider has its own NIC port');
      a.postMessage({ op: 'connect', remote: ib });
      b.postMessage({ op: 'connect', remote: ia });
      await Promise.all([reply(a, 'connect A'), reply(b, 'connect B')]);
      a.postMessage({ op: 'run', role: 'client', rounds: 200 });
      b.postMessage({ op: 'run', role: 'server', rounds: 200 });
      assert.deepEqual(await Promise.all([reply(a, 'run A'), reply(b, 'run B')]), [200, 200]);
      a.postMessage({ op: 'close' });
      b.postMessage({ op: 'close' });
      assert.deepEqual(await Promise.all([reply(a, 'close A'), reply(b, 'close B')]), [true, true]);
    } finally {
      await Promise.all([a.terminate(), b.terminate()]);
    }
  });
});
