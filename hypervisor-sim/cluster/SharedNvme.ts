/**
 * Shared use of one NVMe SSD by several hosts at once (SmartIO, TOCS 2021 §5: each host its own
 * submission/completion queue pair). Design:
 *
 *  - The ADMIN queue stays with the lender: a queue manager on A (this class, in the Cluster's
 *    thread, acting as A's SmartIO service) enables the controller with an admin queue pair in
 *    its own memory — a region at the top of A's bus space no domain of A can own while the SSD
 *    is lent — and asks for every I/O queue the controller has (Set Features).
 *  - A shared lease holds queue index k (registry) → I/O queue id `qid = k + 1`. The borrower
 *    puts its SQ and CQ in its own memory and asks the manager, through its lease's MAILBOX, to
 *    create them; the manager issues CREATE_IO_CQ / CREATE_IO_SQ for exactly that qid — the
 *    mailbox carries no qid, so a host can create, and delete, only its own queues. While it
 *    serves one host's request the device's queue checks resolve only through THAT host's DMA
 *    window: a queue address in another host's memory is refused (DATA_TRANSFER_ERROR).
 *  - The borrower's BAR view writes only its two doorbells (LentNvme.sharedQueueFilter); its
 *    doorbells run the controller inline in its own thread, whose DMA resolver reaches only its
 *    own memory. When its owner goes or the lease ends the manager deletes the pair (`dropQueue`).
 *
 * Mailbox (one SharedArrayBuffer per shared lease, Int32 words):
 * ```
 * word  byte  field     writer     note
 * 0     0     MAGIC     manager    'SNVQ'
 * 1     4     REQ_SEQ   borrower   bumped (Atomics.add + notify) after the fields below
 * 2     8     DONE_SEQ  manager    = REQ_SEQ once handled (store + notify)
 * 3     12    OP        borrower   1 create, 2 delete
 * 4     16    ENTRIES   borrower   queue entries (both queues)
 * 5     20    SQ_LO     borrower   SQ device address (lender bus: pci.dmaAddr)
 * 6     24    SQ_HI     borrower
 * 7     28    CQ_LO     borrower   CQ device address
 * 8     32    CQ_HI     borrower
 * 9     36    STATUS    manager    0 done; > 0 NVMe status of the failed admin command; -1 bad request
 * 10    40    QID       manager    the queue id it acted on
 * 11    44    reserved  -          zero (to byte 64)
 * ```
 * Every field a borrower writes is hostile input to the manager.
 */

import { pvError } from '../../protocol/errors.js';
import {
  AdminOpcode,
  CQE_BYTES,
  CqeDw3,
  CqeWord,
  encodeSqe,
  FeatureId,
  NvmeStatus,
  QueueCdw,
  SQE_BYTES,
  SQE_WORDS,
} from '../../protocol/nvme/NvmeCommand.js';
import {
  CcField,
  CQES_LOG2,
  CstsBit,
  cqHeadDoorbell,
  NvmeReg,
  SQES_LOG2,
  sqTailDoorbell,
} from '../../protocol/nvme/NvmeRegs.js';
import type { MmioRegion } from '../../protocol/Pci.js';
import { waitAsync } from '../../protocol/wait.js';
import { NvmeDevice, type NvmeState } from '../devices/nvme/NvmeDevice.js';
import { CqCtx, queueBase, SqCtx } from '../devices/nvme/NvmeLayout.js';
import type { DmaRef, DmaResolver } from '../iommu/DmaResolver.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { LentNvmeData } from './LentNvme.js';
import { NtbDmaResolver } from './NtbDmaResolver.js';

/** 'SNVQ'. */
export const MAILBOX_MAGIC = 0x534e5651;
/** Bytes of a mailbox. */
export const MAILBOX_BYTES = 64;

/** Mailbox word indices (see the file comment). */
export const enum MailboxWord {
  MAGIC = 0,
  REQ_SEQ = 1,
  DONE_SEQ = 2,
  OP = 3,
  ENTRIES = 4,
  SQ_LO = 5,
  SQ_HI = 6,
  CQ_LO = 7,
  CQ_HI = 8,
  STATUS = 9,
  QID = 10,
}

/** Mailbox operations. */
export const enum MailboxOp {
  CREATE = 1,
  DELETE = 2,
}

/** Bytes of the manager's memory (admin SQ page, admin CQ page). */
const MANAGER_BYTES = 2 * 4096;
/** Admin queue entries (one page each way). */
const ADMIN_ENTRIES = 16;

/**
 * Borrower side: asks the lender's manager to create (or delete) this host's I/O queue pair and
 * waits for the answer (blocking: call it from a domain thread). Returns the manager's STATUS
 * (0 = done). PV_ERR_TIMEOUT if the manager does not answer within `timeoutMs`.
 */
export function requestQueue(
  mailbox: SharedArrayBuffer,
  op: MailboxOp,
  entries: number,
  sqDma: number,
  cqDma: number,
  timeoutMs = 10_000,
): number {
  const w = new Int32Array(mailbox);
  // ORDERING: seq-cst load pairs with the manager's store of MAGIC.
  if (w.length * 4 !== MAILBOX_BYTES || Atomics.load(w, MailboxWord.MAGIC) !== MAILBOX_MAGIC) {
    throw pvError('PV_ERR_CONFIG', 'not a shared NVMe queue mailbox');
  }
  // ORDERING: plain-as-atomic stores of the request, published by the REQ_SEQ add below.
  Atomics.store(w, MailboxWord.OP, op);
  Atomics.store(w, MailboxWord.ENTRIES, entries);
  Atomics.store(w, MailboxWord.SQ_LO, (sqDma % 0x1_0000_0000) | 0);
  Atomics.store(w, MailboxWord.SQ_HI, Math.floor(sqDma / 0x1_0000_0000));
  Atomics.store(w, MailboxWord.CQ_LO, (cqDma % 0x1_0000_0000) | 0);
  Atomics.store(w, MailboxWord.CQ_HI, Math.floor(cqDma / 0x1_0000_0000));
  // ORDERING: seq-cst add publishes the fields; the notify wakes the manager's waitAsync.
  const seq = (Atomics.add(w, MailboxWord.REQ_SEQ, 1) + 1) | 0;
  Atomics.notify(w, MailboxWord.REQ_SEQ);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // ORDERING: seq-cst load pairs with the manager's store of DONE_SEQ (after STATUS).
    const done = Atomics.load(w, MailboxWord.DONE_SEQ);
    if (done === seq) return Atomics.load(w, MailboxWord.STATUS);
    const left = deadline - Date.now();
    if (left <= 0) throw pvError('PV_ERR_TIMEOUT', 'the lender queue manager did not answer');
    // ORDERING: sleeps only while DONE_SEQ is still `done`; the manager notifies after storing.
    Atomics.wait(w, MailboxWord.DONE_SEQ, done, Math.min(left, 50));
  }
}

/** What a manager is built from. */
export interface SharedNvmeOptions {
  /** The controller (the lender's NvmeState). */
  readonly state: NvmeState;
  /** The lender's bus space; the manager's memory is its top MANAGER_BYTES. */
  readonly ramBytes: number;
}

interface Member {
  readonly qid: number;
  readonly mailbox: Int32Array;
  readonly data: LentNvmeData;
  readonly memories: () => MemoryDirectory;
  stopped: boolean;
}

/** The lender's queue manager of one shareable NVMe SSD (see the file comment). */
export class SharedNvmeManager implements DmaResolver {
  private readonly _state: NvmeState;
  private readonly _bar: MmioRegion;
  private readonly _mem: Uint8Array;
  private readonly _memWords: Int32Array;
  private readonly _busBase: number;
  private readonly _members = new Map<number, Member>();
  /** The host whose request is being served (its window is the only one queue checks reach). */
  private _serving: NtbDmaResolver | undefined;
  private _enabled = false;
  private _sqTail = 0;
  private _cqHead = 0;
  private _phase = 1;

  constructor(o: SharedNvmeOptions) {
    this._state = o.state;
    const buf = new SharedArrayBuffer(MANAGER_BYTES);
    this._mem = new Uint8Array(buf);
    this._memWords = new Int32Array(buf);
    this._busBase = o.ramBytes - MANAGER_BYTES;
    this._bar = new NvmeDevice(o.state, this).mmio();
  }

  /** Registers a shared borrower on `qid` and starts serving its mailbox; returns the mailbox. */
  addHost(qid: number, data: LentNvmeData, memories: () => MemoryDirectory): SharedArrayBuffer {
    if (this._members.has(qid)) throw pvError('PV_ERR_LEND_BUSY', `${data.name}: queue ${qid} is taken`);
    this._enable();
    const buf = new SharedArrayBuffer(MAILBOX_BYTES);
    const mailbox = new Int32Array(buf);
    // ORDERING: seq-cst store; requestQueue checks it before anything else.
    Atomics.store(mailbox, MailboxWord.MAGIC, MAILBOX_MAGIC);
    const m: Member = { qid, mailbox, data, memories, stopped: false };
    this._members.set(qid, m);
    void this._serve(m);
    return buf;
  }

  /**
   * The borrower on `qid` is gone: its mailbox is no longer served and its queues are deleted.
   * When it was the last one the controller is disabled, so a later exclusive borrower (whose
   * driver brings the controller up itself) or a later first shared borrower starts clean.
   */
  removeHost(qid: number | undefined): void {
    if (qid === undefined) return;
    const m = this._members.get(qid);
    if (m === undefined) return;
    m.stopped = true;
    // ORDERING: wakes the serve loop's waitAsync so it sees `stopped`.
    Atomics.notify(m.mailbox, MailboxWord.REQ_SEQ);
    this._members.delete(qid);
    try {
      this.dropQueue(qid);
    } finally {
      if (this._members.size === 0 && this._enabled) {
        this._enabled = false;
        this._bar.write32(NvmeReg.CC, 0);
      }
    }
  }

  /** Deletes I/O queue pair `qid` if it exists (idempotent). */
  dropQueue(qid: number): void {
    if (!this._enabled) return;
    const d = new Int32Array(this._state.dev);
    const q = queueBase(qid);
    // ORDERING: seq-cst loads of fields the controller writes under its lock; the admin
    // commands below re-check them under the lock.
    if (Atomics.load(d, q + SqCtx.VALID) !== 0) this._admin(AdminOpcode.DELETE_IO_SQ, 0, qid, 0);
    if (Atomics.load(d, q + CqCtx.VALID) !== 0) this._admin(AdminOpcode.DELETE_IO_CQ, 0, qid, 0);
  }

  /** Stops serving every mailbox (the Cluster shuts down or withdraws the SSD). */
  stop(): void {
    for (const qid of [...this._members.keys()]) this.removeHost(qid);
  }

  resolve(addr: number, len: number, write: boolean, out: DmaRef): boolean {
    if (addr >= this._busBase && len <= MANAGER_BYTES && addr - this._busBase <= MANAGER_BYTES - len) {
      out.bytes = this._mem;
      out.words = this._memWords;
      out.offset = addr - this._busBase;
      out.domid = -1;
      return true;
    }
    return this._serving?.resolve(addr, len, write, out) ?? false;
  }

  generation(): number {
    return 0;
  }

  /** Serves one borrower's mailbox until `removeHost`. */
  private async _serve(m: Member): Promise<void> {
    let seen = 0;
    while (!m.stopped) {
      // ORDERING: waits while REQ_SEQ is `seen`; requestQueue adds then notifies.
      const r = waitAsync(m.mailbox, MailboxWord.REQ_SEQ, seen);
      if (r.async) await r.value;
      if (m.stopped) return;
      // ORDERING: seq-cst load; the request's fields were stored before this add.
      const seq = Atomics.load(m.mailbox, MailboxWord.REQ_SEQ);
      if (seq === seen) continue;
      seen = seq;
      let status: number;
      try {
        status = this._handle(m);
      } catch {
        status = -1;
      }
      Atomics.store(m.mailbox, MailboxWord.STATUS, status);
      Atomics.store(m.mailbox, MailboxWord.QID, m.qid);
      // ORDERING: seq-cst store after STATUS; the borrower's load of DONE_SEQ sees STATUS.
      Atomics.store(m.mailbox, MailboxWord.DONE_SEQ, seq);
      Atomics.notify(m.mailbox, MailboxWord.DONE_SEQ);
    }
  }

  /** One request (hostile fields): create or delete the member's own queue pair. */
  private _handle(m: Member): number {
    const w = m.mailbox;
    const op = Atomics.load(w, MailboxWord.OP);
    if (op === MailboxOp.DELETE) {
      this.dropQueue(m.qid);
      return 0;
    }
    if (op !== MailboxOp.CREATE) return -1;
    const entries = Atomics.load(w, MailboxWord.ENTRIES);
    if (!Number.isInteger(entries) || entries < 2 || entries > this._state.sizes.maxQueueEntries) return -1;
    const join = (lo: number, hi: number): number => (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
    const sq = join(Atomics.load(w, MailboxWord.SQ_LO), Atomics.load(w, MailboxWord.SQ_HI));
    const cq = join(Atomics.load(w, MailboxWord.CQ_LO), Atomics.load(w, MailboxWord.CQ_HI));
    if (!Number.isSafeInteger(sq) || !Number.isSafeInteger(cq)) return -1;
    const size = ((entries - 1) << QueueCdw.HIGH_SHIFT) | m.qid;
    this._serving = new NtbDmaResolver(m.data, m.memories());
    try {
      const st = this._admin(AdminOpcode.CREATE_IO_CQ, cq, size, QueueCdw.PC);
      if (st !== NvmeStatus.SUCCESS) return st;
      const st2 = this._admin(AdminOpcode.CREATE_IO_SQ, sq, size, QueueCdw.PC | (m.qid << QueueCdw.HIGH_SHIFT));
      if (st2 !== NvmeStatus.SUCCESS) this._admin(AdminOpcode.DELETE_IO_CQ, 0, m.qid, 0);
      return st2;
    } finally {
      this._serving = undefined;
    }
  }

  /** Enables the controller with the manager's admin queue and every I/O queue (once). */
  private _enable(): void {
    if (this._enabled) return;
    const bar = this._bar;
    if ((bar.read32(NvmeReg.CC) & CcField.EN) !== 0) bar.write32(NvmeReg.CC, 0);
    this._mem.fill(0);
    const asq = this._busBase;
    const acq = this._busBase + 4096;
    bar.write32(NvmeReg.AQA, (ADMIN_ENTRIES - 1) | ((ADMIN_ENTRIES - 1) << 16));
    bar.write32(NvmeReg.ASQ_LO, asq % 0x1_0000_0000);
    bar.write32(NvmeReg.ASQ_HI, Math.floor(asq / 0x1_0000_0000));
    bar.write32(NvmeReg.ACQ_LO, acq % 0x1_0000_0000);
    bar.write32(NvmeReg.ACQ_HI, Math.floor(acq / 0x1_0000_0000));
    bar.write32(NvmeReg.CC, CcField.EN | (SQES_LOG2 << CcField.IOSQES_SHIFT) | (CQES_LOG2 << CcField.IOCQES_SHIFT));
    // The inline controller is ready at once, or refused the configuration.
    if ((bar.read32(NvmeReg.CSTS) & CstsBit.RDY) === 0) {
      throw pvError('PV_ERR_BLK_IO', `${this._state.sizes.name}: controller did not become ready`);
    }
    this._sqTail = 0;
    this._cqHead = 0;
    this._phase = 1;
    this._enabled = true;
    const n = this._state.sizes.maxIoQueues - 1;
    const st = this._admin(AdminOpcode.SET_FEATURES, 0, FeatureId.NUMBER_OF_QUEUES, n | (n << 16));
    if (st !== NvmeStatus.SUCCESS) throw pvError('PV_ERR_BLK_IO', `Set Features failed: status 0x${st.toString(16)}`);
  }

  /**
   * Runs one admin command and returns its status. The controller runs inline under the
   * doorbell write, so the completion is in the CQ when the write returns.
   */
  private _admin(opc: number, prp1: number, cdw10: number, cdw11: number): number {
    const sqe = new Int32Array(SQE_WORDS);
    encodeSqe(sqe, 0, opc, this._sqTail, 0, prp1, 0, cdw10, cdw11);
    this._memWords.set(sqe, (this._sqTail * SQE_BYTES) >> 2);
    this._sqTail = (this._sqTail + 1) % ADMIN_ENTRIES;
    const dstrd = this._state.sizes.dstrd;
    this._bar.write32(sqTailDoorbell(0, dstrd), this._sqTail);
    const at = (4096 + this._cqHead * CQE_BYTES) >> 2;
    // ORDERING: seq-cst load of the phase word the controller stores last.
    const dw3 = Atomics.load(this._memWords, at + CqeWord.DW3);
    if (((dw3 >>> 16) & 1) !== this._phase) {
      throw pvError('PV_ERR_BLK_IO', `${this._state.sizes.name}: admin command 0x${opc.toString(16)} did not complete`);
    }
    this._cqHead = (this._cqHead + 1) % ADMIN_ENTRIES;
    if (this._cqHead === 0) this._phase ^= 1;
    this._bar.write32(cqHeadDoorbell(0, dstrd), this._cqHead);
    return (dw3 >>> CqeDw3.STATUS_SHIFT) & CqeDw3.STATUS_MASK;
  }
}
