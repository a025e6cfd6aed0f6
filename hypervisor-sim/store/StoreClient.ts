/**
 * `StoreOps` inside a domain worker, over the `MessagePort` the host's `StoreServer` serves.
 * Requests carry an id and are answered in order; errors come back as `WireError` and are
 * rebuilt with `fromWireError`, so `err.code` (and the `StoreError` class) survive the crossing.
 *
 * The port is ref'd only while a request is outstanding or a watch is registered: a domain that
 * waits for a watch event stays alive, and one that is done may exit without closing the client
 * (Node keeps a thread alive as long as a ref'd port has a listener).
 */

import type { MessagePort } from 'node:worker_threads';
import { fromWireError, pvError } from '../../protocol/errors.js';
import { BaseStoreClient } from './BaseStoreClient.js';
import {
  isStoreWatchEvent,
  type StoreOpName,
  type StoreRequest,
  type StoreResponse,
  type StoreWatchAck,
} from './StoreMessages.js';

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

/** `StoreOps` for the domain on the other end of `port` (the server decides which domain that is). */
export class StoreClient extends BaseStoreClient {
  private readonly _pending = new Map<number, Pending>();
  private _nextId = 1;
  private _closed = false;

  constructor(private readonly _port: MessagePort) {
    super();
    _port.on('message', (msg: unknown) => this._onMessage(msg));
    _port.on('close', () => this._onClose());
    this._updateRef();
  }

  /** Closes the port; outstanding requests reject with PV_ERR_DISCONNECTED. */
  close(): void {
    if (this._closed) return;
    this._port.close();
    this._onClose();
  }

  protected override _call(op: StoreOpName, args: readonly unknown[]): Promise<unknown> {
    if (this._closed) return Promise.reject(pvError('PV_ERR_DISCONNECTED', 'store connection is closed'));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._updateRef();
      this._port.postMessage({ id, op, args } satisfies StoreRequest);
    });
  }

  protected override _ack(watchId: number): void {
    if (!this._closed) this._port.postMessage({ ack: watchId } satisfies StoreWatchAck);
  }

  private _onMessage(msg: unknown): void {
    if (isStoreWatchEvent(msg)) {
      this._deliver(msg.watchId, msg.path);
      return;
    }
    const r = msg as StoreResponse;
    const p = this._pending.get(r.id);
    if (p === undefined) return;
    this._pending.delete(r.id);
    if (r.ok) p.resolve(r.value);
    else p.reject(fromWireError(r.error));
    this._updateRef();
  }

  private _onClose(): void {
    if (this._closed) return;
    this._closed = true;
    this._dropWatches();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(pvError('PV_ERR_DISCONNECTED', 'store connection closed'));
  }

  private _updateRef(): void {
    if (this._closed) return;
    if (this._pending.size > 0 || this._watchCount > 0) this._port.ref();
    else this._port.unref();
  }
}
