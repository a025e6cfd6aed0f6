/**
 * The lender's service thread side of the RemoteDma tests: a RemoteDma over a DMA mailbox that
 * the test's main thread serves against a fake borrower memory where byte `a` holds
 * `pat(a) = (a × 7) & 255`, refuses IOVAs at or above REFUSED_FROM (PV_ERR_OUT_OF_BOUNDS) and
 * answers IOVAs at or above DEAD_FROM with PV_ERR_PCIE_LINK_DOWN. Runs the steps below in order
 * and posts what each saw; the main thread checks its log of requests against them.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { emptyDmaRef } from '../../../../hypervisor-sim/iommu/DmaResolver.js';
import { RemoteDma } from '../../../../hypervisor-sim/ntb/RemoteDma.js';

export const REFUSED_FROM = 40_000;
export const DEAD_FROM = 50_000;
export const pat = (a: number): number => (a * 7) & 255;

/** What the probe posts. */
export interface ProbeResult {
  readBack: boolean;
  readAligned: boolean;
  overlapSawWrite: boolean;
  refused: boolean;
  tooBig: boolean;
  faultsBeforeDeath: number;
  deadFetch: boolean;
  afterDeath: boolean;
  flushCode: string;
}

function run(): void {
  const { mailbox, stagingBytes } = workerData as { mailbox: SharedArrayBuffer; stagingBytes: number };
  const dma = new RemoteDma({ mailbox, stagingBytes, timeoutMs: 5000 });
  const ref = emptyDmaRef();
  // 1. A read spanning several mailbox chunks; its view keeps the IOVA's alignment.
  let readBack = dma.resolve(101, 3000, false, ref);
  for (let i = 0; i < 3000 && readBack; i++) readBack = ref.bytes[ref.offset + i] === pat(101 + i);
  const readAligned = ref.offset % 8 === 101 % 8;
  // 2. Writes: one that changes 4 bytes in the middle of 16, one that changes all of 2000.
  dma.resolve(5000, 16, true, ref);
  for (let i = 8; i < 12; i++) ref.bytes[ref.offset + i] = pat(5000 + i) ^ 0xff;
  dma.resolve(6000, 2000, true, ref);
  for (let i = 0; i < 2000; i++) ref.bytes[ref.offset + i] = pat(6000 + i) ^ 0xff;
  // Resolved only to validate: must never be written back.
  dma.resolve(9000, 64, true, ref);
  dma.flush();
  // 3. Early flush: the second resolution does not fit beside the first.
  dma.resolve(10_000, 2000, true, ref);
  for (let i = 0; i < 2000; i++) ref.bytes[ref.offset + i] = 0x5a ^ pat(10_000 + i);
  dma.resolve(20_000, 3000, false, ref);
  // 4. A read overlapping a pending write sees the written bytes (flushed first).
  dma.resolve(13_000, 16, true, ref);
  ref.bytes[ref.offset + 15] = pat(13_015) ^ 0xff;
  dma.resolve(13_000, 16, false, ref);
  const overlapSawWrite = ref.bytes[ref.offset + 15] === (pat(13_015) ^ 0xff);
  dma.flush();
  // 5. Faults that are not the link's: refused range, range larger than staging.
  const refused = !dma.resolve(REFUSED_FROM, 16, false, ref);
  const tooBig = !dma.resolve(0, stagingBytes + 1, false, ref);
  const faultsBeforeDeath = dma.faults;
  dma.flush();
  // 6. The link dies: the failure latches, later resolutions fault at once, flush throws it.
  const deadFetch = !dma.resolve(DEAD_FROM, 16, false, ref);
  const afterDeath = !dma.resolve(0, 16, false, ref);
  let flushCode = 'none';
  try {
    dma.flush();
  } catch (err) {
    flushCode = (err as { code?: string }).code ?? 'uncoded';
  }
  const result: ProbeResult = {
    readBack,
    readAligned,
    overlapSawWrite,
    refused,
    tooBig,
    faultsBeforeDeath,
    deadFetch,
    afterDeath,
    flushCode,
  };
  parentPort?.postMessage({ result });
}

if (!isMainThread) run();
