/**
 * A borrowed NVMe SSD inside one of the borrower's domain threads — the same shadow device as a
 * lent NIC (LentNic.ts), for the NVMe controller: the lender's controller state (`NvmeState`:
 * registers, queue contexts, the media descriptor of the backing file on A) attached with an
 * NtbDmaResolver as its DMA path, and a LentFunction the UNCHANGED NvmeDriver runs against:
 *
 *  - BAR 0 is the controller's MMIO behind the lent BAR hook (lentMmioHook): each access is
 *    routed from B's root complex through the BAR window onto nvme0's BAR on A, paid and
 *    counted; a doorbell runs the controller inline in this (the writer's) thread, whose DMA —
 *    queue entries, PRP lists, data — goes A → NTB → B's IOMMU → the owner's memory; the media
 *    writes land in A's backing file (the file descriptor is shared by the process);
 *  - `dmaAddr(gpa)` = DMA window base + gpa, as for the NIC.
 *
 * Exclusive lease: the owner has the whole controller (admin queue included). Shared lease
 * (SmartIO, SharedNvme.ts): the borrower holds ONE I/O queue pair, `qid = lease.queue + 1`,
 * created for it by the lender's queue manager; the BAR filter (`sharedQueueFilter`) lets it read
 * the registers but write only its own two doorbells — CC, AQA/ASQ/ACQ, the admin doorbells and
 * every other host's doorbells are refused with PV_ERR_LEND_NOT_HOLDER before they reach the
 * device. Its DMA can only land in its own host's memory anyway: the resolver refuses any route
 * that does not end in the borrower's RAM — or in BAR 1 of an accelerator the Cluster mapped for
 * this lease (Cluster.mapP2p with the SSD as initiator, P2pNvme.ts: READs straight into device
 * memory, the lease's permission table in `peerAllow`).
 */

import { pvError } from '../../protocol/errors.js';
import { NvmeReg } from '../../protocol/nvme/NvmeRegs.js';
import type { PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { NvmeDevice, type NvmeState } from '../devices/nvme/NvmeDevice.js';
import { CqCtx, queueBase, SqCtx } from '../devices/nvme/NvmeLayout.js';
import type { IommuContext } from '../iommu/IommuContext.js';
import { LentFunction } from '../lending/LentFunction.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { type LentMmioData, lentMmioHook, type MmioFilter } from './LentNic.js';
import { type NtbDmaData, NtbDmaResolver } from './NtbDmaResolver.js';

/** One borrowed NVMe SSD as handed to a borrower's domain thread (structured-cloneable). */
export interface LentNvmeData extends NtbDmaData, LentMmioData {
  readonly kind: 'nvme';
  readonly bdf: string;
  /** The controller's state on the lender (the same buffers and media descriptor). */
  readonly state: NvmeState;
  /** Lender address of the DMA window onto the borrower's bus address 0. */
  readonly dmaWindowBase: number;
  /** Shared lease only: the I/O queue id this borrower may use (lease.queue + 1). */
  readonly qid?: number;
  /** Shared lease only: the mailbox to the lender's queue manager (SharedNvme.ts). */
  readonly mailbox?: SharedArrayBuffer;
}

/** What a shared borrower's program finds on its `pci` (a LentFunction) as `sharedQueue`. */
export interface SharedQueueInfo {
  /** The one I/O queue id this host may use. */
  readonly qid: number;
  /** Doorbell stride exponent of the controller (CAP.DSTRD). */
  readonly dstrd: number;
  /** The mailbox to the lender's queue manager (SharedNvme.ts: requestQueue). */
  readonly mailbox: SharedArrayBuffer;
}

/** A borrowed NVMe SSD attached in this thread. */
export interface AttachedLentNvme {
  readonly dev: NvmeDevice;
  readonly iommu: IommuContext;
  readonly pci: LentFunction;
  /** Lender bus address of B's bus address 0 (grant device maps add it). */
  readonly dmaBase: number;
}

/** Type guard: a lent-device record of the NVMe kind. */
export function isLentNvme(d: { readonly kind?: string }): d is LentNvmeData {
  return d.kind === 'nvme';
}

/**
 * The BAR rule of a shared lease: register reads are allowed, writes only to the SQ tail and CQ
 * head doorbells of `qid` (stride 4 << dstrd), nothing else.
 */
export function sharedQueueFilter(qid: number, dstrd: number): MmioFilter {
  const stride = 4 << dstrd;
  const sq = NvmeReg.DOORBELLS + 2 * qid * stride;
  const cq = sq + stride;
  return (kind, offset) => {
    if (offset === sq || offset === cq) return undefined;
    if (kind === 'read' && offset < NvmeReg.DOORBELLS) return undefined;
    if (offset >= NvmeReg.DOORBELLS) {
      const other = Math.floor((offset - NvmeReg.DOORBELLS) / stride / 2);
      return `holds I/O queue ${qid} only, not the doorbell of queue ${other}`;
    }
    return `may not write controller register 0x${offset.toString(16)} (the lender keeps the admin queue)`;
  };
}

/** Attaches every borrowed NVMe SSD of `list` in this thread, by name. */
export function attachLentNvmes(
  list: readonly LentNvmeData[],
  directory: MemoryDirectory,
): Map<string, AttachedLentNvme> {
  const out = new Map<string, AttachedLentNvme>();
  for (const data of list) {
    const resolver = new NtbDmaResolver(data, directory);
    const dev = new NvmeDevice(data.state, resolver);
    const inner: PciFunction = {
      name: data.name,
      kind: 'nvme',
      bdf: data.bdf,
      bars: [dev.mmio()],
      dmaAddr: (gpa: GuestPhysAddr) => (data.dmaWindowBase + gpa) as Iova,
    };
    const shared = data.qid !== undefined && data.mailbox !== undefined;
    const filter = shared ? sharedQueueFilter(data.qid as number, data.state.sizes.dstrd) : undefined;
    let lent: LentFunction | undefined;
    const hook = lentMmioHook(data, resolver, () => lent?.revoke('revoked by a forced return'), filter);
    lent = new LentFunction(inner, { lease: data.lease, onAccess: hook });
    if (shared) {
      const info: SharedQueueInfo = {
        qid: data.qid as number,
        dstrd: data.state.sizes.dstrd,
        mailbox: data.mailbox as SharedArrayBuffer,
      };
      Object.defineProperty(lent, 'sharedQueue', { value: info, enumerable: true });
    }
    out.set(data.name, { dev, iommu: resolver.iommu, pci: lent, dmaBase: data.dmaWindowBase });
  }
  return out;
}

/** The shared-queue info of a lent NVMe function, or undefined (exclusive, or not lent). */
export function sharedQueueOf(pci: PciFunction): SharedQueueInfo | undefined {
  const info = (pci as { sharedQueue?: SharedQueueInfo }).sharedQueue;
  return info;
}

/**
 * Commands the controller holds for the host on I/O queues `qids` (all when undefined): SQ
 * entries rung but not fetched, plus completions posted but not yet consumed (CQ head doorbell).
 * Read without the lock: a snapshot, as `inUse` needs.
 */
export function nvmeOutstanding(state: NvmeState, qids?: readonly number[]): number {
  const d = new Int32Array(state.dev);
  const list = qids ?? Array.from({ length: state.sizes.maxIoQueues }, (_, i) => i + 1);
  let n = 0;
  for (const qid of list) {
    if (!Number.isInteger(qid) || qid < 1 || qid > state.sizes.maxIoQueues) {
      throw pvError('PV_ERR_INVALID_ARG', `${state.sizes.name}: no I/O queue ${qid}`);
    }
    const q = queueBase(qid);
    // ORDERING: seq-cst loads of fields written under the controller lock; a snapshot.
    if (Atomics.load(d, q + SqCtx.VALID) !== 0) {
      const size = Atomics.load(d, q + SqCtx.SIZE);
      n += (Atomics.load(d, q + SqCtx.TAIL) - Atomics.load(d, q + SqCtx.HEAD) + size) % size;
    }
    if (Atomics.load(d, q + CqCtx.VALID) !== 0) {
      const size = Atomics.load(d, q + CqCtx.SIZE);
      n += (Atomics.load(d, q + CqCtx.TAIL) - Atomics.load(d, q + CqCtx.HEAD) + size) % size;
    }
  }
  return n;
}
