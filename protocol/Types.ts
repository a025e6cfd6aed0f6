/**
 * Branded handle and address types shared by every layer.
 *
 * A brand makes `DomId`, `GrantRef`, `EvtchnPort`, `GuestPhysAddr`, … distinct types even though
 * each is a `number` at run time, so the compiler refuses to pass a grant reference where an
 * event-channel port is expected (the TypeScript form of rust-vmm's `GuestAddress(u64)` newtype).
 * Every brand has a checking constructor: values that come from a guest or from shared memory
 * must go through it, and it throws a `PvError` with a stable code when the value is out of range.
 */

import { pvError } from './errors.js';

declare const brand: unique symbol;
/** A `number` that the compiler keeps apart from other numbers. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Domain id (Xen `domid_t`, u16). Dom0 is the driver domain by default. */
export type DomId = Brand<number, 'DomId'>;
/** Grant reference: an index into the granting domain's grant table (Xen `grant_ref_t`, u32). */
export type GrantRef = Brand<number, 'GrantRef'>;
/** Event-channel port, local to one domain (Xen `evtchn_port_t`). */
export type EvtchnPort = Brand<number, 'EvtchnPort'>;
/** Guest-physical byte address inside one domain's memory. */
export type GuestPhysAddr = Brand<number, 'GuestPhysAddr'>;
/** Guest frame number: guest-physical address / PAGE_SIZE. */
export type Gfn = Brand<number, 'Gfn'>;
/** Free-running u32 ring index (Xen `RING_IDX`); compare only with `(a - b) >>> 0`. */
export type RingIndex = Brand<number, 'RingIndex'>;
/** Handle returned by a grant map, needed to unmap (Xen `grant_handle_t`, a maptrack index). */
export type MapHandle = Brand<number, 'MapHandle'>;
/** I/O virtual address as a device sees it, translated by the IOMMU. */
export type Iova = Brand<number, 'Iova'>;
/** Host-physical byte address (after IOMMU or P2M translation). */
export type HostPhysAddr = Brand<number, 'HostPhysAddr'>;

/** Size of a guest page in bytes (x86 4 KiB pages, as Xen grants them). */
export const PAGE_SIZE = 4096;
/** log2(PAGE_SIZE). */
export const PAGE_SHIFT = 12;
/** Largest domain id the simulator hands out (Xen reserves 0x7FF0 and above). */
export const DOMID_MAX = 0x7fef;
/** Dom0: the default driver domain. */
export const DOM0 = 0 as DomId;

function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw pvError('PV_ERR_INVALID_ARG', `${what} must be an integer in [0, 2^32), got ${value}`);
  }
  return value;
}

/** Checks and brands a domain id. */
export function domId(value: number): DomId {
  if (!Number.isInteger(value) || value < 0 || value > DOMID_MAX) {
    throw pvError('PV_ERR_INVALID_ARG', `domain id must be an integer in [0, ${DOMID_MAX}], got ${value}`);
  }
  return value as DomId;
}

/** Checks and brands a grant reference. */
export function grantRef(value: number): GrantRef {
  return checkU32(value, 'grant ref') as GrantRef;
}

/** Checks and brands an event-channel port. */
export function evtchnPort(value: number): EvtchnPort {
  return checkU32(value, 'event-channel port') as EvtchnPort;
}

/** Checks and brands a guest-physical address (a safe integer ≥ 0). */
export function guestPhysAddr(value: number): GuestPhysAddr {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw pvError('PV_ERR_INVALID_ARG', `guest-physical address must be a safe integer ≥ 0, got ${value}`);
  }
  return value as GuestPhysAddr;
}

/** Checks and brands a guest frame number. */
export function gfn(value: number): Gfn {
  return checkU32(value, 'guest frame number') as Gfn;
}

/** Brands a u32 ring index; any number is reduced modulo 2^32 as Xen's `RING_IDX` arithmetic does. */
export function ringIndex(value: number): RingIndex {
  return (value >>> 0) as RingIndex;
}

/** Checks and brands an I/O virtual address. */
export function iova(value: number): Iova {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw pvError('PV_ERR_INVALID_ARG', `I/O virtual address must be a safe integer ≥ 0, got ${value}`);
  }
  return value as Iova;
}

/** Checks and brands a host-physical address. */
export function hostPhysAddr(value: number): HostPhysAddr {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw pvError('PV_ERR_INVALID_ARG', `host-physical address must be a safe integer ≥ 0, got ${value}`);
  }
  return value as HostPhysAddr;
}

/** Frame that holds a guest-physical address. */
export function gfnOf(addr: GuestPhysAddr): Gfn {
  return Math.floor(addr / PAGE_SIZE) as Gfn;
}

/** First guest-physical address of a frame. */
export function addrOf(frame: Gfn): GuestPhysAddr {
  return (frame * PAGE_SIZE) as GuestPhysAddr;
}
