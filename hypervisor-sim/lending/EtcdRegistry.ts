/**
 * The device registry on etcd (issue 6): the DeviceRegistry contract of Types.ts, with the same
 * rules and error messages as InMemoryRegistry.ts, shared by every host of a cluster. The key
 * layout and the watch-to-event mapping are in EtcdKeys.ts.
 *
 *   call ──► _serial ──► read device (txn) ──► decide ──► txn(if device mod rev unchanged) ──┐
 *                ▲                                 retry when another client got there first ◄┘
 *                └─ settles once this client's own watcher has delivered the change's events
 *
 * Atomicity comes from etcd: every change of a device's holdings is one transaction guarded by
 * the device key's mod revision, so of two concurrent borrows (from any hosts) exactly one
 * commits and the other re-reads and is refused. A decision made on a stale read can only be too
 * strict (a holder whose lease expired meanwhile still looks present), never too lax.
 *
 * Liveness comes from leases: each client keeps one etcd lease alive; the devices it registers
 * and the leases it borrows live under it, so when a host crashes its devices leave the registry
 * and what it borrowed returns to the pool once the TTL runs out (watchers see 'revoked'). When
 * the lease is lost (etcd down longer than the TTL, or revoked), the client takes a new one and
 * re-registers the devices it owns.
 *
 * Events: one etcd watch per client over the cluster's prefix, in etcd's order; an event's
 * revision is the etcd mod revision of its change (the events of one forced unregister share it).
 */

import { randomBytes } from 'node:crypto';
import { Etcd3, type IKeyValue, type IOptions } from 'etcd3';
import { pvError } from '../../protocol/errors.js';
import { etcdFaultHandling } from './EtcdFaults.js';
import { EtcdKeys, type HolderValue, leaseOf } from './EtcdKeys.js';
import { EtcdRegistryCore } from './EtcdRegistryCore.js';
import {
  borrowMode,
  borrowQueue,
  checkDescriptor,
  checkName,
  describe,
  type Holding,
  listEntry,
  type Slot,
} from './InMemoryRegistry.js';
import type {
  BorrowOptions,
  DeviceDescriptor,
  DeviceEntry,
  DeviceFilter,
  DeviceRegistry,
  ForceOptions,
  HostName,
  Lease,
  RegistryEvent,
} from './Types.js';

/** Options of the etcd registry. */
export interface EtcdRegistryOptions {
  /** etcd client URLs, e.g. `['http://127.0.0.1:2379']`. */
  readonly endpoints: readonly string[];
  /** Cluster name: keys live under `/pvio/<cluster>/`. Default 'default'. */
  readonly cluster?: string;
  /** Seconds a crashed host's devices and borrows outlive it (etcd lease TTL, ≥ 1). Default 5. */
  readonly ttl?: number;
  /** As InMemoryRegistryOptions.onListenerError. */
  readonly onListenerError?: (err: unknown, event: RegistryEvent) => void;
  /** Extra etcd3 client options (TLS, auth…). */
  readonly client?: Omit<IOptions, 'hosts'>;
}

/** One device as read in one transaction. */
interface Snapshot {
  readonly kv: IKeyValue;
  readonly slot: Slot;
  /** Generation → its holder key. */
  readonly holderKvs: Map<number, IKeyValue>;
  /** Holder keys of an earlier registration of the device (dead; deleted on the next change). */
  readonly stale: string[];
}

/** Bounds of the watch reconnect backoff. */
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1000;

/** Tries of one call against concurrent changes before giving up (each retry means another client committed). */
const MAX_TRIES = 1000;

/** The etcd-backed registry (see the file comment). Create it with `EtcdRegistry.connect`. */
export class EtcdRegistry extends EtcdRegistryCore implements DeviceRegistry {
  private constructor(client: Etcd3, keys: EtcdKeys, ttl: number, opts: EtcdRegistryOptions) {
    super(client, keys, ttl, opts.onListenerError);
  }

  /** Connects, reads the registry and starts watching it. */
  static async connect(opts: EtcdRegistryOptions): Promise<EtcdRegistry> {
    const cluster = opts.cluster ?? 'default';
    checkName('cluster', cluster);
    if (cluster.includes('/')) throw pvError('PV_ERR_INVALID_ARG', `cluster name must not contain '/': ${cluster}`);
    const ttl = opts.ttl ?? 5;
    if (!Number.isInteger(ttl) || ttl < 1)
      throw pvError('PV_ERR_INVALID_ARG', `ttl must be an integer ≥ 1 s, got ${ttl}`);
    // Watches reconnect at most RECONNECT_MAX_MS apart (etcd3's default backoff grows to 30 s): after an etcd
    // restart every call waits for its own events, so a slow watch would stall the whole host.
    const client = new Etcd3({
      ...opts.client,
      hosts: [...opts.endpoints],
      faultHandling: { ...etcdFaultHandling(cappedBackoff(RECONNECT_MIN_MS)), ...opts.client?.faultHandling },
    });
    const r = new EtcdRegistry(client, new EtcdKeys(`/pvio/${cluster}/`), ttl, opts);
    try {
      await r.start();
    } catch (err) {
      client.close();
      throw err;
    }
    return r;
  }

  register(device: DeviceDescriptor): Promise<void> {
    return this.serial(async () => {
      const d = checkDescriptor(device);
      const key = this.keys.device(d.id);
      const res = await this.client
        .if(key, 'Create', '==', 0)
        .then(
          this.client
            .put(key)
            .value(JSON.stringify({ device: d }))
            .lease(await this.leaseId()),
        )
        .commit();
      if (!res.succeeded) throw pvError('PV_ERR_INVALID_ARG', `device ${d.id} is already registered`);
      this.owned.set(d.id, d);
      await this.delivered(Number(res.header.revision));
    });
  }

  unregister(id: string, opts: ForceOptions = {}): Promise<void> {
    return this.serial(async () => {
      for (let i = 0; i < MAX_TRIES; i++) {
        const snap = await this._snapshot(id);
        if (snap.slot.holdings.length > 0 && opts.force !== true) {
          throw pvError('PV_ERR_LEND_BUSY', `device ${id} cannot be withdrawn: ${describe(snap.slot)}`);
        }
        // Holder keys first, device key last: watchers see each 'revoked' before 'unregistered'.
        const holders = [...snap.holderKvs.values()].map((kv) => kv.key.toString());
        const res = await this.client
          .if(this.keys.device(id), 'Mod', '==', snap.kv.mod_revision)
          .then(...[...holders, ...snap.stale, this.keys.device(id)].map((k) => this.client.delete().key(k)))
          .commit();
        if (!res.succeeded) continue;
        this.owned.delete(id);
        await this.delivered(Number(res.header.revision));
        return;
      }
      throw contended(id);
    });
  }

  list(filter: DeviceFilter = {}): Promise<DeviceEntry[]> {
    return this.serial(async () => {
      const res = await this.client.getAll().prefix(this.keys.root).exec();
      const devices = new Map<string, { kv: IKeyValue; holders: IKeyValue[] }>();
      const holders: [string, IKeyValue][] = [];
      for (const kv of res.kvs) {
        const what = this.keys.parse(kv.key.toString());
        if (what?.kind === 'device') devices.set(what.id, { kv, holders: [] });
        else if (what?.kind === 'holder') holders.push([what.id, kv]);
      }
      for (const [id, kv] of holders) devices.get(id)?.holders.push(kv);
      const out: DeviceEntry[] = [];
      const rows = [...devices.values()].sort((a, b) => Number(a.kv.create_revision) - Number(b.kv.create_revision));
      for (const row of rows) {
        const e = listEntry(slotOf(this.keys, row.kv, row.holders).slot, filter);
        if (e !== undefined) out.push(e);
      }
      return out;
    });
  }

  borrow(id: string, host: HostName, opts: BorrowOptions): Promise<Lease> {
    return this.serial(async () => {
      const mode = borrowMode(host, opts);
      for (let i = 0; i < MAX_TRIES; i++) {
        const snap = await this._snapshot(id);
        const slot = snap.slot;
        const queue = borrowQueue(id, slot, mode);
        const holderKey = `${this.keys.holders(id)}${encodeURIComponent(host)}.${randomBytes(6).toString('hex')}`;
        const value: HolderValue = { holder: host, mode, queue: queue ?? null, outstanding: 0 };
        const res = await this.client
          .if(this.keys.device(id), 'Mod', '==', snap.kv.mod_revision)
          .then(
            this._touch(slot.device),
            this.client
              .put(holderKey)
              .value(JSON.stringify(value))
              .lease(await this.leaseId()),
            ...snap.stale.map((k) => this.client.delete().key(k)),
          )
          .commit();
        if (!res.succeeded) continue;
        // The holder key was created by this transaction, so its create revision (the generation) is the txn's.
        const generation = Number(res.header.revision);
        await this.delivered(generation);
        return Object.freeze({ id, holder: host, mode, queue, generation });
      }
      throw contended(id);
    });
  }

  return(lease: Lease, opts: ForceOptions = {}): Promise<void> {
    return this.serial(async () => {
      for (let i = 0; i < MAX_TRIES; i++) {
        const { snap, holding, kv } = await this._holding(lease);
        if (holding.outstanding > 0 && opts.force !== true) {
          throw pvError(
            'PV_ERR_LEND_IN_USE',
            `device ${lease.id}: ${lease.holder} still has ${holding.outstanding} request(s) outstanding`,
          );
        }
        // A plain return marks the device key first (EtcdKeys.ts: how watchers tell 'returned' from 'revoked').
        const ended = opts.force === true ? undefined : holding.lease.generation;
        const res = await this.client
          .if(this.keys.device(lease.id), 'Mod', '==', snap.kv.mod_revision)
          .and(kv.key, 'Mod', '==', kv.mod_revision)
          .then(this._touch(snap.slot.device, ended), this.client.delete().key(kv.key))
          .commit();
        if (!res.succeeded) continue;
        await this.delivered(Number(res.header.revision));
        return;
      }
      throw contended(lease.id);
    });
  }

  setInUse(lease: Lease, outstanding: number): Promise<void> {
    return this.serial(async () => {
      if (!Number.isSafeInteger(outstanding) || outstanding < 0) {
        throw pvError('PV_ERR_INVALID_ARG', `outstanding must be a non-negative integer, got ${outstanding}`);
      }
      for (let i = 0; i < MAX_TRIES; i++) {
        const { holding, kv } = await this._holding(lease);
        const l = holding.lease;
        const value: HolderValue = { holder: l.holder, mode: l.mode, queue: l.queue ?? null, outstanding };
        // Guarded by the holder key alone: a return racing with this re-reads (its compare includes this key).
        const res = await this.client
          .if(kv.key, 'Mod', '==', kv.mod_revision)
          .then(this.client.put(kv.key).value(JSON.stringify(value)).ignoreLease())
          .commit();
        if (!res.succeeded) continue;
        await this.delivered(Number(res.header.revision));
        return;
      }
      throw contended(lease.id);
    });
  }

  /** Rewrites a device key under its owner's lease: bumps the mod revision every guard compares. */
  private _touch(device: DeviceDescriptor, ended?: number) {
    return this.client.put(this.keys.device(device.id)).value(JSON.stringify({ device, ended })).ignoreLease();
  }

  /** One device and its holders, read atomically. */
  private async _snapshot(id: string): Promise<Snapshot> {
    if (typeof id !== 'string' || id.length === 0) throw notFound(id);
    const key = this.keys.device(id);
    const res = await this.client
      .if(key, 'Create', '>', 0)
      .then(this.client.get(key), this.client.getAll().prefix(this.keys.holders(id)))
      .commit();
    if (!res.succeeded) throw notFound(id);
    const kv = res.responses[0].response_range.kvs[0];
    return slotOf(this.keys, kv, res.responses[1].response_range.kvs);
  }

  /** The holding `lease` names: the device must exist and the lease must still be held, as given. */
  private async _holding(lease: Lease): Promise<{ snap: Snapshot; holding: Holding; kv: IKeyValue }> {
    if (typeof lease !== 'object' || lease === null) throw pvError('PV_ERR_INVALID_ARG', 'a lease object is required');
    const snap = await this._snapshot(lease.id);
    const holding = snap.slot.holdings.find(
      (h) => h.lease.generation === lease.generation && h.lease.holder === lease.holder,
    );
    if (holding === undefined) {
      throw pvError(
        'PV_ERR_LEND_NOT_HOLDER',
        `${String(lease.holder)} does not hold lease ${String(lease.generation)} on ${lease.id}: ${describe(snap.slot)}`,
      );
    }
    // INVARIANT: every holding of a snapshot comes from one of its holder keys.
    return { snap, holding, kv: snap.holderKvs.get(holding.lease.generation) as IKeyValue };
  }
}

/** Builds the InMemoryRegistry-shaped slot of a device key and its holder keys (sorted by generation). */
function slotOf(keys: EtcdKeys, kv: IKeyValue, holderKvs: readonly IKeyValue[]): Snapshot {
  const id = keys.parse(kv.key.toString())?.id as string;
  const device = Object.freeze({ ...JSON.parse(kv.value.toString()).device }) as DeviceDescriptor;
  const since = Number(kv.create_revision);
  const holdings: Holding[] = [];
  const byGeneration = new Map<number, IKeyValue>();
  const stale: string[] = [];
  for (const h of holderKvs) {
    if (Number(h.create_revision) < since) {
      stale.push(h.key.toString());
      continue;
    }
    const v = JSON.parse(h.value.toString()) as HolderValue;
    const lease = leaseOf(id, h, v);
    holdings.push({ lease, outstanding: v.outstanding });
    byGeneration.set(lease.generation, h);
  }
  holdings.sort((a, b) => a.lease.generation - b.lease.generation);
  return { kv, slot: { device, holdings }, holderKvs: byGeneration, stale };
}

function notFound(id: unknown): Error {
  return pvError('PV_ERR_LEND_NOT_FOUND', `no device ${String(id)} in the registry`);
}

function contended(id: string): Error {
  return pvError('PV_ERR_STORE_AGAIN', `device ${id}: gave up after ${MAX_TRIES} conflicting changes by other hosts`);
}

type Backoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Doubling reconnect delays from `ms`, capped at RECONNECT_MAX_MS (a cockatiel IBackoff). */
function cappedBackoff(ms: number): Backoff {
  return { duration: ms, next: () => cappedBackoff(Math.min(RECONNECT_MAX_MS, ms * 2)) };
}
