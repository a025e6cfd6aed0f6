/**
 * The embedded device registry: one process holds the whole cluster's device table (Types.ts has
 * the contract). The networked registry of a later issue keeps the same rules with an etcd
 * transaction per call; here every call runs as one synchronous step inside a FIFO queue:
 *
 *   call ──► _serial ──► [validate → check → commit → revision++ → deliver events] ──► settle
 *
 * The queue is what makes the contract hold even against re-entrancy: a watcher that reacts to
 * an event by calling the registry (a borrower waiting for 'returned' that borrows at once) has
 * its call queued behind the current one, so every watcher sees the first event before any
 * event the reaction causes, and no check can run between another call's check and commit.
 *
 * Exclusivity: an exclusive lease needs the device with no lease at all; a shared lease needs it
 * shareable, not held exclusively, and a free queue (the lowest free index is reserved). The
 * owner host may borrow its own device like any other host.
 */

import { pvError } from '../../protocol/errors.js';
import type { DeviceKind } from '../../protocol/Pci.js';
import type {
  BorrowOptions,
  DeviceDescriptor,
  DeviceEntry,
  DeviceFilter,
  DeviceRegistry,
  DeviceState,
  ForceOptions,
  HostName,
  Lease,
  RegistryEvent,
  RegistryListener,
} from './Types.js';

const KINDS: readonly DeviceKind[] = ['rdma-nic', 'nvme', 'accel'];
const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;
/** Most queues a shared device may offer (NVMe allows 65,535 I/O queue pairs). */
export const MAX_QUEUES = 65535;

/** One lease and what its holder reported. */
export interface Holding {
  readonly lease: Lease;
  outstanding: number;
}

/** One registered device. INVARIANT: either empty, one exclusive holding, or only shared ones on distinct queues. */
export interface Slot {
  readonly device: DeviceDescriptor;
  holdings: Holding[];
}

/** Options of the embedded registry. */
export interface InMemoryRegistryOptions {
  /**
   * Receives what a watcher threw (delivery to the other watchers goes on; the change is already
   * committed). Default: rethrown from a microtask, so a broken watcher fails loudly.
   */
  readonly onListenerError?: (err: unknown, event: RegistryEvent) => void;
}

/** The embedded registry (see the file comment). */
export class InMemoryRegistry implements DeviceRegistry {
  private readonly _slots = new Map<string, Slot>();
  private readonly _listeners = new Set<RegistryListener>();
  private readonly _onListenerError: (err: unknown, event: RegistryEvent) => void;
  private _revision = 0;
  private _tail: Promise<unknown> = Promise.resolve();

  constructor(opts: InMemoryRegistryOptions = {}) {
    this._onListenerError =
      opts.onListenerError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
  }

  /** Revision of the last change (0 before any). */
  get revision(): number {
    return this._revision;
  }

  register(device: DeviceDescriptor): Promise<void> {
    return this._serial(() => {
      const d = checkDescriptor(device);
      if (this._slots.has(d.id)) throw pvError('PV_ERR_INVALID_ARG', `device ${d.id} is already registered`);
      this._slots.set(d.id, { device: d, holdings: [] });
      this._emit({ type: 'registered', revision: ++this._revision, device: d });
    });
  }

  unregister(id: string, opts: ForceOptions = {}): Promise<void> {
    return this._serial(() => {
      const slot = this._slot(id);
      if (slot.holdings.length > 0 && opts.force !== true) {
        throw pvError('PV_ERR_LEND_BUSY', `device ${id} cannot be withdrawn: ${describe(slot)}`);
      }
      const revoked = slot.holdings;
      slot.holdings = [];
      this._slots.delete(id);
      for (const h of revoked) this._emit({ type: 'revoked', revision: ++this._revision, lease: h.lease });
      this._emit({ type: 'unregistered', revision: ++this._revision, id });
    });
  }

  list(filter: DeviceFilter = {}): Promise<DeviceEntry[]> {
    return this._serial(() => {
      const out: DeviceEntry[] = [];
      for (const slot of this._slots.values()) {
        const e = listEntry(slot, filter);
        if (e !== undefined) out.push(e);
      }
      return out;
    });
  }

  borrow(id: string, host: HostName, opts: BorrowOptions): Promise<Lease> {
    return this._serial(() => {
      const mode = borrowMode(host, opts);
      const slot = this._slot(id);
      const queue = borrowQueue(id, slot, mode);
      const revision = ++this._revision;
      const lease: Lease = Object.freeze({ id, holder: host, mode, queue, generation: revision });
      slot.holdings.push({ lease, outstanding: 0 });
      this._emit({ type: 'borrowed', revision, lease });
      return lease;
    });
  }

  return(lease: Lease, opts: ForceOptions = {}): Promise<void> {
    return this._serial(() => {
      const { slot, holding } = this._holding(lease);
      if (holding.outstanding > 0 && opts.force !== true) {
        throw pvError(
          'PV_ERR_LEND_IN_USE',
          `device ${lease.id}: ${lease.holder} still has ${holding.outstanding} request(s) outstanding`,
        );
      }
      slot.holdings = slot.holdings.filter((h) => h !== holding);
      const type = opts.force === true ? 'revoked' : 'returned';
      this._emit({ type, revision: ++this._revision, lease: holding.lease });
    });
  }

  setInUse(lease: Lease, outstanding: number): Promise<void> {
    return this._serial(() => {
      if (!Number.isSafeInteger(outstanding) || outstanding < 0) {
        throw pvError('PV_ERR_INVALID_ARG', `outstanding must be a non-negative integer, got ${outstanding}`);
      }
      this._holding(lease).holding.outstanding = outstanding;
    });
  }

  watch(listener: RegistryListener): () => void {
    if (typeof listener !== 'function') throw pvError('PV_ERR_INVALID_ARG', 'watch needs a listener function');
    // A fresh wrapper per call: watching twice with one function gives two independent subscriptions.
    const entry: RegistryListener = (e) => listener(e);
    this._listeners.add(entry);
    return () => {
      this._listeners.delete(entry);
    };
  }

  /** Runs `op` after every earlier call has settled (see the file comment). */
  private _serial<T>(op: () => T): Promise<T> {
    const run = this._tail.then(op);
    this._tail = run.catch(() => undefined);
    return run;
  }

  private _emit(event: RegistryEvent): void {
    const frozen = Object.freeze(event);
    for (const l of [...this._listeners]) {
      try {
        l(frozen);
      } catch (err) {
        this._onListenerError(err, frozen);
      }
    }
  }

  private _slot(id: string): Slot {
    const slot = typeof id === 'string' ? this._slots.get(id) : undefined;
    if (slot === undefined) throw pvError('PV_ERR_LEND_NOT_FOUND', `no device ${String(id)} in the registry`);
    return slot;
  }

  /** The holding `lease` names: the device must exist and the lease must still be held, as given. */
  private _holding(lease: Lease): { slot: Slot; holding: Holding } {
    if (typeof lease !== 'object' || lease === null) throw pvError('PV_ERR_INVALID_ARG', 'a lease object is required');
    const slot = this._slot(lease.id);
    const holding = slot.holdings.find(
      (h) => h.lease.generation === lease.generation && h.lease.holder === lease.holder,
    );
    if (holding === undefined) {
      throw pvError(
        'PV_ERR_LEND_NOT_HOLDER',
        `${String(lease.holder)} does not hold lease ${String(lease.generation)} on ${lease.id}: ${describe(slot)}`,
      );
    }
    return { slot, holding };
  }
}

/** Validates and freezes a descriptor (a copy: the caller's object may change later). */
export function checkDescriptor(d: DeviceDescriptor): DeviceDescriptor {
  if (typeof d !== 'object' || d === null) throw pvError('PV_ERR_INVALID_ARG', 'a device descriptor is required');
  checkName('id', d.id);
  checkName('owner', d.owner);
  if (!KINDS.includes(d.kind)) throw pvError('PV_ERR_INVALID_ARG', `device ${d.id}: unknown kind ${String(d.kind)}`);
  if (typeof d.bdf !== 'string' || !BDF.test(d.bdf)) {
    throw pvError('PV_ERR_INVALID_ARG', `device ${d.id}: bdf must look like 0000:03:00.0, got ${String(d.bdf)}`);
  }
  if (typeof d.shareable !== 'boolean')
    throw pvError('PV_ERR_INVALID_ARG', `device ${d.id}: shareable must be boolean`);
  if (!Number.isInteger(d.queues) || d.queues < 1 || d.queues > MAX_QUEUES) {
    throw pvError('PV_ERR_INVALID_ARG', `device ${d.id}: queues must be an integer in [1, ${MAX_QUEUES}]`);
  }
  const { id, owner, kind, bdf, shareable, queues } = d;
  return Object.freeze({ id, owner, kind, bdf, shareable, queues });
}

export function checkName(field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw pvError('PV_ERR_INVALID_ARG', `${field} must be a non-empty string, got ${String(value)}`);
  }
}

/** Lowest queue index no shared holding has reserved. */
/** The borrow mode of `opts`, checked (one rule for every registry). */
export function borrowMode(host: HostName, opts: BorrowOptions): 'exclusive' | 'shared' {
  checkName('host', host);
  const mode = opts?.mode;
  if (mode !== 'exclusive' && mode !== 'shared') {
    throw pvError('PV_ERR_INVALID_ARG', `borrow mode must be 'exclusive' or 'shared', got ${String(mode)}`);
  }
  return mode;
}

/**
 * Whether `slot` can be borrowed in `mode` now: the queue a shared borrow gets (undefined for an
 * exclusive one), or PV_ERR_LEND_BUSY / PV_ERR_INVALID_ARG naming who holds it.
 */
export function borrowQueue(id: string, slot: Slot, mode: 'exclusive' | 'shared'): number | undefined {
  if (mode === 'exclusive') {
    if (slot.holdings.length > 0) throw pvError('PV_ERR_LEND_BUSY', `device ${id}: ${describe(slot)}`);
    return undefined;
  }
  if (!slot.device.shareable) {
    throw pvError('PV_ERR_INVALID_ARG', `device ${id} is not shareable: borrow it exclusively`);
  }
  if (slot.holdings.some((h) => h.lease.mode === 'exclusive')) {
    throw pvError('PV_ERR_LEND_BUSY', `device ${id}: ${describe(slot)}`);
  }
  const queue = freeQueue(slot);
  if (queue === undefined) {
    throw pvError('PV_ERR_LEND_BUSY', `device ${id}: all ${slot.device.queues} queues taken, ${describe(slot)}`);
  }
  return queue;
}

/** `slot` as list() reports it, or undefined when `filter` leaves it out. */
export function listEntry(slot: Slot, filter: DeviceFilter): DeviceEntry | undefined {
  const d = slot.device;
  if (filter.owner !== undefined && d.owner !== filter.owner) return undefined;
  if (filter.kind !== undefined && d.kind !== filter.kind) return undefined;
  if (filter.available !== undefined && (slot.holdings.length === 0) !== filter.available) return undefined;
  if (filter.holder !== undefined && !slot.holdings.some((h) => h.lease.holder === filter.holder)) return undefined;
  const outstanding: Record<number, number> = {};
  for (const h of slot.holdings) outstanding[h.lease.generation] = h.outstanding;
  return { device: d, state: stateOf(slot), outstanding };
}

export function freeQueue(slot: Slot): number | undefined {
  const used = new Set(slot.holdings.map((h) => h.lease.queue));
  for (let q = 0; q < slot.device.queues; q++) if (!used.has(q)) return q;
  return undefined;
}

export function stateOf(slot: Slot): DeviceState {
  const hs = slot.holdings;
  if (hs.length === 0) return { kind: 'available' };
  if (hs[0].lease.mode === 'exclusive') {
    return { kind: 'exclusive', holder: hs[0].lease.holder, generation: hs[0].lease.generation };
  }
  const holders = hs
    .map((h) => ({ host: h.lease.holder, queue: h.lease.queue as number, generation: h.lease.generation }))
    .sort((a, b) => a.queue - b.queue);
  return { kind: 'shared', holders };
}

/** Who holds a device, for error messages: "held exclusively by B" / "shared by B (queue 0), C (queue 1)". */
export function describe(slot: Slot): string {
  const s = stateOf(slot);
  if (s.kind === 'available') return 'not held by anyone';
  if (s.kind === 'exclusive') return `held exclusively by ${s.holder}`;
  return `shared by ${s.holders.map((h) => `${h.host} (queue ${h.queue})`).join(', ')}`;
}
