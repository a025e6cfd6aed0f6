/**
 * Protection domains and memory regions the driver created: the CREATE/DESTROY commands and
 * the bookkeeping `close()` needs to tear down what a program left behind.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { PciFunction } from '../../protocol/Pci.js';
import { NicCmd } from '../../protocol/rdma/NicRegs.js';
import { hi32, lo32 } from '../../protocol/rdma/Wqe.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import type { NicMailbox } from './NicMailbox.js';
import type { DriverMr } from './Types.js';

/** PDs and MRs by device number. */
export class MrTable {
  private readonly _pds = new Set<number>();
  /** lkey → pdn of every live MR. */
  private readonly _mrs = new Map<number, number>();

  constructor(
    private readonly _mbox: NicMailbox,
    private readonly _mem: GuestMemory,
    private readonly _pci: PciFunction,
  ) {}

  /** Live pdns (a copy). */
  pdNumbers(): number[] {
    return [...this._pds];
  }

  /** Live lkeys (a copy). */
  lkeys(): number[] {
    return [...this._mrs.keys()];
  }

  /** CREATE_PD; returns the pdn. */
  allocPd(): number {
    this._mbox.begin();
    this._mbox.exec(NicCmd.CREATE_PD);
    const pdn = this._mbox.out(0);
    this._pds.add(pdn);
    return pdn;
  }

  /** DESTROY_PD (the device refuses a PD still in use with PV_ERR_RDMA_BUSY). */
  deallocPd(pd: number): void {
    this._mbox.begin()[0] = pd;
    this._mbox.exec(NicCmd.DESTROY_PD);
    this._pds.delete(pd);
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
    if (!Number.isSafeInteger(va) || va < 0) throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR address ${va} is not valid`);
    if (!Number.isInteger(length) || length <= 0 || length > 0xffff_ffff) {
      throw pvError('PV_ERR_BAD_LENGTH', `MR length ${length} is not in [1, 2^32)`);
    }
    let dev: number;
    if (iova === undefined) {
      try {
        this._mem.checkRange(va as GuestPhysAddr, length);
      } catch {
        throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR [${va}, +${length}) is outside domain ${this._mem.domid}'s memory`);
      }
      dev = this._pci.dmaAddr(va as GuestPhysAddr);
    } else {
      if (!Number.isSafeInteger(iova) || iova < 0)
        throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR iova ${iova} is not valid`);
      dev = iova;
    }
    const a = this._mbox.begin();
    a[0] = pd;
    a[1] = lo32(va);
    a[2] = hi32(va);
    a[3] = length;
    a[4] = access;
    a[5] = lo32(dev);
    a[6] = hi32(dev);
    this._mbox.exec(NicCmd.CREATE_MR);
    const mr: DriverMr = { index: this._mbox.out(0), lkey: this._mbox.out(1), rkey: this._mbox.out(2) };
    this._mrs.set(mr.lkey, pd);
    return mr;
  }

  /** DESTROY_MR by lkey. */
  deregMr(lkey: number): void {
    this._mbox.begin()[0] = lkey;
    this._mbox.exec(NicCmd.DESTROY_MR);
    this._mrs.delete(lkey);
  }
}
