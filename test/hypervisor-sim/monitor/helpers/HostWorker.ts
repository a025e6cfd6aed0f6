/**
 * Test helper thread: runs a Host of its own (as a `pvio compare` cell does in its pool worker)
 * with one domain that talks on its console; posts 'ready' once the line is on the console,
 * and on 'stop' ends the domain, shuts the host down and posts 'done'.
 */

import { parentPort } from 'node:worker_threads';
import { Host } from '../../../../hypervisor-sim/domain/Host.js';

const port = parentPort;
if (port === null) throw new Error('HostWorker runs in a worker');
const stop = new SharedArrayBuffer(4);
const host = new Host({ name: 'w-host' });
const d = host.createDomain({
  name: 'talker',
  program: new URL('../programs/TalkerProgram.js', import.meta.url),
  args: { stop },
});
const deadline = Date.now() + 20_000;
while (d.console.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
port.postMessage('ready');
port.once('message', async () => {
  const w = new Int32Array(stop);
  // ORDERING: seq-cst store, then wake the program's Atomics.wait.
  Atomics.store(w, 0, 1);
  Atomics.notify(w, 0);
  await d.result;
  await host.shutdown();
  port.postMessage('done');
});
