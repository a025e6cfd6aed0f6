/**
 * Shapes the RDMA NIC driver hands out and takes in. Handles are the device's own numbers
 * (pdn, lkey, cqn, qpn), so the paravirtual backend can pass them through without a table of
 * its own and a log line names what the device names.
 */

import type { QpCap, QpState } from '../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';

/** What the NIC reports in its read-only registers (NicRegs.ts). */
export interface NicCaps {
  readonly version: number;
  /** This NIC's port id: what a peer puts in `AhAttr.dlid`. */
  readonly portId: number;
  /** QP numbers run 1 … maxQp − 1. */
  readonly maxQp: number;
  readonly maxCq: number;
  readonly maxMr: number;
  /** Largest send or receive queue, in WQEs. */
  readonly maxQpWr: number;
  /** Largest CQ, in CQEs. */
  readonly maxCqe: number;
}

/** QUERY_PORT results. */
export interface PortAttr {
  readonly portId: number;
  /** 4 = ACTIVE (`PORT_ACTIVE`). */
  readonly state: number;
  /** `ibv_mtu` enum (5 = 4096). */
  readonly activeMtu: number;
}

/** A registered memory region: `index` is the device's MR slot, `lkey` names it for DESTROY_MR. */
export interface DriverMr {
  readonly index: number;
  readonly lkey: number;
  readonly rkey: number;
}

/** A CQ whose ring lives in the driver's own memory (the driver or its caller polls it). */
export interface DriverCq {
  readonly cqn: number;
  /** CQEs in the ring (a power of two). */
  readonly entries: number;
  /** Guest-physical address of the ring (header + CQEs) in the driver's memory. */
  readonly ring: GuestPhysAddr;
  /** Bytes allocated for the ring (whole pages). */
  readonly ringBytes: number;
}

/** Creation attributes of a QP: handles are device numbers. */
export interface DriverQpInit {
  readonly pd: number;
  readonly sendCq: number;
  readonly recvCq: number;
  readonly cap: QpCap;
  readonly sqSigAll: boolean;
}

/** A created QP as the driver's caller sees it. */
export interface DriverQp {
  readonly qpn: number;
  /** Capabilities granted: queue depths rounded up to powers of two. */
  readonly cap: QpCap;
  /** Where the send and receive queues live (driver memory), for diagnostics. */
  readonly sqAddr: GuestPhysAddr;
  readonly rqAddr: GuestPhysAddr;
}

/** QUERY_QP results. */
export interface QpQuery {
  readonly state: QpState;
  readonly destQpNum: number;
  readonly destPortId: number;
  /** Free-running count of send WQEs the device is done with (their slots may be reused). */
  readonly sqCons: number;
  /** Free-running count of receive WQEs the device consumed. */
  readonly rqCons: number;
}

/** A chunk of driver memory: address, whole pages, and an Int32 view of it. */
export interface DriverBuffer {
  readonly addr: GuestPhysAddr;
  readonly pages: number;
  readonly words: Int32Array;
}

/** What the queue tables need from the driver: its caps and its memory. */
export interface QueueMemory {
  readonly caps: NicCaps;
  /** Zeroed, page-aligned driver memory with an Int32 view. */
  allocBuffer(bytes: number): DriverBuffer;
  freeBuffer(buf: DriverBuffer): void;
  /** Device address of driver memory. */
  dmaAddr(gpa: GuestPhysAddr): Iova;
}
