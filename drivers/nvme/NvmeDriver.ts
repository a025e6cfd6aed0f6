/**
 * The native driver of pvio's NVMe SSD. Like the RDMA NIC driver it sees only a `PciFunction`
 * (BAR 0 per protocol/nvme/NvmeRegs.ts, `dmaAddr` for its own memory) and the owning domain's
 * `GuestMemory`, from which it allocates its queues and PRP list pages — so the same driver runs
 * native (IOMMU bypass), in a passthrough guest (IOMMU translate), and in a driver domain.
 *
 * Bring-up (NVMe 1.4 §7.6.1): disable if enabled and wait for CSTS.RDY = 0; program AQA, ASQ,
 * ACQ; enable with 4 KiB pages and 64/16-byte entries; wait for RDY (CFS → error); Identify
 * Controller and Namespace 1; Set Features Number of Queues; create each I/O CQ then its SQ.
 *
 * I/O: `read` / `write` / `flush` are synchronous (submit, ring, poll the completion by its
 * phase tag). `submitIo` + `ring` + `poll` / `wait` keep several commands in flight per queue
 * (queue depth up to entries − 1). `passthru` submits a raw 64-byte command as `nvme-cli`'s
 * passthrough ioctl does (tests use it to send hostile commands). Failures raise
 * PV_ERR_BLK_BAD_SECTOR (LBA Out of Range) or PV_ERR_BLK_IO with the NVMe status in the message.
 *
 * Single-threaded: one driver instance per domain thread.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import {
  AdminOpcode,
  encodeSqe,
  FeatureId,
  IDENTIFY_BYTES,
  IdentifyCns,
  NVME_NSID,
  NvmeStatus,
  NvmOpcode,
  nvmeStatusName,
  QueueCdw,
  SQE_WORDS,
} from '../../protocol/nvme/NvmeCommand.js';
import {
  CapHi,
  CapLo,
  CC_SHN_MASK,
  CcField,
  CQES_LOG2,
  CstsBit,
  NVME_VERSION,
  NvmeReg,
  SQES_LOG2,
} from '../../protocol/nvme/NvmeRegs.js';
import type { MmioRegion, PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { adaptiveWait } from '../../protocol/wait.js';
import { parseIdentity } from './Identify.js';
import { NvmeQueuePair } from './NvmeQueuePair.js';
import { buildPrps, listPagesFor } from './PrpBuilder.js';
import type { NvmeCompletion, NvmeDriverOptions, NvmeIdentity, NvmeIoOp } from './Types.js';

/** Polls of CSTS while waiting for RDY to change, between 1 ms sleeps. */
const READY_POLL_MS = 1;

/** The NVMe driver; see the file comment. */
export class NvmeDriver {
  /** Filled by bring-up. */
  readonly identity: NvmeIdentity;
  private readonly _pci: PciFunction;
  private readonly _mem: GuestMemory;
  private readonly _bar: MmioRegion;
  private readonly _dstrd: number;
  private readonly _spin: number;
  private readonly _timeoutMs: number;
  private readonly _admin: NvmeQueuePair;
  private readonly _io: NvmeQueuePair[] = [];
  private readonly _cmd = new Int32Array(SQE_WORDS);
  /** Completions reaped while waiting for another CID, keyed qid × 65536 + cid. */
  private readonly _done = new Map<number, NvmeCompletion>();
  private _closed = false;

  /** Attaches to `pci` (an `nvme` function) and brings the controller up (see the file comment). */
  constructor(pci: PciFunction, mem: GuestMemory, opts: NvmeDriverOptions = {}) {
    if (pci.kind !== 'nvme') throw pvError('PV_ERR_CONFIG', `${pci.name} is a ${pci.kind}, not an nvme`);
    const bar = pci.bars[0];
    if (!bar || bar.size < NvmeReg.DOORBELLS + 8)
      throw pvError('PV_ERR_CONFIG', `${pci.name}: BAR 0 missing or too small`);
    const vs = bar.read32(NvmeReg.VS) >>> 0;
    if (vs >>> 16 !== NVME_VERSION >>> 16) {
      throw pvError('PV_ERR_NOT_SUPPORTED', `${pci.name}: NVMe version ${vs.toString(16)}, driver speaks 1.x`);
    }
    const capLo = bar.read32(NvmeReg.CAP_LO) >>> 0;
    const capHi = bar.read32(NvmeReg.CAP_HI) >>> 0;
    if ((capHi & CapHi.CSS_NVM) === 0 || ((capHi >>> CapHi.MPSMIN_SHIFT) & 0xf) !== 0) {
      throw pvError('PV_ERR_NOT_SUPPORTED', `${pci.name}: no NVM command set or no 4 KiB pages`);
    }
    this._pci = pci;
    this._mem = mem;
    this._bar = bar;
    this._dstrd = capHi & CapHi.DSTRD_MASK;
    this._spin = opts.spinBudget ?? 1000;
    this._timeoutMs = opts.timeoutMs ?? 10_000;
    const mqes = (capLo & CapLo.MQES_MASK) + 1;
    const adminEntries = Math.min(opts.adminEntries ?? 32, mqes, 4096);
    const entries = Math.min(opts.queueEntries ?? 64, mqes);
    if (!Number.isInteger(entries) || entries < 2 || !Number.isInteger(adminEntries) || adminEntries < 2) {
      throw pvError('PV_ERR_INVALID_ARG', `${pci.name}: queues need at least 2 entries`);
    }

    // Reset, then program the admin queues and enable (NVMe 1.4 §7.6.1).
    if ((bar.read32(NvmeReg.CC) & CcField.EN) !== 0) {
      bar.write32(NvmeReg.CC, 0);
      this._waitReady(false);
    }
    this._admin = new NvmeQueuePair(pci, mem, 0, adminEntries, this._dstrd, 1);
    bar.write32(NvmeReg.AQA, (adminEntries - 1) | ((adminEntries - 1) << 16));
    bar.write32(NvmeReg.ASQ_LO, this._admin.sqDma % 0x1_0000_0000);
    bar.write32(NvmeReg.ASQ_HI, Math.floor(this._admin.sqDma / 0x1_0000_0000));
    bar.write32(NvmeReg.ACQ_LO, this._admin.cqDma % 0x1_0000_0000);
    bar.write32(NvmeReg.ACQ_HI, Math.floor(this._admin.cqDma / 0x1_0000_0000));
    bar.write32(NvmeReg.CC, CcField.EN | (SQES_LOG2 << CcField.IOSQES_SHIFT) | (CQES_LOG2 << CcField.IOCQES_SHIFT));
    this._waitReady(true);

    // Identify (one scratch page, freed after).
    const page = mem.allocPages(1);
    let ctrl: Uint8Array;
    let ns: Uint8Array;
    try {
      const dma = pci.dmaAddr(page);
      this._adminOk(AdminOpcode.IDENTIFY, 0, dma, IdentifyCns.CONTROLLER, 0, 'Identify Controller');
      ctrl = mem.view(page, IDENTIFY_BYTES).slice();
      this._adminOk(AdminOpcode.IDENTIFY, NVME_NSID, dma, IdentifyCns.NAMESPACE, 0, 'Identify Namespace');
      ns = mem.view(page, IDENTIFY_BYTES).slice();
    } finally {
      mem.freePages(page, 1);
    }
    const want = opts.ioQueues ?? 1;
    if (!Number.isInteger(want) || want < 1 || want > 0xfffe) {
      throw pvError('PV_ERR_INVALID_ARG', `${pci.name}: ioQueues must be an integer ≥ 1, got ${want}`);
    }
    const nq = this._adminOk(
      AdminOpcode.SET_FEATURES,
      0,
      0,
      FeatureId.NUMBER_OF_QUEUES,
      (want - 1) | ((want - 1) << 16),
      'Set Features',
    );
    const granted = Math.min(want, (nq & 0xffff) + 1, (nq >>> 16) + 1);
    const id = parseIdentity(ctrl, ns, vs, opts.maxTransferBytes ?? 2 << 20, granted, entries);
    this.identity = id;
    const listPages = listPagesFor(id.maxTransferBytes);
    for (let qid = 1; qid <= granted; qid++) {
      const q = new NvmeQueuePair(pci, mem, qid, entries, this._dstrd, listPages);
      const size = ((entries - 1) << QueueCdw.HIGH_SHIFT) | qid;
      this._adminOk(AdminOpcode.CREATE_IO_CQ, 0, q.cqDma, size, QueueCdw.PC, `Create I/O CQ ${qid}`);
      this._adminOk(
        AdminOpcode.CREATE_IO_SQ,
        0,
        q.sqDma,
        size,
        QueueCdw.PC | (qid << QueueCdw.HIGH_SHIFT),
        `Create I/O SQ ${qid}`,
      );
      this._io.push(q);
    }
  }

  /** Name of the PCI function (`nvme0`). */
  get name(): string {
    return this._pci.name;
  }

  /** READ `blocks` logical blocks from `lba` into the driver's memory at `gpa`; throws on failure. */
  read(lba: number, blocks: number, gpa: GuestPhysAddr, qid = 1): void {
    this.check(this.wait(qid, this.submitIo('read', lba, blocks, this._dmaOf(gpa, blocks), qid)), 'READ', lba, blocks);
  }

  /** WRITE `blocks` logical blocks at `lba` from `gpa`; throws on failure. */
  write(lba: number, blocks: number, gpa: GuestPhysAddr, qid = 1): void {
    this.check(
      this.wait(qid, this.submitIo('write', lba, blocks, this._dmaOf(gpa, blocks), qid)),
      'WRITE',
      lba,
      blocks,
    );
  }

  /** FLUSH: everything written so far reaches the media (fsync); throws on failure. */
  flush(qid = 1): void {
    this.check(this.wait(qid, this.submitIo('flush', 0, 0, 0 as Iova, qid)), 'FLUSH', 0, 0);
  }

  /**
   * Queues one command on I/O queue `qid` without ringing the doorbell (call `ring`); returns
   * its CID. `dma` is a device address of a buffer contiguous in device address space (the
   * driver's own memory through `pci.dmaAddr`, or pages a backend mapped for the device).
   * PV_ERR_RING_FULL when the queue has entries − 1 commands in flight (poll first).
   */
  submitIo(op: NvmeIoOp, lba: number, blocks: number, dma: Iova, qid = 1): number {
    const q = this._queue(qid);
    const cmd = this._cmd;
    if (op === 'flush') {
      const cid = q.takeCid();
      encodeSqe(cmd, 0, NvmOpcode.FLUSH, 0, NVME_NSID, 0, 0, 0);
      q.push(cmd, cid);
      return cid;
    }
    const id = this.identity;
    if (!Number.isSafeInteger(lba) || lba < 0 || lba > id.capacityBlocks - blocks) {
      throw pvError(
        'PV_ERR_BLK_BAD_SECTOR',
        `${this.name}: blocks [${lba}, +${blocks}) outside 0 … ${id.capacityBlocks}`,
      );
    }
    const bytes = blocks * id.lbaBytes;
    if (!Number.isInteger(blocks) || blocks < 1 || bytes > id.maxTransferBytes) {
      throw pvError(
        'PV_ERR_BLK_BAD_SEGMENT',
        `${this.name}: ${blocks} blocks: 1 … ${id.maxTransferBytes / id.lbaBytes}`,
      );
    }
    const cid = q.takeCid();
    try {
      const [prp1, prp2] = buildPrps(this._pci, this._mem, q.listPages[cid], dma, bytes);
      const opc = op === 'read' ? NvmOpcode.READ : NvmOpcode.WRITE;
      encodeSqe(
        cmd,
        0,
        opc,
        0,
        NVME_NSID,
        prp1,
        prp2,
        lba % 0x1_0000_0000,
        Math.floor(lba / 0x1_0000_0000),
        blocks - 1,
      );
    } catch (err) {
      q.giveBack(cid);
      throw err;
    }
    q.push(cmd, cid);
    return cid;
  }

  /** Rings the SQ tail doorbell of `qid` (one MMIO write for every command queued since). */
  ring(qid = 1): void {
    this._queue(qid).ring();
  }

  /** Reaps the completions posted on `qid` so far; `onCqe` sees each. Returns how many. */
  poll(qid = 1, onCqe?: (c: NvmeCompletion) => void): number {
    return this._queue(qid).reap((c) => (onCqe ? onCqe(c) : this._done.set(qid * 0x10000 + c.cid, c)));
  }

  /**
   * Rings `qid` and waits for CID `cid` to complete (polling the CQ by its phase tag, spinning
   * then sleeping on the next entry); completions of other CIDs reaped meanwhile are kept for
   * their own `wait`. PV_ERR_TIMEOUT after `timeoutMs`.
   */
  wait(qid: number, cid: number): NvmeCompletion {
    const q = qid === 0 ? this._admin : this._queue(qid);
    q.ring();
    const key = qid * 0x10000 + cid;
    const deadline = Date.now() + this._timeoutMs;
    for (;;) {
      q.reap((c) => this._done.set(qid * 0x10000 + c.cid, c));
      const c = this._done.get(key);
      if (c !== undefined) {
        this._done.delete(key);
        return c;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw pvError('PV_ERR_TIMEOUT', `${this.name}: command ${cid} on queue ${qid} did not complete`);
      const { words, index } = q.headWord();
      // ORDERING: seq-cst load of the head entry's phase word; if the controller posted it since
      // the reap above, reap again instead of sleeping on a value that already changed.
      const seen = Atomics.load(words, index);
      if (((seen >>> 16) & 1) === q.phase) continue;
      // Bounded slices: the deadline is re-checked at least every 10 ms.
      adaptiveWait(words, index, seen, this._spin, Math.min(left, 10));
    }
  }

  /** Throws for a failed completion (PV_ERR_BLK_BAD_SECTOR / PV_ERR_BLK_IO with the status). */
  check(c: NvmeCompletion, what: string, lba: number, blocks: number): void {
    if (c.status === NvmeStatus.SUCCESS) return;
    const text = `${this.name}: ${what} lba ${lba} +${blocks} failed: NVMe status 0x${c.status.toString(16).padStart(3, '0')} (${nvmeStatusName(c.status)})`;
    throw pvError(c.status === NvmeStatus.LBA_OUT_OF_RANGE ? 'PV_ERR_BLK_BAD_SECTOR' : 'PV_ERR_BLK_IO', text);
  }

  /**
   * Submits a raw 16-word command on queue `qid` (0 = admin) — its CID field is replaced by the
   * driver's — and waits for its completion, which is returned whatever its status.
   */
  passthru(qid: number, words: Int32Array): NvmeCompletion {
    const q = qid === 0 ? this._admin : this._queue(qid);
    const cid = q.takeCid();
    q.push(words, cid);
    return this.wait(qid, cid);
  }

  /**
   * Orderly stop: deletes the I/O queues, notifies shutdown (CC.SHN = normal: the controller
   * flushes its cache) and disables the controller. The queues' memory stays allocated.
   */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    for (const q of this._io.reverse()) {
      this._adminOk(AdminOpcode.DELETE_IO_SQ, 0, 0, q.qid, 0, `Delete I/O SQ ${q.qid}`);
      this._adminOk(AdminOpcode.DELETE_IO_CQ, 0, 0, q.qid, 0, `Delete I/O CQ ${q.qid}`);
    }
    this._io.length = 0;
    const cc = this._bar.read32(NvmeReg.CC);
    this._bar.write32(NvmeReg.CC, (cc & ~(CC_SHN_MASK << CcField.SHN_SHIFT)) | (1 << CcField.SHN_SHIFT));
    this._waitCsts(CstsBit.SHST_MASK, CstsBit.SHST_COMPLETE);
    this._bar.write32(NvmeReg.CC, 0);
    this._waitReady(false);
  }

  private _queue(qid: number): NvmeQueuePair {
    const q = this._io[qid - 1];
    if (q === undefined || this._closed) {
      throw pvError('PV_ERR_INVALID_ARG', `${this.name}: no I/O queue ${qid} (1 … ${this._io.length})`);
    }
    return q;
  }

  private _dmaOf(gpa: GuestPhysAddr, blocks: number): Iova {
    const bytes = blocks * this.identity.lbaBytes;
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw pvError('PV_ERR_BLK_BAD_SEGMENT', `${this.name}: ${blocks} blocks is not a transfer`);
    }
    this._mem.checkRange(gpa, bytes);
    return this._pci.dmaAddr(gpa);
  }

  /** Runs an admin command and returns DW0; PV_ERR_BLK_IO with the status when it fails. */
  private _adminOk(opc: number, nsid: number, prp1: number, cdw10: number, cdw11: number, what: string): number {
    encodeSqe(this._cmd, 0, opc, 0, nsid, prp1, 0, cdw10, cdw11);
    const c = this.passthru(0, this._cmd);
    if (c.status !== NvmeStatus.SUCCESS) {
      throw pvError(
        'PV_ERR_BLK_IO',
        `${this._pci.name}: ${what} failed: NVMe status 0x${c.status.toString(16)} (${nvmeStatusName(c.status)})`,
      );
    }
    return c.dw0;
  }

  private _waitReady(ready: boolean): void {
    this._waitCsts(CstsBit.RDY, ready ? CstsBit.RDY : 0);
  }

  /** Polls CSTS until `(csts & mask) === want`; CFS or the CAP.TO budget → PV_ERR_BLK_IO. */
  private _waitCsts(mask: number, want: number): void {
    const to = ((this._bar.read32(NvmeReg.CAP_LO) >>> CapLo.TO_SHIFT) & 0xff) * 500;
    const deadline = Date.now() + Math.max(to, 500);
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      const csts = this._bar.read32(NvmeReg.CSTS);
      if ((csts & mask) === want) return;
      if ((csts & CstsBit.CFS) !== 0)
        throw pvError('PV_ERR_BLK_IO', `${this._pci.name}: controller fatal status (CSTS.CFS)`);
      if (Date.now() > deadline)
        throw pvError('PV_ERR_TIMEOUT', `${this._pci.name}: CSTS did not reach ${want} under mask ${mask}`);
      // ORDERING: nobody notifies `sleeper`; a plain 1 ms sleep between polls of CSTS.
      Atomics.wait(sleeper, 0, 0, READY_POLL_MS);
    }
  }
}
