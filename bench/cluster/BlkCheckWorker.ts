/**
 * A native program on a borrower host: the UNCHANGED NvmeDriver (drivers/nvme) over a lent
 * NVMe SSD whose controller runs on another host process — every register access a RemoteBar
 * call over the host link, every DMA of the controller a `dma` message back into this host's
 * memory (hypervisor-sim/ntb/). It writes a pseudo-random pattern, reads it back into another
 * buffer and compares (`check`), or keeps doing so until a call fails (`loop`: what a workload
 * sees when the lender dies).
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { NvmeDriver } from '../../drivers/nvme/NvmeDriver.js';
import { SharedArrayGuestMemory } from '../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { RemoteBar } from '../../hypervisor-sim/ntb/RemoteBar.js';
import type { PciFunction } from '../../protocol/Pci.js';
import { domId, type GuestPhysAddr, type Iova } from '../../protocol/Types.js';

export interface BlkCheckData {
  readonly mode: 'check' | 'loop';
  readonly memory: SharedArrayBuffer;
  readonly barMailbox: SharedArrayBuffer;
  readonly lender: string;
  readonly lease: string;
  readonly barSize: number;
  readonly bdf: string;
  /** check: 512-byte blocks to write and read back (in runs of ≤ 64). */
  readonly blocks: number;
  /** loop: stop after this many ms without a failure. */
  readonly maxMs: number;
}

export type BlkCheckMsg =
  | { type: 'ready' }
  | { type: 'checked'; bytes: number; ok: boolean; firstBad: number; capacityBlocks: number }
  | { type: 'looped'; iterations: number; code?: string; message?: string };

/** xorshift32 pattern, different per run. */
function fill(bytes: Uint8Array, at: number, len: number, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[at + i] = x & 0xff;
  }
}

function run(): void {
  const d = workerData as BlkCheckData;
  const post = (m: BlkCheckMsg) => parentPort?.postMessage(m);
  const mem = new SharedArrayGuestMemory(domId(0), d.memory);
  const pci: PciFunction = {
    name: 'nvme0',
    kind: 'nvme',
    bdf: d.bdf,
    bars: [new RemoteBar({ mailbox: d.barMailbox, lender: d.lender, lease: d.lease, size: d.barSize })],
    // IOMMU off on the borrower: the bus address is the physical address.
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  const drv = new NvmeDriver(pci, mem, { timeoutMs: 10_000, queueEntries: 16 });
  post({ type: 'ready' });
  const runBlocks = 64;
  const src = mem.allocPages((runBlocks * 512) / 4096);
  const dst = mem.allocPages((runBlocks * 512) / 4096);
  if (d.mode === 'check') {
    let firstBad = -1;
    let done = 0;
    for (let lba = 0; done < d.blocks; lba += runBlocks) {
      const n = Math.min(runBlocks, d.blocks - done);
      fill(mem.bytes, src, n * 512, lba + 1);
      mem.bytes.fill(0, dst, dst + n * 512);
      drv.write(lba, n, src);
      drv.read(lba, n, dst);
      for (let i = 0; i < n * 512 && firstBad < 0; i++) {
        if (mem.bytes[src + i] !== mem.bytes[dst + i]) firstBad = lba * 512 + i;
      }
      done += n;
    }
    drv.flush();
    post({
      type: 'checked',
      bytes: done * 512,
      ok: firstBad < 0,
      firstBad,
      capacityBlocks: drv.identity.capacityBlocks,
    });
    return;
  }
  const end = performance.now() + d.maxMs;
  let i = 0;
  try {
    for (; performance.now() < end; i++) {
      fill(mem.bytes, src, 4096, i + 1);
      drv.write((i % 64) * 8, 8, src);
      drv.read((i % 64) * 8, 8, dst);
    }
    post({ type: 'looped', iterations: i });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    post({ type: 'looped', iterations: i, code: e.code ?? 'PV_ERR_UNKNOWN', message: e.message ?? String(err) });
  }
}

if (!isMainThread) run();
