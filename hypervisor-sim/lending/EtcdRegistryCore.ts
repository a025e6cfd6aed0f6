/**
 * The plumbing under EtcdRegistry.ts: the per-client call queue, the etcd watch that feeds
 * watchers, and the etcd lease that keeps this host's devices and borrows alive.
 *
 * Calls wait for their own events: a change resolves only after this client's watcher has
 * delivered the change's revision, so — as with InMemoryRegistry — a caller that awaited a call
 * knows every watcher of this client has seen its events, and a watcher that reacts by calling
 * the registry queues behind the call that caused the event.
 *
 * Lease loss: when etcd says the lease is gone (it expired while etcd was unreachable for longer
 * than the TTL, or it was revoked), this client takes a new lease and re-registers the devices
 * it registered, retrying while etcd is down. Borrows held under the old lease are not renewed:
 * etcd revoked them and watchers saw it.
 */

import type { Etcd3, Lease as EtcdLease, IWatchResponse, Watcher } from 'etcd3';
import { pvError } from '../../protocol/errors.js';
import { type EtcdKeys, EventMirror } from './EtcdKeys.js';
import type { DeviceDescriptor, RegistryEvent, RegistryListener } from './Types.js';

/** Pause before taking a new lease / retrying a re-registration while etcd may still be down (doubles to the max). */
const RENEW_DELAY_MS = 100;
const RENEW_DELAY_MAX_MS = 1000;

/** Options of `close`. */
export interface CloseOptions {
  /**
   * true (default): revoke the lease, so this host's devices and borrows leave the registry now.
   * false: stop keeping it alive and drop the connection, as a crash would; they go after the TTL.
   */
  readonly graceful?: boolean;
}

export abstract class EtcdRegistryCore {
  /** Devices this client registered and re-registers after losing its lease. */
  protected readonly owned = new Map<string, DeviceDescriptor>();
  private readonly _listeners = new Set<RegistryListener>();
  private readonly _mirror: EventMirror;
  private readonly _onListenerError: (err: unknown, event: RegistryEvent) => void;
  private _tail: Promise<unknown> = Promise.resolve();
  private _lease: EtcdLease | undefined;
  private _watcher: Watcher | undefined;
  private _delivered = 0;
  private _waiters: { revision: number; resolve: () => void }[] = [];
  private _closed = false;
  private _timer: NodeJS.Timeout | undefined;
  private _renewDelay = RENEW_DELAY_MS;

  protected constructor(
    protected readonly client: Etcd3,
    protected readonly keys: EtcdKeys,
    private readonly _ttl: number,
    onListenerError: ((err: unknown, event: RegistryEvent) => void) | undefined,
  ) {
    this._mirror = new EventMirror(keys);
    this._onListenerError =
      onListenerError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
  }

  /** etcd revision of the last change this client's watchers were given. */
  get revision(): number {
    return this._delivered;
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

  /** Stops watching and leaves etcd (see CloseOptions). Calls still queued fail. */
  async close(opts: CloseOptions = {}): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    await this._watcher?.cancel().catch(() => undefined);
    if (opts.graceful === false) this._lease?.release();
    else await this._lease?.revoke().catch(() => undefined);
    this.client.close();
    // The changes these waited for are committed; nobody will deliver their events any more.
    for (const w of this._waiters.splice(0)) w.resolve();
  }

  /** Reads the registry, then watches it from the next revision; takes the lease. */
  protected async start(): Promise<void> {
    const res = await this.client.getAll().prefix(this.keys.root).sort('Create', 'Ascend').exec();
    this._mirror.seed(res.kvs);
    this._delivered = Number(res.header.revision);
    this._watcher = await this.client
      .watch()
      .prefix(this.keys.root)
      .startRevision(String(this._delivered + 1))
      .create();
    this._watcher.on('data', (r) => this._onData(r));
    // The watcher reconnects and resumes from its last revision by itself; errors are only logged.
    this._watcher.on('error', (err) => {
      if (!this._closed) console.error(`pvio registry: etcd watch error (resuming): ${err.message}`);
    });
    this._lease = this._newLease();
    await this._lease.grant();
  }

  /** Runs `op` after every earlier call of this client has settled. */
  protected serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this._tail.then(() => {
      if (this._closed) throw pvError('PV_ERR_INVALID_ARG', 'the etcd registry client is closed');
      return op();
    });
    this._tail = run.catch(() => undefined);
    return run;
  }

  /** The id of this client's current etcd lease. */
  protected leaseId(): Promise<string> {
    // INVARIANT: start() set the lease before any call can run.
    return (this._lease as EtcdLease).grant();
  }

  /** Resolves once the watcher has delivered the events of `revision`. */
  protected delivered(revision: number): Promise<void> {
    if (this._delivered >= revision || this._closed) return Promise.resolve();
    return new Promise((resolve) => this._waiters.push({ revision, resolve }));
  }

  private _onData(res: IWatchResponse): void {
    for (const e of res.events) {
      for (const event of this._mirror.apply(e.type, e.kv)) this._emit(Object.freeze(event));
      this._delivered = Math.max(this._delivered, Number(e.kv.mod_revision));
    }
    const ready = this._waiters.filter((w) => w.revision <= this._delivered);
    this._waiters = this._waiters.filter((w) => w.revision > this._delivered);
    for (const w of ready) w.resolve();
  }

  private _emit(event: RegistryEvent): void {
    for (const l of [...this._listeners]) {
      try {
        l(event);
      } catch (err) {
        this._onListenerError(err, event);
      }
    }
  }

  private _newLease(): EtcdLease {
    const lease = this.client.lease(this._ttl);
    lease.on('lost', () => this._onLost(lease));
    // A failed grant also fires 'lost', which retries.
    lease.grant().catch(() => undefined);
    return lease;
  }

  private _onLost(lease: EtcdLease): void {
    if (this._closed || lease !== this._lease) return;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      if (this._closed) return;
      const next = this._newLease();
      this._lease = next;
      void this._reregister(next);
    }, this._renewDelay);
    // Each failed grant lands here again: back off while etcd stays away.
    this._renewDelay = Math.min(RENEW_DELAY_MAX_MS, this._renewDelay * 2);
  }

  /** Puts every owned device back under `lease`; retries while etcd refuses, until a newer lease takes over. */
  private async _reregister(lease: EtcdLease): Promise<void> {
    for (;;) {
      if (this._closed || lease !== this._lease) return;
      try {
        const id = await lease.grant();
        for (const d of [...this.owned.values()]) await this._reregisterOne(d, id);
        this._renewDelay = RENEW_DELAY_MS;
        return;
      } catch {
        await new Promise((r) => setTimeout(r, this._renewDelay));
      }
    }
  }

  private async _reregisterOne(d: DeviceDescriptor, leaseId: string): Promise<void> {
    const key = this.keys.device(d.id);
    for (;;) {
      const kv = (await this.client.get(key).exec()).kvs[0];
      if (kv !== undefined && kv.lease === leaseId) return;
      // Absent: register anew. Present under the dead lease (etcd kept it across a restart): move it to ours.
      const value = kv === undefined ? JSON.stringify({ device: d }) : kv.value.toString();
      const res = await this.client
        .if(key, 'Mod', '==', kv === undefined ? 0 : kv.mod_revision)
        .then(this.client.put(key).value(value).lease(leaseId))
        .commit();
      if (res.succeeded) return;
    }
  }
}
