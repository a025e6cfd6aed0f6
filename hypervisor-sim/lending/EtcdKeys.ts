/**
 * How the etcd registry lays out its keys, and the mirror that turns etcd's key changes back into
 * RegistryEvents (EtcdRegistry.ts has the transactions that write them).
 *
 *   <root>devices/<id>            {device, ended?}      under the owner's lease
 *   <root>holders/<id>/<nonce>    {lease, outstanding}  under the borrower's lease
 *
 * `<id>` is URI-encoded so that `A/nic0` and `A/nic0x` never share a holder prefix. A lease's
 * generation is its holder key's create revision: unique and never reused, as Types.ts asks.
 * Every change of a device's holdings also rewrites its device key (keeping the owner's lease),
 * so one compare on the device key's mod revision guards the whole device in a transaction.
 *
 * Only one thing is not in the keys themselves: whether a deleted holder key was returned or
 * revoked. A plain return writes `ended: generation` into the device key in the same transaction,
 * before deleting the holder key; any other end (forced return, forced unregister, the
 * borrower's lease expiring) is a revocation — the holder did not give the device back.
 */

import type { IKeyValue } from 'etcd3';
import type { DeviceDescriptor, Lease, LeaseMode, RegistryEvent } from './Types.js';

/** Value of a device key. */
export interface DeviceValue {
  readonly device: DeviceDescriptor;
  /** Generation of the lease this transaction returned plainly (see the file comment). */
  readonly ended?: number;
}

/** Value of a holder key (the generation is the key's create revision, not stored). */
export interface HolderValue {
  readonly holder: string;
  readonly mode: LeaseMode;
  readonly queue: number | null;
  readonly outstanding: number;
}

/** Key names under one cluster's root. */
export class EtcdKeys {
  constructor(readonly root: string) {}

  device(id: string): string {
    return `${this.root}devices/${encodeURIComponent(id)}`;
  }

  holders(id: string): string {
    return `${this.root}holders/${encodeURIComponent(id)}/`;
  }

  /** What a key under the root names, or undefined for a foreign key. */
  parse(key: string): { kind: 'device'; id: string } | { kind: 'holder'; id: string } | undefined {
    if (!key.startsWith(this.root)) return undefined;
    const parts = key.slice(this.root.length).split('/');
    if (parts[0] === 'devices' && parts.length === 2) return { kind: 'device', id: decodeURIComponent(parts[1]) };
    if (parts[0] === 'holders' && parts.length === 3) return { kind: 'holder', id: decodeURIComponent(parts[1]) };
    return undefined;
  }
}

/** The lease a holder key stands for. */
export function leaseOf(id: string, kv: IKeyValue, v: HolderValue): Lease {
  return Object.freeze({
    id,
    holder: v.holder,
    mode: v.mode,
    queue: v.queue ?? undefined,
    generation: Number(kv.create_revision),
  });
}

/**
 * The watcher's view of the registry, fed every etcd event in revision order; it returns the
 * RegistryEvents each one means. Holder keys of a device that is gone (or that predate the
 * device's current registration, after its owner re-registered it) are ignored: their lease
 * ended with the old registration.
 */
export class EventMirror {
  /** Device id → create revision of its current device key. */
  private readonly _devices = new Map<string, number>();
  /** Holder key → its lease. */
  private readonly _holders = new Map<string, Lease>();
  /** Device id → [revision, generation] of its latest plain return. */
  private readonly _ended = new Map<string, readonly [number, number]>();

  constructor(private readonly _keys: EtcdKeys) {}

  /**
   * Seeds the mirror from a range read of the whole root (before watching from the next
   * revision), without events. INVARIANT: `kvs` sorted by create revision, so each device comes
   * before its holders.
   */
  seed(kvs: readonly IKeyValue[]): void {
    for (const kv of kvs) this.apply('Put', kv);
  }

  apply(type: 'Put' | 'Delete', kv: IKeyValue): RegistryEvent[] {
    const key = kv.key.toString();
    const what = this._keys.parse(key);
    if (what === undefined) return [];
    const revision = Number(kv.mod_revision);
    if (what.kind === 'device') {
      if (type === 'Put') {
        const value = JSON.parse(kv.value.toString()) as DeviceValue;
        if (value.ended !== undefined) this._ended.set(what.id, [revision, value.ended]);
        // A rewrite of the same registration (a guard bump, a new owner lease) is no event.
        if (this._devices.get(what.id) === Number(kv.create_revision)) return [];
        this._devices.set(what.id, Number(kv.create_revision));
        return [{ type: 'registered', revision, device: Object.freeze({ ...value.device }) }];
      }
      // A deleted device takes every lease on it along (forced unregister, or the owner's lease ended).
      const out: RegistryEvent[] = [];
      for (const [hk, lease] of [...this._holders].sort((a, b) => a[1].generation - b[1].generation)) {
        if (lease.id !== what.id) continue;
        this._holders.delete(hk);
        out.push({ type: 'revoked', revision, lease });
      }
      this._devices.delete(what.id);
      this._ended.delete(what.id);
      out.push({ type: 'unregistered', revision, id: what.id });
      return out;
    }
    if (type === 'Put') {
      const since = this._devices.get(what.id);
      if (this._holders.has(key) || since === undefined || Number(kv.create_revision) < since) return [];
      const lease = leaseOf(what.id, kv, JSON.parse(kv.value.toString()) as HolderValue);
      this._holders.set(key, lease);
      return [{ type: 'borrowed', revision, lease }];
    }
    const lease = this._holders.get(key);
    if (lease === undefined) return [];
    this._holders.delete(key);
    const ended = this._ended.get(what.id);
    const plain = ended !== undefined && ended[0] === revision && ended[1] === lease.generation;
    return [{ type: plain ? 'returned' : 'revoked', revision, lease }];
  }
}
