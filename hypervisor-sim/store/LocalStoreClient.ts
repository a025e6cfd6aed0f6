/**
 * `StoreOps` for one domain over a `XenStore` in the same thread: what single-thread tests, the
 * backend fuzzer and host-side toolstack code use. Requests run through the same `StoreSession`
 * op table as the cross-thread server, so both paths check the same things.
 *
 * Ops run synchronously when called (the returned promise is already settled, like a reply
 * that came back at once). Watch callbacks are delivered on a later macrotask (`setImmediate`),
 * as a message from the server would be: never inside the op that caused them, so a callback
 * that writes to the store cannot re-enter it, and a chain of watchers cannot starve timers.
 */

import { pvError } from '../../protocol/errors.js';
import type { DomId } from '../../protocol/Types.js';
import { BaseStoreClient } from './BaseStoreClient.js';
import type { StoreOpName } from './StoreMessages.js';
import { StoreSession, type WatchDeliveryLimits } from './StoreSession.js';
import type { XenStore } from './XenStore.js';

/** `StoreOps` for one domain over a same-thread `XenStore`. */
export class LocalStoreClient extends BaseStoreClient {
  private readonly _session: StoreSession;
  private _closed = false;

  constructor(
    store: XenStore,
    /** The domain this client acts as. */
    readonly domid: DomId,
    delivery: Partial<WatchDeliveryLimits> = {},
  ) {
    super();
    this._session = new StoreSession(
      store,
      domid,
      (watchId, path) =>
        setImmediate(() => {
          if (!this._closed) this._deliver(watchId, path);
        }),
      delivery,
    );
  }

  /** Drops this client's watches and aborts its transactions; later calls reject. */
  close(): void {
    this._closed = true;
    this._dropWatches();
    this._session.close();
  }

  protected override async _call(op: StoreOpName, args: readonly unknown[]): Promise<unknown> {
    if (this._closed) throw pvError('PV_ERR_DISCONNECTED', 'store client is closed');
    return this._session.handle(op, args);
  }

  protected override _ack(watchId: number): void {
    this._session.ack(watchId);
  }
}
