/**
 * A verbs provider: one per transport (native and passthrough drive the NIC through
 * drivers/rdma-nic; paravirt and paravirt-copy talk to the backend over rings; tcp is a
 * software RDMA provider over loopback sockets). The public verbs API (`Verbs.ts`) is written
 * once over this interface, so a guest program is identical across transports.
 *
 * Common ground every provider keeps:
 *  - buffers and memory regions are addressed by guest-physical address in the caller's own
 *    memory (a simulated guest has no separate virtual address space);
 *  - every completion queue is a ring in the caller's own memory, in the format of
 *    `protocol/rdma/Cq.ts`, filled by whoever produces completions for this transport (the NIC,
 *    the backend, or the TCP provider thread); `pollCq` and waiting are therefore common code;
 *  - errors are `PvError`s with stable codes (`PV_ERR_RDMA_*`).
 */

import type { DeviceAttachment } from '../../protocol/Pci.js';
import type { DomainEnv } from '../../protocol/Program.js';
import type { QpAttr, QpCap, RecvWr, SendWr, Wc } from '../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';

/** A registered memory region as the provider returns it. */
export interface ProviderMr {
  /** Provider handle (for deregistration). */
  readonly handle: number;
  readonly lkey: number;
  readonly rkey: number;
}

/** A completion queue: a ring in the caller's memory. */
export interface ProviderCq {
  readonly handle: number;
  /** Entries in the ring (a power of two ≥ the requested size). */
  readonly entries: number;
  /** Guest-physical address of the ring (header + CQEs). */
  readonly ring: GuestPhysAddr;
}

/** Creation attributes of a QP, resolved to provider handles. */
export interface ProviderQpInit {
  readonly pd: number;
  readonly sendCq: number;
  readonly recvCq: number;
  readonly cap: QpCap;
  readonly sqSigAll: boolean;
}

/** A created QP. */
export interface ProviderQp {
  readonly handle: number;
  /** The QP number peers address (`destQpNum`). */
  readonly qpNum: number;
  /** Capabilities actually granted (may exceed the request). */
  readonly cap: QpCap;
}

/** What the verbs layer needs from a transport. */
export interface VerbsProvider {
  /** Transport name, for results and messages. */
  readonly transport: string;
  /** Port id of the device the QPs use (the peer puts it in `AhAttr.dlid`). */
  readonly portId: number;
  allocPd(): number;
  deallocPd(pd: number): void;
  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr;
  deregMr(mr: number): void;
  createCq(entries: number): ProviderCq;
  destroyCq(cq: number): void;
  createQp(init: ProviderQpInit): ProviderQp;
  modifyQp(qp: number, attr: QpAttr, mask: number): void;
  destroyQp(qp: number): void;
  /** Queues one send WR; it may not start until `flush()` (doorbell batching). Throws on a bad WR. */
  postSend(qp: number, wr: SendWr): void;
  /** Queues one receive WR. */
  postRecv(qp: number, wr: RecvWr): void;
  /** Starts everything queued by postSend/postRecv (rings doorbells, pushes the ring). */
  flush(): void;
  /**
   * Called by `pollCq` when the CQ looked empty, before the caller sleeps: providers whose
   * completions need the caller's thread to move (a ring to drain) do that work here.
   */
  progress(): void;
  /**
   * Completions the provider produced itself, outside the CQ ring (paravirt: WRs the backend
   * refused before the device saw them). `pollCq` should take up to `max` of them for CQ `cq`
   * into `out[start …]` after reading the ring, and count them with the ring's. Optional:
   * providers whose completions all go through the ring leave it out.
   */
  takeCompletions?(cq: number, out: Wc[], start: number, max: number): number;
  /**
   * Told of the CQEs `pollCq` just took from CQ `cq`'s ring (`wc[start … start + n)`), so a
   * provider that tracks outstanding WRs (paravirt: to flush them if the device is lost) retires
   * them. Returns how many to hand out: it may drop some (a CQE duplicating a completion the
   * provider already produced), moving the kept ones down to `wc[start …)` in order. Must not
   * allocate (called on every poll that found completions). Optional.
   */
  ringCompletions?(cq: number, wc: Wc[], start: number, n: number): number;
  /** Releases everything (destroy what is left, disconnect). */
  close(): Promise<void>;
}

/**
 * What each provider module exports as `createProvider` (loaded by `openDevice` with a dynamic
 * import chosen by the attachment's transport).
 */
export type CreateProvider = (env: DomainEnv, attachment: DeviceAttachment) => Promise<VerbsProvider>;
