/**
 * The store: a pure, single-threaded, synchronous xenstore (XSD, XSP). It lives in the host
 * thread; domains reach it through `StoreServer`/`StoreClient`, single-thread tests and the
 * fuzzer through `LocalStoreClient`. Every operation takes the caller's domain id first; the
 * server, not the guest, supplies it.
 *
 * Semantics kept from xenstored:
 *  - permissions: dom0 may do anything; a node's owner has all rights; others get their entry
 *    in the node's list, or the owner entry's flags. New nodes inherit their parent's perms, and
 *    an unprivileged creator becomes the owner. Only the owner or dom0 may set perms.
 *  - watches fire once on registration, then for every change at or below their path; removing
 *    a node also fires the watches below it. A watcher hears only about nodes it may read.
 *  - transactions work on a snapshot; their changes fire watches at commit; a commit fails with
 *    PV_ERR_STORE_AGAIN if a node the transaction looked at changed meanwhile.
 *  - quotas on nodes, watches, transactions and nodes touched per transaction bound what one
 *    guest can consume (XSA-349 and the xenstored quota family); dom0 is exempt.
 *  - a removed domain loses its home, watches and transactions, and the nodes it owned elsewhere
 *    pass to dom0 so a later domain with the same id inherits nothing (XSA-322).
 */

import { pvError } from '../../protocol/errors.js';
import type { StorePerm, StoreTx } from '../../protocol/Hypercalls.js';
import { DOM0, DOMID_MAX, type DomId, domId } from '../../protocol/Types.js';
import {
  type GenCounter,
  genAt,
  parsePath,
  type StoreChange,
  type StoreMutation,
  StoreTree,
  VALUE_MAX,
} from './StoreTree.js';
import { type WatchFire, WatchList } from './WatchList.js';

/** Per-domain limits for unprivileged domains. */
export interface StoreLimits {
  /** Nodes a domain may own. */
  readonly nodes: number;
  /** Watches a domain may hold. */
  readonly watches: number;
  /** Transactions a domain may have open. */
  readonly transactions: number;
  /** Nodes one transaction may touch (read or write). */
  readonly txNodes: number;
  /** Permission entries per node. */
  readonly perms: number;
}

/** xenstored's defaults (`quota-nodes`, `quota-max-watches` 128, `quota-max-transaction` 10, …). */
export const DEFAULT_STORE_LIMITS: StoreLimits = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  txNodes: 1024,
  perms: 5,
};

/** Watch callback: `(changedPath, token)`. */
export type { WatchFire } from './WatchList.js';

interface Transaction {
  readonly domid: DomId;
  /** Live root when the transaction started: the reference for the conflict check. */
  readonly base: StoreTree['root'];
  readonly work: StoreTree;
  readonly log: StoreMutation[];
}

/** Home directory of a domain. */
export function domainPath(domid: DomId): string {
  return `/local/domain/${domid}`;
}

/** The host's store: every op takes the calling domain first; see the file comment for semantics. */
export class XenStore {
  readonly limits: StoreLimits;
  private _live: StoreTree;
  private _gen = 0;
  private readonly _genCounter: GenCounter = { next: () => ++this._gen };
  private readonly _watches = new WatchList();
  private readonly _txs = new Map<StoreTx, Transaction>();
  private _nextTx = 1;
  private readonly _domains = new Set<DomId>();

  constructor(limits: Partial<StoreLimits> = {}) {
    this.limits = { ...DEFAULT_STORE_LIMITS, ...limits };
    const root = { value: '', perms: [{ domid: DOM0, read: false, write: false }], children: new Map(), gen: 0 };
    this._live = new StoreTree(root, new Map([[DOM0, 1]]), this._genCounter, this.limits);
    this._live.apply(DOM0, { op: 'mkdir', parts: ['local', 'domain'] }, []);
  }

  /** True once `introduceDomain(domid)` ran and until `removeDomain(domid)`. */
  hasDomain(domid: DomId): boolean {
    return this._domains.has(domid);
  }

  /** Creates `/local/domain/<id>` owned by the domain and lets it use the store. */
  introduceDomain(domid: DomId): void {
    domId(domid);
    if (this._domains.has(domid)) throw pvError('PV_ERR_STORE_EXISTS', `domain ${domid} was already introduced`);
    const parts = parsePath(domainPath(domid));
    const changes: StoreChange[] = [];
    this._live.apply(DOM0, { op: 'mkdir', parts }, changes);
    this._live.apply(DOM0, { op: 'setPerms', parts, perms: [{ domid, read: false, write: false }] }, changes);
    this._domains.add(domid);
    this._watches.fire(changes);
    this._watches.fireSpecial('@introduceDomain');
  }

  /** Removes a domain's home, watches and transactions; nodes it owned elsewhere pass to dom0. */
  removeDomain(domid: DomId): void {
    if (!this._domains.has(domid)) throw pvError('PV_ERR_NO_DOMAIN', `domain ${domid} is not in the store`);
    this._domains.delete(domid);
    for (const [id, tx] of this._txs) if (tx.domid === domid) this._txs.delete(id);
    this._watches.removeDomain(domid);
    const changes: StoreChange[] = [];
    const home = parsePath(domainPath(domid));
    if (this._live.get(home) !== undefined) this._live.apply(DOM0, { op: 'rm', parts: home }, changes);
    if (domid !== DOM0) this._live.disown(domid);
    this._watches.fire(changes);
    this._watches.fireSpecial('@releaseDomain');
  }

  /** Reads a value (read permission). */
  read(caller: DomId, path: string, tx: StoreTx = 0): string {
    return this._tree(caller, tx).readable(caller, parsePath(path)).value;
  }

  /** Writes a value, creating missing parents (write permission on the node or nearest ancestor). */
  write(caller: DomId, path: string, value: string, tx: StoreTx = 0): void {
    if (typeof value !== 'string' || value.length > VALUE_MAX) {
      throw pvError('PV_ERR_STORE_INVALID', `a store value is a string of at most ${VALUE_MAX} chars`);
    }
    this._mutate(caller, tx, { op: 'write', parts: parsePath(path), value });
  }

  /** Creates a node with an empty value unless it exists. */
  mkdir(caller: DomId, path: string, tx: StoreTx = 0): void {
    this._mutate(caller, tx, { op: 'mkdir', parts: parsePath(path) });
  }

  /** Removes a node and its subtree (write permission on the node). */
  rm(caller: DomId, path: string, tx: StoreTx = 0): void {
    this._mutate(caller, tx, { op: 'rm', parts: parsePath(path) });
  }

  /** Names of a node's children (read permission). */
  directory(caller: DomId, path: string, tx: StoreTx = 0): string[] {
    return [...this._tree(caller, tx).readable(caller, parsePath(path)).children.keys()];
  }

  /** A node's permissions, owner first (read permission). */
  getPerms(caller: DomId, path: string, tx: StoreTx = 0): StorePerm[] {
    return this._tree(caller, tx)
      .readable(caller, parsePath(path))
      .perms.map((p) => ({ ...p }));
  }

  /** Sets a node's permissions (owner or dom0; only dom0 may change the owner). */
  setPerms(caller: DomId, path: string, perms: readonly StorePerm[], tx: StoreTx = 0): void {
    const checked = perms.map((p) => {
      if (typeof p !== 'object' || p === null || typeof p.read !== 'boolean' || typeof p.write !== 'boolean') {
        throw pvError('PV_ERR_STORE_INVALID', 'a permission is {domid, read, write}');
      }
      if (!Number.isInteger(p.domid) || p.domid < 0 || p.domid > DOMID_MAX) {
        throw pvError('PV_ERR_STORE_INVALID', `bad domain id ${p.domid} in permissions`);
      }
      return { domid: p.domid, read: p.read, write: p.write };
    });
    this._mutate(caller, tx, { op: 'setPerms', parts: parsePath(path), perms: checked });
  }

  /**
   * Watches `path` (or `@introduceDomain` / `@releaseDomain`): `fire(path, token)` runs now, then
   * for every change at or below `path`. (caller, path, token) must be unique.
   */
  watch(caller: DomId, path: string, token: string, fire: WatchFire): void {
    this._checkCaller(caller);
    const special = path === '@introduceDomain' || path === '@releaseDomain';
    if (!special) parsePath(path);
    if (caller !== DOM0 && this._watches.count(caller) >= this.limits.watches) {
      throw pvError('PV_ERR_STORE_QUOTA', `domain ${caller} holds ${this.limits.watches} watches already`);
    }
    this._watches.add({ domid: caller, path, token, fire });
  }

  /** Removes a watch registered with the same (caller, path, token). */
  unwatch(caller: DomId, path: string, token: string): void {
    this._checkCaller(caller);
    this._watches.remove(caller, path, token);
  }

  /** Starts a transaction on a snapshot of the store. */
  transactionStart(caller: DomId): StoreTx {
    this._checkCaller(caller);
    if (caller !== DOM0) {
      let open = 0;
      for (const tx of this._txs.values()) if (tx.domid === caller) open++;
      if (open >= this.limits.transactions) {
        throw pvError('PV_ERR_STORE_QUOTA', `domain ${caller} has ${open} transactions open`);
      }
    }
    const work = this._live.clone();
    work.accessed = new Set();
    if (caller !== DOM0) work.accessLimit = this.limits.txNodes;
    const id = this._nextTx++;
    this._txs.set(id, { domid: caller, base: this._live.root, work, log: [] });
    return id;
  }

  /** Ends a transaction; a commit replays its changes or throws PV_ERR_STORE_AGAIN on conflict. */
  transactionEnd(caller: DomId, tx: StoreTx, commit: boolean): void {
    const t = this._tx(caller, tx);
    this._txs.delete(tx);
    if (!commit) return;
    for (const path of t.work.accessed ?? []) {
      const parts = path === '/' ? [] : path.slice(1).split('/');
      if (genAt(t.base, parts) !== genAt(this._live.root, parts)) {
        throw pvError('PV_ERR_STORE_AGAIN', `${path} changed during the transaction`);
      }
    }
    // Replay on a copy so a failure (quota, perms) leaves the live store untouched.
    const next = this._live.clone();
    const changes: StoreChange[] = [];
    for (const m of t.log) next.apply(caller, m, changes);
    this._live = next;
    this._watches.fire(changes);
  }

  /** Nodes a domain owns (for tests and `pvio top`). */
  nodeCount(domid: DomId): number {
    return this._live.counts.get(domid) ?? 0;
  }

  /** Watches a domain holds. */
  watchCount(domid: DomId): number {
    return this._watches.count(domid);
  }

  /** Transactions currently open (all domains). */
  openTransactions(): number {
    return this._txs.size;
  }

  private _checkCaller(caller: DomId): void {
    // dom0 is the toolstack: it may act before (and after) its own domain exists.
    if (caller !== DOM0 && !this._domains.has(caller)) {
      throw pvError('PV_ERR_NO_DOMAIN', `domain ${caller} is not known to the store`);
    }
  }

  private _tx(caller: DomId, tx: StoreTx): Transaction {
    const t = this._txs.get(tx);
    // Someone else's transaction id is answered like a missing one: ids reveal nothing.
    if (t === undefined || t.domid !== caller) throw pvError('PV_ERR_STORE_NOENT', `no transaction ${tx}`);
    return t;
  }

  private _tree(caller: DomId, tx: StoreTx): StoreTree {
    this._checkCaller(caller);
    return tx === 0 ? this._live : this._tx(caller, tx).work;
  }

  private _mutate(caller: DomId, tx: StoreTx, m: StoreMutation): void {
    this._checkCaller(caller);
    if (tx === 0) {
      const changes: StoreChange[] = [];
      this._live.apply(caller, m, changes);
      this._watches.fire(changes);
      return;
    }
    const t = this._tx(caller, tx);
    if (caller !== DOM0 && t.log.length >= this.limits.txNodes) {
      throw pvError('PV_ERR_STORE_QUOTA', `transaction ${tx} holds ${t.log.length} changes`);
    }
    t.work.apply(caller, m, []);
    t.log.push(m);
  }
}
