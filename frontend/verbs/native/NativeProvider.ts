/**
 * The provider of the `native` and `passthrough` transports: the program drives the NIC itself
 * through drivers/rdma-nic, with doorbells going straight to the device. The two transports run
 * the same code; what differs is the IOMMU mode the host programmed for the function (bypass
 * for native, translation of the guest's memory for passthrough), which the driver sees only as
 * `pci.dmaAddr`.
 *
 * Provider handles are the device's numbers (pdn, lkey, cqn, qpn), so this file is a thin map;
 * CQ rings are allocated by the driver in the program's own memory, where `pollCq` reads them.
 */

import { RdmaNicDriver } from '../../../drivers/rdma-nic/RdmaNicDriver.js';
import { pvError } from '../../../protocol/errors.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import type { DomainEnv } from '../../../protocol/Program.js';
import type { QpAttr, RecvWr, SendWr } from '../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import type { CreateProvider, ProviderCq, ProviderMr, ProviderQp, ProviderQpInit, VerbsProvider } from '../Provider.js';

/** VerbsProvider over the native driver. */
export class NativeProvider implements VerbsProvider {
  readonly transport: string;
  /** The driver (exposed for statistics: commands, doorbells). */
  readonly driver: RdmaNicDriver;

  constructor(driver: RdmaNicDriver, transport: string) {
    this.driver = driver;
    this.transport = transport;
  }

  /** The NIC's port id. */
  get portId(): number {
    return this.driver.portId;
  }

  allocPd(): number {
    return this.driver.allocPd();
  }

  deallocPd(pd: number): void {
    this.driver.deallocPd(pd);
  }

  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr {
    const mr = this.driver.regMr(pd, addr, length, access);
    return { handle: mr.lkey, lkey: mr.lkey, rkey: mr.rkey };
  }

  deregMr(mr: number): void {
    this.driver.deregMr(mr);
  }

  createCq(entries: number): ProviderCq {
    const cq = this.driver.createCq(entries);
    return { handle: cq.cqn, entries: cq.entries, ring: cq.ring };
  }

  destroyCq(cq: number): void {
    this.driver.destroyCq(cq);
  }

  createQp(init: ProviderQpInit): ProviderQp {
    const qp = this.driver.createQp(init);
    return { handle: qp.qpn, qpNum: qp.qpn, cap: qp.cap };
  }

  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this.driver.modifyQp(qp, attr, mask);
  }

  destroyQp(qp: number): void {
    this.driver.destroyQp(qp);
  }

  postSend(qp: number, wr: SendWr): void {
    this.driver.postSend(qp, wr);
  }

  postRecv(qp: number, wr: RecvWr): void {
    this.driver.postRecv(qp, wr);
  }

  flush(): void {
    this.driver.flush();
  }

  /** Nothing to do: the NIC moves completions into the CQ rings by itself. */
  progress(): void {}

  async close(): Promise<void> {
    this.driver.close();
  }
}

/**
 * Opens the NIC of `attachment` (transport `native` or `passthrough`; it must carry the PCI
 * function, else PV_ERR_CONFIG) with the domain's own memory for queues.
 */
export const createProvider: CreateProvider = async (env: DomainEnv, attachment: DeviceAttachment) => {
  if (attachment.transport !== 'native' && attachment.transport !== 'passthrough') {
    throw pvError('PV_ERR_CONFIG', `the native provider does not serve transport '${attachment.transport}'`);
  }
  if (attachment.pci === undefined) {
    throw pvError('PV_ERR_CONFIG', `device '${attachment.device}' (${attachment.transport}) has no PCI function`);
  }
  return new NativeProvider(new RdmaNicDriver(attachment.pci, env.hypercalls.memory), attachment.transport);
};
