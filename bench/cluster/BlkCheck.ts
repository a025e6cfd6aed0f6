/**
 * Control ops of a borrower host that exercise a lent NVMe SSD from another host process with
 * the unchanged native driver (BlkCheckWorker.ts):
 *
 *  - `blk-check {device, blocks}` → `{ ok, bytes, capacityBlocks }`: write, read back, compare;
 *  - `blk-loop {device, maxMs}` → `{ iterations, code?, message? }`: I/O until a call fails or
 *    `maxMs` passes — with the lender killed meanwhile it returns PV_ERR_LEND_REVOKED, promptly.
 *
 * A device whose lease ended (lender gone, returned) is refused at once with the reason.
 */

import { Worker } from 'node:worker_threads';
import type { HostDaemon } from '../../hypervisor-sim/hostd/HostDaemon.js';
import type { HostLending } from '../../hypervisor-sim/hostd/HostLending.js';
import { pvError } from '../../protocol/errors.js';
import type { BlkCheckData, BlkCheckMsg } from './BlkCheckWorker.js';

const WORKER = new URL('./BlkCheckWorker.js', import.meta.url);

function runWorker(data: BlkCheckData, boundMs: number): Promise<BlkCheckMsg> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: data });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(pvError('PV_ERR_TIMEOUT', `block check did not finish within ${boundMs} ms`));
    }, boundMs);
    w.on('message', (m: BlkCheckMsg) => {
      if (m.type === 'ready') return;
      clearTimeout(timer);
      resolve(m);
      void w.terminate();
    });
    w.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function installBlkCheck(daemon: HostDaemon, lending: HostLending): void {
  const device = (args: Record<string, unknown>) => {
    const name = String(args.device);
    const b = lending.borrowed(name);
    if (b !== undefined) return b;
    const why = lending.ended(name);
    if (why !== undefined) throw pvError('PV_ERR_LEND_REVOKED', `${name} is no longer usable here: ${why}`);
    throw pvError('PV_ERR_LEND_NOT_HOLDER', `${daemon.name} does not hold ${name}: borrow it first`);
  };
  let busy = false;
  const exclusive = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (busy) throw pvError('PV_ERR_LIMIT', 'one block job at a time per host');
    busy = true;
    try {
      return await fn();
    } finally {
      busy = false;
    }
  };
  const data = (args: Record<string, unknown>, mode: 'check' | 'loop'): BlkCheckData => {
    const b = device(args);
    return {
      mode,
      memory: b.memory,
      barMailbox: b.barMailbox,
      lender: b.lender,
      lease: String(b.lease.generation),
      barSize: b.barSize,
      bdf: b.bdf,
      blocks: Math.min(Math.max(Number(args.blocks ?? 64) | 0, 1), 16384),
      maxMs: Math.min(Math.max(Number(args.maxMs ?? 5000), 1), 120_000),
    };
  };
  daemon.registerControl('blk-check', (args) =>
    exclusive(async () => {
      const m = await runWorker(data(args, 'check'), 120_000);
      if (m.type !== 'checked') throw pvError('PV_ERR_BAD_REQUEST', 'block check returned the wrong result');
      return m;
    }),
  );
  daemon.registerControl('blk-loop', (args) =>
    exclusive(async () => {
      const d = data(args, 'loop');
      return runWorker(d, d.maxMs + 60_000);
    }),
  );
}
