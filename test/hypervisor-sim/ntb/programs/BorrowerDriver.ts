/**
 * A borrower's domain thread for the NTB tests: the UNCHANGED NvmeDriver over a RemoteBar (each
 * register access a synchronous mailbox call to the test's main thread, which forwards it as an
 * `mmio` message to the lender), with its queues and buffers in the borrower's own memory.
 *
 * Modes (workerData.mode):
 *  - `io`: bring-up, then for each block run write a pattern and read it back into another
 *    buffer; posts the buffers' addresses (main compares memory and the backing file). With
 *    `verify`, also reads runs written by an earlier borrower into fresh buffers.
 *  - `loop`: bring-up, posts `ready`, then write/read until a call fails; posts the failure.
 *  - `unmapped`: bring-up, READ into an IOVA outside its memory (the lender's DMA is refused),
 *    then a normal write/read round trip: posts the first command's NVMe status and the second's.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import { SharedArrayGuestMemory } from '../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { RemoteBar } from '../../../../hypervisor-sim/ntb/RemoteBar.js';
import type { PciFunction } from '../../../../protocol/Pci.js';
import { domId, type GuestPhysAddr, type Iova } from '../../../../protocol/Types.js';
import { fillPattern } from '../../devices/nvme/helpers/NvmeRig.js';

/** One run of blocks. */
export interface BlockRun {
  readonly lba: number;
  readonly blocks: number;
  readonly seed: number;
}

export interface BorrowerData {
  readonly mode: 'io' | 'loop' | 'unmapped';
  readonly memory: SharedArrayBuffer;
  readonly mailbox: SharedArrayBuffer;
  readonly lender: string;
  readonly lease: string;
  readonly barSize: number;
  readonly barTimeoutMs: number;
  readonly runs?: readonly BlockRun[];
  readonly verify?: readonly BlockRun[];
}

/** What the thread posts. */
export type BorrowerMsg =
  | { type: 'ready' }
  | {
      type: 'done';
      capacityBlocks: number;
      lbaBytes: number;
      written: { run: BlockRun; src: number; dst: number }[];
      verified: { run: BlockRun; dst: number }[];
    }
  | { type: 'statuses'; refused: number; after: number }
  | { type: 'failed'; code: string; message: string; iterations: number };

function run(): void {
  const d = workerData as BorrowerData;
  const post = (m: BorrowerMsg): void => parentPort?.postMessage(m);
  const mem = new SharedArrayGuestMemory(domId(1), d.memory);
  const bar = new RemoteBar({
    mailbox: d.mailbox,
    lender: d.lender,
    lease: d.lease,
    size: d.barSize,
    timeoutMs: d.barTimeoutMs,
  });
  const pci: PciFunction = {
    name: 'nvme0',
    kind: 'nvme',
    bdf: '0000:05:00.0',
    bars: [bar],
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  let iterations = 0;
  try {
    const drv = new NvmeDriver(pci, mem, { timeoutMs: 5000, queueEntries: 16 });
    if (d.mode === 'io') {
      const written: { run: BlockRun; src: number; dst: number }[] = [];
      for (const r of d.runs ?? []) {
        const pages = Math.ceil((r.blocks * 512) / 4096);
        const src = mem.allocPages(pages);
        const dst = mem.allocPages(pages);
        fillPattern(mem.bytes, src, r.blocks * 512, r.seed);
        drv.write(r.lba, r.blocks, src);
        drv.read(r.lba, r.blocks, dst);
        written.push({ run: r, src, dst });
      }
      const verified: { run: BlockRun; dst: number }[] = [];
      for (const r of d.verify ?? []) {
        const dst = mem.allocPages(Math.ceil((r.blocks * 512) / 4096));
        drv.read(r.lba, r.blocks, dst);
        verified.push({ run: r, dst });
      }
      drv.flush();
      post({
        type: 'done',
        capacityBlocks: drv.identity.capacityBlocks,
        lbaBytes: drv.identity.lbaBytes,
        written,
        verified,
      });
      return;
    }
    if (d.mode === 'unmapped') {
      const outside = (mem.size + (1 << 20)) as Iova;
      const refused = drv.wait(1, drv.submitIo('read', 0, 8, outside)).status;
      const buf = mem.allocPages(1);
      fillPattern(mem.bytes, buf, 4096, 99);
      const after = drv.wait(1, drv.submitIo('write', 8, 8, pci.dmaAddr(buf))).status;
      post({ type: 'statuses', refused, after });
      return;
    }
    post({ type: 'ready' });
    const src = mem.allocPages(1);
    const dst = mem.allocPages(1);
    // Bounded: the test ends the lease long before this many round trips.
    for (; iterations < 1_000_000; iterations++) {
      fillPattern(mem.bytes, src, 4096, iterations + 1);
      drv.write(iterations % 64, 8, src);
      drv.read(iterations % 64, 8, dst);
    }
    post({ type: 'failed', code: 'NONE', message: 'the lease never ended', iterations });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    post({ type: 'failed', code: e.code ?? 'UNKNOWN', message: e.message ?? String(err), iterations });
  }
}

// Imported by the test for its types: run only as a thread.
if (!isMainThread) run();
