/**
 * Entry point of a lender's NTB service thread (one per device lent to a host in another
 * process; LentRemote.ts starts it). It attaches the controller — the same shared NvmeState the
 * host created, media descriptor included (worker threads share the process's descriptors) —
 * with a RemoteDma as its DMA path, then serves the borrower's MMIO accesses that the main
 * thread hands it (ServiceMailbox.ts), one at a time:
 *
 *   take access → `bar.read32/write32` (a doorbell runs the controller inline here; its DMA
 *   goes to the borrower through RemoteDma, this thread blocking on each round trip) →
 *   `dma.flush()` (the writes reach the borrower, in order) → answer.
 *
 * Answering only after the flush is what lets the borrower see its data and CQEs when its
 * doorbell write returns (RemoteDma.ts, the ordering argument). STOP resets the controller
 * (function-level reset: CC.EN = 0, every queue dropped, the admin registers cleared) so the
 * next borrower starts from a disabled device, answers, and leaves.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { pvError, toWireError } from '../../protocol/errors.js';
import { NvmeDevice, type NvmeState } from '../devices/nvme/NvmeDevice.js';
import { RemoteDma } from './RemoteDma.js';
import { ServiceOp, ServiceServer } from './ServiceMailbox.js';

/** What LentRemote passes in `workerData` (structured-cloneable). */
export interface NtbServiceData {
  /** The lent controller's state. */
  readonly state: NvmeState;
  /** main → worker MMIO mailbox (ServiceMailbox.ts). */
  readonly service: SharedArrayBuffer;
  /** worker → main DMA mailbox (link/Mailbox.ts, ops in RemoteDma.ts). */
  readonly dmaMailbox: SharedArrayBuffer;
  /** Staging bytes of RemoteDma. */
  readonly stagingBytes: number;
  /** Bound of one DMA round trip. */
  readonly dmaTimeoutMs: number;
}

/** What the thread posts to its host. */
export type NtbServiceToHost =
  | { readonly type: 'ready' }
  | { readonly type: 'stopped'; readonly dmaFaults: number }
  | { readonly type: 'error'; readonly error: { readonly code: string; readonly message: string } };

/** Sleep slice while idle: a defence against a lost wake-up, not a timing assumption. */
const IDLE_WAIT_MS = 1000;

function run(): void {
  const host = parentPort;
  if (host === null) return;
  const data = workerData as NtbServiceData;
  try {
    const dma = new RemoteDma({
      mailbox: data.dmaMailbox,
      stagingBytes: data.stagingBytes,
      timeoutMs: data.dmaTimeoutMs,
    });
    const dev = new NvmeDevice(data.state, dma);
    const bar = dev.mmio();
    const server = new ServiceServer(data.service);
    host.postMessage({ type: 'ready' } satisfies NtbServiceToHost);
    for (;;) {
      const c = server.next(IDLE_WAIT_MS);
      if (c === undefined) continue;
      if (c.op === ServiceOp.STOP) {
        try {
          dev.functionReset();
          server.answer(0);
        } catch (err) {
          server.fail(err);
        }
        break;
      }
      try {
        if (c.bar !== 0) throw pvError('PV_ERR_OUT_OF_BOUNDS', `${dev.name} has no BAR ${c.bar}`);
        let value = 0;
        if (c.op === ServiceOp.WRITE) bar.write32(c.offset, c.value);
        else if (c.op === ServiceOp.READ) value = bar.read32(c.offset);
        else throw pvError('PV_ERR_BAD_REQUEST', `unknown service op ${c.op}`);
        dma.flush();
        server.answer(value);
      } catch (err) {
        try {
          // Whatever the access wrote before it failed still reaches the borrower, in order.
          dma.flush();
        } catch {
          // The access's own error is the one to answer with.
        }
        server.fail(err);
      }
    }
    host.postMessage({ type: 'stopped', dmaFaults: dma.faults } satisfies NtbServiceToHost);
  } catch (err) {
    host.postMessage({ type: 'error', error: toWireError(err) } satisfies NtbServiceToHost);
  }
}

run();
