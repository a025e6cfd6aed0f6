/**
 * The native driver of pvio's RDMA NIC. ONE driver, used unchanged by the paravirtual backend in
 * the driver domain, by a guest that owns the NIC through passthrough, and by a native program:
 * it only sees a `PciFunction` (BAR 0 per protocol/rdma/NicRegs.ts, and `dmaAddr` for its own
 * memory) and the owning domain's `GuestMemory`, from which it allocates its queues.
 *
 * Control path: commands through the mailbox (NicMailbox.ts). Data path: WQEs are encoded
 * straight into the send/receive queues in driver memory and made visible with one doorbell
 * write per queue per batch (`flush`, or `ringSq`/`ringRq`), as PVRDMA's provider rings once per
 * `ibv_post_send` chain (reference §3.1). Completions: the NIC writes CQ rings in the format of
 * protocol/rdma/Cq.ts; `pollCq` reads those the driver allocated.
 *
 * For the paravirtual backend, three entry points take device addresses the backend obtained by
 * grant-mapping guest pages for the NIC: `regMr(…, iova)`, `createCqAt(entries, ringIova)` (a
 * CQ ring in the guest's memory, which the backend never polls) and `postSendWords` /
 * `postRecvWords` (copy an already validated WQE from the guest's slot into the queue).
 *
 * Single-threaded: one driver instance per domain thread, as a kernel driver would serialise
 * its command slot under a lock.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { PciFunction } from '../../protocol/Pci.js';
import { NIC_VERSION, NicCmd, NicReg } from '../../protocol/rdma/NicRegs.js';
import type { QpAttr, RecvWr, SendWr, Wc } from '../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, type Iova, PAGE_SIZE } from '../../protocol/Types.js';
import { CqTable } from './CqTable.js';
import { MrTable } from './MrTable.js';
import { NicMailbox } from './NicMailbox.js';
import { QpTable } from './QpTable.js';
import type {
  DriverBuffer,
  DriverCq,
  DriverMr,
  DriverQp,
  DriverQpInit,
  NicCaps,
  PortAttr,
  QpQuery,
  QueueMemory,
} from './Types.js';

/** STATUS register bit: the device hit a fatal error. */
const STATUS_FATAL = 1;

/** The RDMA NIC driver; see the file comment. */
export class RdmaNicDriver implements QueueMemory {
  /** What the device reported at attach. */
  readonly caps: NicCaps;
  private readonly _pci: PciFunction;
  private readonly _mem: GuestMemory;
  private readonly _mbox: NicMailbox;
  private readonly _mrt: MrTable;
  private readonly _cqs: CqTable;
  private readonly _qps: QpTable;
  private _closed = false;

  /**
   * Attaches to `pci` (an `rdma-nic` function) using `mem` (the owning domain's memory) for
   * queues. Refuses another kind of device or a BAR 0 that is missing (`PV_ERR_CONFIG`), a device
   * of another major version (`PV_ERR_NOT_SUPPORTED`), and a device in fatal error.
   */
  constructor(pci: PciFunction, mem: GuestMemory) {
    if (pci.kind !== 'rdma-nic') throw pvError('PV_ERR_CONFIG', `${pci.name} is a ${pci.kind}, not an rdma-nic`);
    const bar = pci.bars[0];
    if (!bar || bar.size < NicReg.DOORBELLS) throw pvError('PV_ERR_CONFIG', `${pci.name}: BAR 0 missing or too small`);
    const version = bar.read32(NicReg.VERSION) >>> 0;
    if (version >>> 16 !== NIC_VERSION >>> 16) {
      throw pvError(
        'PV_ERR_NOT_SUPPORTED',
        `${pci.name}: NIC version ${version.toString(16)}, driver speaks ${NIC_VERSION.toString(16)}`,
      );
    }
    if ((bar.read32(NicReg.STATUS) & STATUS_FATAL) !== 0) {
      throw pvError('PV_ERR_CONFIG', `${pci.name}: device reports a fatal error`);
    }
    this._pci = pci;
    this._mem = mem;
    this._mbox = new NicMailbox(bar);
    this.caps = {
      version,
      portId: bar.read32(NicReg.PORT_ID) >>> 0,
      maxQp: bar.read32(NicReg.MAX_QP) >>> 0,
      maxCq: bar.read32(NicReg.MAX_CQ) >>> 0,
      maxMr: bar.read32(NicReg.MAX_MR) >>> 0,
      maxQpWr: bar.read32(NicReg.MAX_QP_WR) >>> 0,
      maxCqe: bar.read32(NicReg.MAX_CQE) >>> 0,
    };
    this._mrt = new MrTable(this._mbox, mem, pci);
    this._cqs = new CqTable(this);
    this._qps = new QpTable(this, bar, this._mbox, mem);
  }

  /** This NIC's port id (a peer's `AhAttr.dlid`). */
  get portId(): number {
    return this.caps.portId;
  }

  /** Name of the PCI function (`nic0`). */
  get name(): string {
    return this._pci.name;
  }

  /** Commands executed so far (each one is an MMIO trap on a VM). */
  get commands(): number {
    return this._mbox.commands;
  }

  /** Doorbells written so far. */
  get doorbells(): number {
    return this._qps.doorbells;
  }

  /** QUERY_PORT. */
  queryPort(): PortAttr {
    this._live();
    this._mbox.begin();
    this._mbox.exec(NicCmd.QUERY_PORT);
    return { portId: this._mbox.out(0), state: this._mbox.out(1), activeMtu: this._mbox.out(2) };
  }

  /** CREATE_PD; returns the pdn. */
  allocPd(): number {
    this._live();
    return this._mrt.allocPd();
  }

  /** DESTROY_PD (the device refuses a PD still in use with PV_ERR_RDMA_BUSY). */
  deallocPd(pd: number): void {
    this._live();
    this._mrt.deallocPd(pd);
  }

  /**
   * CREATE_MR for `[va, va + length)`. Without `iova` the region is the driver's own memory
   * (`va` is a guest-physical address, checked against it; `PV_ERR_RDMA_BAD_MEMORY` outside) and
   * the device reaches it at `dmaAddr(va)`. With `iova` the caller vouches that the device can
   * reach `length` bytes at that device address (the paravirtual backend passes the IOVA of guest
   * pages it grant-mapped for the NIC, and the guest's own address as `va`, as QEMU's pvrdma
   * registers with `ibv_reg_mr_iova`).
   */
  regMr(pd: number, va: number, length: number, access: number, iova?: Iova): DriverMr {
    this._live();
    return this._mrt.regMr(pd, va, length, access, iova);
  }

  /** DESTROY_MR by lkey. */
  deregMr(lkey: number): void {
    this._live();
    this._mrt.deregMr(lkey);
  }

  /** CREATE_CQ with a ring of ≥ `cqe` entries (power of two) in driver memory. */
  createCq(cqe: number): DriverCq {
    this._live();
    return this._cqs.create(cqe, this._mbox);
  }

  /**
   * CREATE_CQ over a ring that lives elsewhere, at device address `ringIova` (`cqBytes(entries)`
   * bytes, zeroed by its owner). `entries` must be a power of two ≤ MAX_CQE. The driver never
   * reads such a ring; its owner polls it. Returns the cqn.
   */
  createCqAt(entries: number, ringIova: Iova): number {
    this._live();
    return this._cqs.createAt(entries, ringIova, this._mbox);
  }

  /** DESTROY_CQ (and frees the ring if the driver allocated it). */
  destroyCq(cqn: number): void {
    this._live();
    this._cqs.destroy(cqn, this._mbox);
  }

  /**
   * Polls up to `max` completions of a CQ the driver allocated into `out` (≥ max entries);
   * returns the count and publishes the consumer index. One consumer per CQ: do not mix with
   * polling the same ring elsewhere.
   */
  pollCq(cqn: number, max: number, out: Wc[]): number {
    return this._cqs.poll(cqn, max, out);
  }

  /** The ring of a CQ the driver allocated, as Int32 words (for a waiter's `Atomics.wait`). */
  cqWords(cqn: number): Int32Array {
    return this._cqs.words(cqn);
  }

  /** CREATE_QP; queue depths are rounded up to powers of two (the granted `cap` says so). */
  createQp(init: DriverQpInit): DriverQp {
    this._live();
    return this._qps.create(init);
  }

  /** MODIFY_QP with the attributes selected by `mask` (QpAttrMask). */
  modifyQp(qpn: number, attr: QpAttr, mask: number): void {
    this._live();
    this._qps.modify(qpn, attr, mask);
  }

  /** QUERY_QP; also refreshes the driver's view of the queue consumer indices. */
  queryQp(qpn: number): QpQuery {
    this._live();
    return this._qps.query(qpn);
  }

  /** DESTROY_QP and frees its queues. */
  destroyQp(qpn: number): void {
    this._live();
    this._qps.destroy(qpn);
  }

  /** Checks and encodes a send WR into the SQ (no doorbell until `ringSq`/`flush`). */
  postSend(qpn: number, wr: SendWr): void {
    this._qps.postSend(qpn, wr);
  }

  /** Checks and encodes a receive WR into the RQ (no doorbell until `ringRq`/`flush`). */
  postRecv(qpn: number, wr: RecvWr): void {
    this._qps.postRecv(qpn, wr);
  }

  /**
   * Copies an encoded, validated send WQE (`SEND_WQE_USED_WORDS` words at `src[srcWord]`) into
   * the SQ. Throws PV_ERR_RDMA_QUEUE_FULL, PV_ERR_RDMA_BAD_STATE, or PV_ERR_RDMA_BAD_WR when the
   * copy's SGE count or inline length exceeds the QP's capabilities.
   */
  postSendWords(qpn: number, src: Int32Array, srcWord: number): void {
    this._qps.postSendWords(qpn, src, srcWord);
  }

  /** Copies an encoded, validated receive WQE (`RECV_WQE_WORDS` words) into the RQ. */
  postRecvWords(qpn: number, src: Int32Array, srcWord: number): void {
    this._qps.postRecvWords(qpn, src, srcWord);
  }

  /** Rings the SQ doorbell of `qpn` if WQEs were written since the last one. */
  ringSq(qpn: number): void {
    this._qps.ringSq(qpn);
  }

  /** Rings the RQ doorbell of `qpn` if WQEs were written since the last one. */
  ringRq(qpn: number): void {
    this._qps.ringRq(qpn);
  }

  /** Rings every doorbell owed: one write per queue that has new WQEs. */
  flush(): void {
    this._qps.flush();
  }

  /**
   * Allocates `bytes` of zeroed, page-aligned driver memory (whole pages) with an Int32 view.
   * Used for queues; exposed so the backend can allocate bounce buffers the same way.
   */
  allocBuffer(bytes: number): DriverBuffer {
    const pages = Math.max(1, Math.ceil(bytes / PAGE_SIZE));
    const addr = this._mem.allocPages(pages);
    const view = this._mem.view(addr, pages * PAGE_SIZE);
    return { addr, pages, words: new Int32Array(view.buffer, view.byteOffset, (pages * PAGE_SIZE) >> 2) };
  }

  /** Returns a buffer from `allocBuffer`. */
  freeBuffer(buf: DriverBuffer): void {
    this._mem.freePages(buf.addr, buf.pages);
  }

  /** Device address of a guest-physical address of the driver's memory. */
  dmaAddr(gpa: GuestPhysAddr): Iova {
    return this._pci.dmaAddr(gpa);
  }

  /**
   * Destroys everything still alive (QPs, then CQs, MRs, PDs, as `ibv_close_device` after a
   * crashed program) and frees the queue memory. Keeps going past a failing command and throws
   * the first failure at the end. Later calls throw PV_ERR_DISCONNECTED.
   */
  close(): void {
    if (this._closed) return;
    let first: unknown;
    const attempt = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        first ??= err;
      }
    };
    for (const qpn of this._qps.numbers()) attempt(() => this.destroyQp(qpn));
    for (const cqn of this._cqs.numbers()) attempt(() => this.destroyCq(cqn));
    for (const lkey of this._mrt.lkeys()) attempt(() => this.deregMr(lkey));
    for (const pd of this._mrt.pdNumbers()) attempt(() => this.deallocPd(pd));
    this._closed = true;
    if (first !== undefined) throw first;
  }

  private _live(): void {
    if (this._closed) throw pvError('PV_ERR_DISCONNECTED', `driver of ${this._pci.name} is closed`);
  }
}
