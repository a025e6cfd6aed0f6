/**
 * Device Lending (SmartIO, Markussen et al., Cluster Computing 2020 §4–6; TOCS 2021): the data a
 * cluster-wide device registry holds and the interface every registry implements.
 *
 * A lender registers a device; a borrower takes a lease on it, either exclusively (the whole
 * function, as classic Device Lending does) or shared (one of the device's queues, as SmartIO
 * shares one NVMe controller between hosts, each with its own SQ/CQ pair); the holder reports how
 * many requests it has outstanding, so a plain return of a busy device is refused and only a
 * forced return (a revocation) can take it away, failing those requests with
 * PV_ERR_LEND_REVOKED.
 *
 * Every method is async so a networked registry (etcd with leases and watches, a later issue)
 * implements the same interface; the embedded one is InMemoryRegistry.ts. Everything here is
 * plain data (structured-cloneable and JSON-able) so it can cross a thread or a socket.
 */

import type { DeviceKind } from '../../protocol/Pci.js';

/** A host of the cluster, by its name (HostOptions.name). */
export type HostName = string;

/** What a lender registers. */
export interface DeviceDescriptor {
  /** Cluster-wide unique id, e.g. `hostA/nvme0`. */
  readonly id: string;
  /** The host the device is plugged into (the lender). */
  readonly owner: HostName;
  readonly kind: DeviceKind;
  /** Bus/device/function on the owner, `dddd:bb:dd.f`. */
  readonly bdf: string;
  /** May several hosts use it at once, each on its own queue? */
  readonly shareable: boolean;
  /** Queues a shared borrower can reserve (NVMe I/O SQ/CQ pairs, NIC QP groups…); ≥ 1. */
  readonly queues: number;
}

/** How a lease holds its device. */
export type LeaseMode = 'exclusive' | 'shared';

/**
 * A borrower's right to a device. `generation` is unique in the registry and never reused, so a
 * lease that was returned (or revoked) stays invalid even when the same host borrows again.
 */
export interface Lease {
  /** The device id. */
  readonly id: string;
  /** The borrowing host. */
  readonly holder: HostName;
  readonly mode: LeaseMode;
  /** Shared: the queue index reserved for this holder, in [0, queues). Exclusive: undefined (all of them). */
  readonly queue: number | undefined;
  /** Registry revision at which the lease was granted. */
  readonly generation: number;
}

/** Who holds a device right now. */
export type DeviceState =
  | { readonly kind: 'available' }
  | { readonly kind: 'exclusive'; readonly holder: HostName; readonly generation: number }
  | {
      readonly kind: 'shared';
      /** One row per shared lease, by queue index. */
      readonly holders: readonly { readonly host: HostName; readonly queue: number; readonly generation: number }[];
    };

/** One row of `list()`. */
export interface DeviceEntry {
  readonly device: DeviceDescriptor;
  readonly state: DeviceState;
  /** Outstanding requests each holder reported, by lease generation. */
  readonly outstanding: Readonly<Record<number, number>>;
}

/** `list()` filter; every given field must match. */
export interface DeviceFilter {
  readonly owner?: HostName;
  readonly kind?: DeviceKind;
  /** Only devices nobody holds (true) or that someone holds (false). */
  readonly available?: boolean;
  /** Only devices this host holds a lease on. */
  readonly holder?: HostName;
}

/** A registry change, delivered to watchers in the order the changes took effect. */
export type RegistryEvent =
  | { readonly type: 'registered'; readonly revision: number; readonly device: DeviceDescriptor }
  | { readonly type: 'unregistered'; readonly revision: number; readonly id: string }
  | { readonly type: 'borrowed'; readonly revision: number; readonly lease: Lease }
  | { readonly type: 'returned'; readonly revision: number; readonly lease: Lease }
  /** The lease ended by force: its holder must fail what it still has outstanding (PV_ERR_LEND_REVOKED). */
  | { readonly type: 'revoked'; readonly revision: number; readonly lease: Lease };

/** Receives registry events. */
export type RegistryListener = (event: RegistryEvent) => void;

/** Options of `borrow`. */
export interface BorrowOptions {
  readonly mode: LeaseMode;
}

/** Options of `return` and `unregister`. */
export interface ForceOptions {
  /** Take the device away even while in use: every lease on it is revoked. */
  readonly force?: boolean;
}

/**
 * The cluster-wide device registry. Contract for every implementation:
 *  - each call is one atomic state change: two concurrent borrows can never both win;
 *  - calls take effect in the order they were made (from one process), and watchers see the
 *    resulting events in that same order, each with a strictly increasing `revision`;
 *  - errors: PV_ERR_LEND_NOT_FOUND (no such device), PV_ERR_LEND_BUSY (held: the message names
 *    the holder), PV_ERR_LEND_IN_USE (return of a busy lease without force),
 *    PV_ERR_LEND_NOT_HOLDER (a lease that is not, or no longer, held), PV_ERR_INVALID_ARG.
 */
export interface DeviceRegistry {
  /** Offers a device. PV_ERR_INVALID_ARG if the descriptor is malformed or the id taken. */
  register(device: DeviceDescriptor): Promise<void>;
  /** Withdraws a device: refused (PV_ERR_LEND_BUSY) while leased unless forced, which revokes every lease. */
  unregister(id: string, opts?: ForceOptions): Promise<void>;
  /** Devices and their state, in registration order. */
  list(filter?: DeviceFilter): Promise<DeviceEntry[]>;
  /** Takes a lease (see the file comment for exclusive vs shared). */
  borrow(id: string, host: HostName, opts: BorrowOptions): Promise<Lease>;
  /** Gives a lease back; refused while its holder reports requests outstanding unless forced. */
  return(lease: Lease, opts?: ForceOptions): Promise<void>;
  /** The holder reports how many requests it has outstanding on the device (≥ 0). */
  setInUse(lease: Lease, outstanding: number): Promise<void>;
  /** Subscribes to every later event; returns the unsubscribe function. */
  watch(listener: RegistryListener): () => void;
}
