/**
 * A stand-in service thread for the ServiceMailbox tests: READ answers 2 × offset; WRITE of 13
 * fails with PV_ERR_BAD_ALIGNMENT; WRITE of 99 answers after `slowMs` (a stuck access); STOP
 * answers 0 and leaves.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ServiceOp, ServiceServer } from '../../../../hypervisor-sim/ntb/ServiceMailbox.js';
import { pvError } from '../../../../protocol/errors.js';

function run(): void {
  const { sab, slowMs } = workerData as { sab: SharedArrayBuffer; slowMs: number };
  const server = new ServiceServer(sab);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  parentPort?.postMessage('ready');
  for (let served = 0; served < 1000; ) {
    const c = server.next(1000);
    if (c === undefined) continue;
    served++;
    if (c.op === ServiceOp.STOP) {
      server.answer(0);
      parentPort?.postMessage('stopped');
      return;
    }
    if (c.op === ServiceOp.READ) server.answer(c.offset * 2 + c.bar);
    else if (c.value === 13) server.fail(pvError('PV_ERR_BAD_ALIGNMENT', `offset ${c.offset} refused`));
    else if (c.value === 99) {
      // ORDERING: a plain sleep on a private word nobody notifies.
      Atomics.wait(nap, 0, 0, slowMs);
      server.answer(c.value);
    } else server.answer(c.value);
  }
}

if (!isMainThread) run();
