/**
 * Who is in the cluster and where: each `pvio host` publishes a record on etcd, next to the
 * device registry (same cluster prefix), and watches everyone else's.
 *
 * ```
 * key                               value                                    lifetime
 * /pvio/<cluster>/host-ids/<n>      host name                                forever: n is that name's id
 * /pvio/<cluster>/hosts/<name>      {name, hostId, link: "HOST:PORT", pid}   under the host's etcd lease
 * ```
 * The host id (1 … MAX_HOST_ID) is allocated once per name by a create-if-absent transaction and
 * kept across restarts, so a host's NIC port ids (hostId × PORTS_PER_HOST + i) — the LIDs peers
 * address — are stable and cluster-unique. The host record lives under a lease kept alive by
 * this process: a host killed with -9 leaves the directory when the TTL runs out. When the lease
 * is lost (etcd unreachable longer than the TTL, or restarted without its data), the record is
 * put again under a new lease — hosts re-register.
 */

import { Etcd3, type Lease as EtcdLease } from 'etcd3';
import { pvError } from '../../protocol/errors.js';
import { etcdFaultHandling } from '../lending/EtcdFaults.js';

/** NIC port ids per host: host h owns ports h × 256 + 1 … h × 256 + 255. */
export const PORTS_PER_HOST = 256;
/** Largest host id (port ids stay below 2^24). */
export const MAX_HOST_ID = 0xffff;

/** One host as the directory lists it. */
export interface HostRecord {
  readonly name: string;
  readonly hostId: number;
  /** Where its host link listens, `HOST:PORT`. */
  readonly link: string;
  readonly pid: number;
}

/** The host that owns NIC port `port`. */
export function hostIdOfPort(port: number): number {
  return Math.floor(port / PORTS_PER_HOST);
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function parseRecord(raw: string): HostRecord | undefined {
  try {
    const r = JSON.parse(raw) as Partial<HostRecord>;
    if (typeof r.name !== 'string' || !NAME.test(r.name)) return undefined;
    if (!Number.isInteger(r.hostId) || (r.hostId as number) < 1 || (r.hostId as number) > MAX_HOST_ID) return undefined;
    if (typeof r.link !== 'string' || !/^[^\s:]+:\d{1,5}$/.test(r.link)) return undefined;
    return { name: r.name, hostId: r.hostId as number, link: r.link, pid: Number(r.pid) || 0 };
  } catch {
    return undefined;
  }
}

export interface HostDirectoryOptions {
  readonly endpoints: readonly string[];
  readonly cluster?: string;
  /** Seconds a dead host's record outlives it (etcd lease TTL). Default 5. */
  readonly ttl?: number;
  /** Bound on the first contact with etcd (ms). Default 5000. */
  readonly connectTimeoutMs?: number;
}

export class HostDirectory {
  private readonly _hosts = new Map<string, HostRecord>();
  private readonly _listeners = new Set<(name: string, rec: HostRecord | undefined) => void>();
  private _lease: EtcdLease | undefined;
  private _me: HostRecord | undefined;
  private _closed = false;
  private _retry: NodeJS.Timeout | undefined;

  private constructor(
    private readonly _client: Etcd3,
    private readonly _root: string,
    private readonly _ttl: number,
  ) {}

  static async connect(opts: HostDirectoryOptions): Promise<HostDirectory> {
    const cluster = opts.cluster ?? 'default';
    if (!NAME.test(cluster)) throw pvError('PV_ERR_INVALID_ARG', `cluster name ${cluster} must match ${NAME}`);
    const client = new Etcd3({ hosts: [...opts.endpoints], faultHandling: etcdFaultHandling() });
    const d = new HostDirectory(client, `/pvio/${cluster}/`, opts.ttl ?? 5);
    // etcd3 retries an unreachable server for ever: bound the first contact so a wrong address
    // is an error the user sees, not a silent hang.
    let timer: NodeJS.Timeout | undefined;
    const bound = opts.connectTimeoutMs ?? 5000;
    try {
      await Promise.race([
        d._start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${bound} ms`)), bound);
        }),
      ]);
    } catch (err) {
      client.close();
      throw pvError(
        'PV_ERR_CONFIG',
        `cannot reach etcd at ${opts.endpoints.join(', ')}: ${(err as Error).message} — is etcd running there? (or start a local cluster with \`pvio cluster\`)`,
      );
    } finally {
      clearTimeout(timer);
    }
    return d;
  }

  /** The id of `name`: the one it had, or the lowest free one (atomic against other hosts). */
  async allocateId(name: string): Promise<number> {
    if (!NAME.test(name)) throw pvError('PV_ERR_INVALID_ARG', `host name ${name} must match ${NAME}`);
    const ids = await this._client.getAll().prefix(`${this._root}host-ids/`).strings();
    for (const [key, owner] of Object.entries(ids)) if (owner === name) return Number(key.split('/').pop());
    for (let n = 1; n <= MAX_HOST_ID; n++) {
      const key = `${this._root}host-ids/${n}`;
      if (ids[key] !== undefined) continue;
      const res = await this._client.if(key, 'Create', '==', 0).then(this._client.put(key).value(name)).commit();
      if (res.succeeded) return n;
      const now = await this._client.get(key).string();
      if (now === name) return n;
    }
    throw pvError('PV_ERR_LIMIT', `no free host id (${MAX_HOST_ID} hosts)`);
  }

  /** Publishes this host's record under a kept-alive lease (and again after a lease loss). */
  async publish(rec: HostRecord): Promise<void> {
    this._me = rec;
    await this._put();
  }

  /** Every live host, this one included. */
  hosts(): HostRecord[] {
    return [...this._hosts.values()].sort((a, b) => a.hostId - b.hostId);
  }

  byName(name: string): HostRecord | undefined {
    return this._hosts.get(name);
  }

  byId(hostId: number): HostRecord | undefined {
    for (const h of this._hosts.values()) if (h.hostId === hostId) return h;
    return undefined;
  }

  /** Calls `fn(name, record)` on each arrival or change, `fn(name, undefined)` on a departure. */
  watch(fn: (name: string, rec: HostRecord | undefined) => void): () => void {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /** Leaves: graceful revokes the lease (the record goes now); otherwise it expires after the TTL. */
  async close(graceful = true): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._retry);
    if (graceful) await this._lease?.revoke().catch(() => undefined);
    else this._lease?.release();
    this._client.close();
  }

  private async _start(): Promise<void> {
    const prefix = `${this._root}hosts/`;
    const watcher = await this._client.watch().prefix(prefix).create();
    watcher.on('put', (kv) => this._set(kv.key.toString().slice(prefix.length), parseRecord(kv.value.toString())));
    watcher.on('delete', (kv) => this._set(kv.key.toString().slice(prefix.length), undefined));
    watcher.on('error', () => undefined);
    const now = await this._client.getAll().prefix(prefix).strings();
    for (const [k, v] of Object.entries(now)) this._set(k.slice(prefix.length), parseRecord(v));
  }

  private _set(name: string, rec: HostRecord | undefined): void {
    if (rec !== undefined && rec.name !== name) return;
    if (rec === undefined) this._hosts.delete(name);
    else this._hosts.set(name, rec);
    // A restarted etcd, or a lease lost: our own record vanished — put it back.
    if (rec === undefined && name === this._me?.name && !this._closed) this._schedule(100);
    for (const l of [...this._listeners]) l(name, rec);
  }

  private _schedule(ms: number): void {
    clearTimeout(this._retry);
    this._retry = setTimeout(() => {
      this._put().catch(() => this._schedule(Math.min(ms * 2, 1000)));
    }, ms);
  }

  private async _put(): Promise<void> {
    const me = this._me;
    if (me === undefined || this._closed) return;
    if (this._lease === undefined) {
      const lease = this._client.lease(this._ttl);
      lease.on('lost', () => {
        if (this._lease !== lease) return;
        this._lease = undefined;
        if (!this._closed) this._schedule(100);
      });
      this._lease = lease;
    }
    await this._lease.put(`${this._root}hosts/${me.name}`).value(JSON.stringify(me));
    // An etcd that lost its data lost the id table too: claim our id again (if still free).
    const idKey = `${this._root}host-ids/${me.hostId}`;
    await this._client.if(idKey, 'Create', '==', 0).then(this._client.put(idKey).value(me.name)).commit();
  }
}
