/**
 * The client half shared by `StoreClient` (over a MessagePort) and `LocalStoreClient` (same
 * thread): every `StoreOps` method is one request through `_call`, and watch callbacks are kept
 * here under client-chosen ids. Subclasses only move requests, responses and events.
 */

import type { StoreOps, StorePerm, StoreTx, Unwatch } from '../../protocol/Hypercalls.js';
import type { StoreOpName } from './StoreMessages.js';

/** `StoreOps` over an abstract request channel; see the file comment. */
export abstract class BaseStoreClient implements StoreOps {
  private readonly _callbacks = new Map<number, (changedPath: string) => void>();
  private _nextWatchId = 1;

  /** Sends one request and resolves with its value (or rejects with its error). */
  protected abstract _call(op: StoreOpName, args: readonly unknown[]): Promise<unknown>;

  /** Tells the session one event of `watchId` was handled (frees a delivery credit). */
  protected abstract _ack(watchId: number): void;

  /** Watches whose callback is registered here. */
  protected get _watchCount(): number {
    return this._callbacks.size;
  }

  /** Runs the callback of one event, then acknowledges it even if the callback threw. */
  protected _deliver(watchId: number, path: string): void {
    try {
      this._callbacks.get(watchId)?.(path);
    } finally {
      this._ack(watchId);
    }
  }

  /** Forgets every callback (the connection is gone). */
  protected _dropWatches(): void {
    this._callbacks.clear();
  }

  /** @inheritdoc */
  read(path: string, tx?: StoreTx): Promise<string> {
    return this._call('read', [path, tx]) as Promise<string>;
  }

  /** @inheritdoc */
  tryRead(path: string, tx?: StoreTx): Promise<string | undefined> {
    return this._call('tryRead', [path, tx]) as Promise<string | undefined>;
  }

  /** @inheritdoc */
  async write(path: string, value: string, tx?: StoreTx): Promise<void> {
    await this._call('write', [path, value, tx]);
  }

  /** @inheritdoc */
  async mkdir(path: string, tx?: StoreTx): Promise<void> {
    await this._call('mkdir', [path, tx]);
  }

  /** @inheritdoc */
  async rm(path: string, tx?: StoreTx): Promise<void> {
    await this._call('rm', [path, tx]);
  }

  /** @inheritdoc */
  directory(path: string, tx?: StoreTx): Promise<string[]> {
    return this._call('directory', [path, tx]) as Promise<string[]>;
  }

  /** @inheritdoc */
  async setPerms(path: string, perms: readonly StorePerm[], tx?: StoreTx): Promise<void> {
    await this._call('setPerms', [path, perms, tx]);
  }

  /** @inheritdoc */
  getPerms(path: string, tx?: StoreTx): Promise<StorePerm[]> {
    return this._call('getPerms', [path, tx]) as Promise<StorePerm[]>;
  }

  /** @inheritdoc */
  async watch(path: string, cb: (changedPath: string) => void): Promise<Unwatch> {
    const watchId = this._nextWatchId++;
    // Registered before the request: the registration event may overtake the response.
    this._callbacks.set(watchId, cb);
    try {
      await this._call('watch', [path, watchId]);
    } catch (err) {
      this._callbacks.delete(watchId);
      throw err;
    }
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      this._callbacks.delete(watchId);
      await this._call('unwatch', [watchId]);
    };
  }

  /** @inheritdoc */
  transactionStart(): Promise<StoreTx> {
    return this._call('transactionStart', []) as Promise<StoreTx>;
  }

  /** @inheritdoc */
  async transactionEnd(tx: StoreTx, commit: boolean): Promise<void> {
    await this._call('transactionEnd', [tx, commit]);
  }
}
