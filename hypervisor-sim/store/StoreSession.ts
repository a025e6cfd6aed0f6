/**
 * One domain's connection to the store: the single place where a request `{op, args}` is checked
 * and run against `XenStore` on behalf of a fixed domain id. `StoreServer` keeps one session per
 * port and `LocalStoreClient` one per client, so both run exactly the same op table.
 *
 * Arguments come from a guest and are untrusted: each is type-checked here before the store sees
 * it (`PV_ERR_STORE_INVALID`), and an unknown op is `PV_ERR_NOT_SUPPORTED`.
 *
 * Watch events are flow-controlled (XSA-349: a guest rewriting a watched key must not make the
 * watcher's event queue grow without bound). Each watch may have `window` events delivered and
 * not yet acknowledged; further events wait in a per-watch set of distinct paths (a rewrite of a
 * path already waiting adds nothing), and when that set reaches `maxPending` it collapses to the
 * watch's own path. That loses nothing a level-triggered watcher needs: it re-reads on the event.
 */

import { pvError } from '../../protocol/errors.js';
import type { StorePerm, StoreTx } from '../../protocol/Hypercalls.js';
import type { DomId } from '../../protocol/Types.js';
import type { StoreOpName } from './StoreMessages.js';
import type { XenStore } from './XenStore.js';

/** Bounds on undelivered watch events, per watch. */
export interface WatchDeliveryLimits {
  /** Events delivered and not yet acknowledged. */
  readonly window: number;
  /** Distinct changed paths kept while the window is full. */
  readonly maxPending: number;
}

/** Defaults: enough for a handshake burst, small enough that a flood costs little. */
export const DEFAULT_WATCH_DELIVERY: WatchDeliveryLimits = { window: 16, maxPending: 64 };

/** Where a session sends a watch event; the receiver must `ack(watchId)` once it handled it. */
export type WatchSink = (watchId: number, path: string) => void;

interface SessionWatch {
  readonly path: string;
  readonly token: string;
  inFlight: number;
  readonly pending: Set<string>;
  collapsed: boolean;
}

type OpImpl = (s: StoreSession, a: readonly unknown[]) => unknown;

/** The one op table: request name → checked call into the store. */
const OPS: Readonly<Record<StoreOpName, OpImpl>> = {
  read: (s, a) => s.store.read(s.domid, str(a, 0), tx(a, 1)),
  tryRead: (s, a) => {
    try {
      return s.store.read(s.domid, str(a, 0), tx(a, 1));
    } catch (err) {
      if ((err as { code?: unknown }).code === 'PV_ERR_STORE_NOENT') return undefined;
      throw err;
    }
  },
  write: (s, a) => s.store.write(s.domid, str(a, 0), str(a, 1), tx(a, 2)),
  mkdir: (s, a) => s.store.mkdir(s.domid, str(a, 0), tx(a, 1)),
  rm: (s, a) => s.store.rm(s.domid, str(a, 0), tx(a, 1)),
  directory: (s, a) => s.store.directory(s.domid, str(a, 0), tx(a, 1)),
  setPerms: (s, a) => s.store.setPerms(s.domid, str(a, 0), perms(a, 1), tx(a, 2)),
  getPerms: (s, a) => s.store.getPerms(s.domid, str(a, 0), tx(a, 1)),
  watch: (s, a) => s.addWatch(str(a, 0), id(a, 1)),
  unwatch: (s, a) => s.removeWatch(id(a, 0)),
  transactionStart: (s) => s.startTransaction(),
  transactionEnd: (s, a) => s.endTransaction(tx(a, 0), bool(a, 1)),
};

let sessionSerial = 0;

/** One domain's connection: checked dispatch of requests, its watches (flow-controlled) and transactions. */
export class StoreSession {
  private readonly _watches = new Map<number, SessionWatch>();
  private readonly _txs = new Set<StoreTx>();
  private readonly _limits: WatchDeliveryLimits;
  /** Prefix that keeps this session's tokens apart from other sessions of the same domain. */
  private readonly _tokenPrefix = `s${++sessionSerial}:`;
  private _closed = false;

  constructor(
    readonly store: XenStore,
    readonly domid: DomId,
    private readonly _sink: WatchSink,
    limits: Partial<WatchDeliveryLimits> = {},
  ) {
    this._limits = { ...DEFAULT_WATCH_DELIVERY, ...limits };
  }

  /** Runs one request; throws the store's error (the caller turns it into a response). */
  handle(op: unknown, args: unknown): unknown {
    if (this._closed) throw pvError('PV_ERR_DISCONNECTED', 'store session is closed');
    if (typeof op !== 'string' || !Object.hasOwn(OPS, op)) {
      throw pvError('PV_ERR_NOT_SUPPORTED', `unknown store op ${String(op).slice(0, 64)}`);
    }
    if (!Array.isArray(args)) throw pvError('PV_ERR_STORE_INVALID', 'store op arguments must be an array');
    return OPS[op as StoreOpName](this, args);
  }

  /** The receiver handled one event of `watchId`: deliver the next waiting one, if any. */
  ack(watchId: unknown): void {
    const w = typeof watchId === 'number' ? this._watches.get(watchId) : undefined;
    if (w === undefined) return;
    w.inFlight = Math.max(0, w.inFlight - 1);
    this._drain(watchId as number, w);
  }

  /** Registers a watch under a client-chosen id; its first event is the registration event. */
  addWatch(path: string, watchId: number): void {
    if (this._watches.has(watchId)) throw pvError('PV_ERR_STORE_EXISTS', `watch id ${watchId} is in use`);
    const w: SessionWatch = {
      path,
      token: this._tokenPrefix + watchId,
      inFlight: 0,
      pending: new Set(),
      collapsed: false,
    };
    this._watches.set(watchId, w);
    try {
      this.store.watch(this.domid, path, w.token, (changed) => this._onFire(watchId, changed));
    } catch (err) {
      this._watches.delete(watchId);
      throw err;
    }
  }

  /** Removes a watch; events already sent may still arrive and are dropped by the client. */
  removeWatch(watchId: number): void {
    const w = this._watches.get(watchId);
    if (w === undefined) throw pvError('PV_ERR_STORE_NOENT', `no watch id ${watchId}`);
    this._watches.delete(watchId);
    this.store.unwatch(this.domid, w.path, w.token);
  }

  /** Starts a transaction owned by this session (aborted if the session closes). */
  startTransaction(): StoreTx {
    const id = this.store.transactionStart(this.domid);
    this._txs.add(id);
    return id;
  }

  /** Ends one of this session's transactions. */
  endTransaction(id: StoreTx, commit: boolean): void {
    if (!this._txs.has(id)) throw pvError('PV_ERR_STORE_NOENT', `no transaction ${id}`);
    this._txs.delete(id);
    this.store.transactionEnd(this.domid, id, commit);
  }

  /** Drops the session's watches and aborts its transactions; later requests fail. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    for (const w of this._watches.values()) ignoreMissing(() => this.store.unwatch(this.domid, w.path, w.token));
    for (const id of this._txs) ignoreMissing(() => this.store.transactionEnd(this.domid, id, false));
    this._watches.clear();
    this._txs.clear();
  }

  private _onFire(watchId: number, path: string): void {
    const w = this._watches.get(watchId);
    if (w === undefined || this._closed) return;
    if (w.collapsed) return;
    if (w.pending.size >= this._limits.maxPending) {
      w.pending.clear();
      w.pending.add(w.path);
      w.collapsed = true;
    } else {
      w.pending.add(path);
    }
    this._drain(watchId, w);
  }

  private _drain(watchId: number, w: SessionWatch): void {
    while (w.inFlight < this._limits.window && w.pending.size > 0) {
      const [next] = w.pending;
      w.pending.delete(next);
      if (w.pending.size === 0) w.collapsed = false;
      w.inFlight++;
      this._sink(watchId, next);
    }
  }
}

function ignoreMissing(fn: () => void): void {
  try {
    fn();
  } catch {
    // Already gone (e.g. removeDomain ran first): nothing left to release.
  }
}

function str(a: readonly unknown[], i: number): string {
  const v = a[i];
  if (typeof v !== 'string') throw pvError('PV_ERR_STORE_INVALID', `argument ${i} must be a string`);
  return v;
}

function tx(a: readonly unknown[], i: number): StoreTx {
  const v = a[i];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw pvError('PV_ERR_STORE_INVALID', `argument ${i} must be a transaction id`);
  }
  return v;
}

function id(a: readonly unknown[], i: number): number {
  const v = a[i];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw pvError('PV_ERR_STORE_INVALID', `argument ${i} must be a watch id`);
  }
  return v;
}

function bool(a: readonly unknown[], i: number): boolean {
  const v = a[i];
  if (typeof v !== 'boolean') throw pvError('PV_ERR_STORE_INVALID', `argument ${i} must be a boolean`);
  return v;
}

function perms(a: readonly unknown[], i: number): StorePerm[] {
  const v = a[i];
  // The store bounds the list further for guests; this only stops absurd payloads early.
  if (!Array.isArray(v) || v.length > 64)
    throw pvError('PV_ERR_STORE_INVALID', `argument ${i} must be a permission list`);
  return v as StorePerm[];
}
