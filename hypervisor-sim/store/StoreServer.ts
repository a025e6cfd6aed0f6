/**
 * The host side of the store connection: one `MessagePort` per domain, one `StoreSession` per
 * port. The server, not the guest, decides which domain a request comes from (the port it
 * arrived on), so a guest cannot claim another domain id; nothing in a message names one.
 *
 * A message that is not a well-formed request is dropped (there is no id to answer); a request
 * with bad arguments is answered with `PV_ERR_STORE_INVALID`. Nothing a guest sends can throw
 * out of the message handler.
 */

import type { MessagePort } from 'node:worker_threads';
import { pvError, toWireError } from '../../protocol/errors.js';
import { DOM0, type DomId } from '../../protocol/Types.js';
import { isStoreRequest, isStoreWatchAck, type StoreResponse, type StoreWatchEvent } from './StoreMessages.js';
import { StoreSession, type WatchDeliveryLimits } from './StoreSession.js';
import type { XenStore } from './XenStore.js';

/** Options of a server. */
export interface StoreServerOptions {
  /** Per-watch bounds on undelivered events (XSA-349). */
  readonly delivery?: Partial<WatchDeliveryLimits>;
  /**
   * Called after the server posted anything (a response or a watch event) to `domid`'s port.
   * The host uses it to kick the domain's wake word: a domain thread sleeping in
   * `Atomics.wait` does not see a message until it returns to its event loop.
   */
  readonly onPost?: (domid: DomId) => void;
}

interface Attachment {
  readonly port: MessagePort;
  readonly session: StoreSession;
  readonly onMessage: (msg: unknown) => void;
  readonly onClose: () => void;
}

/** Serves the store to domains, one `MessagePort` and one `StoreSession` each. */
export class StoreServer {
  private readonly _attached = new Map<DomId, Attachment>();
  /** Messages dropped because they were not requests (for tests and diagnostics). */
  droppedMessages = 0;

  constructor(
    readonly store: XenStore,
    private readonly _opts: StoreServerOptions = {},
  ) {}

  /** Serves `domid` on `port`; the domain must have been introduced to the store. */
  attach(domid: DomId, port: MessagePort): void {
    if (!this.store.hasDomain(domid) && domid !== DOM0) {
      throw pvError('PV_ERR_NO_DOMAIN', `domain ${domid} is not in the store`);
    }
    if (this._attached.has(domid)) throw pvError('PV_ERR_INVALID_ARG', `domain ${domid} is already attached`);
    const sink = (watchId: number, path: string): void => {
      port.postMessage({ watchId, path } satisfies StoreWatchEvent);
      this._opts.onPost?.(domid);
    };
    const session = new StoreSession(this.store, domid, sink, this._opts.delivery);
    const onMessage = (msg: unknown): void => this._onMessage(domid, session, port, msg);
    // The domain closed its end (or its worker exited): release what it held.
    const onClose = (): void => {
      if (this._attached.get(domid)?.port === port) this.detach(domid);
    };
    this._attached.set(domid, { port, session, onMessage, onClose });
    port.on('message', onMessage);
    port.on('close', onClose);
  }

  /** Stops serving a domain: drops its watches and transactions and closes the port. Idempotent. */
  detach(domid: DomId): void {
    const a = this._attached.get(domid);
    if (a === undefined) return;
    this._attached.delete(domid);
    a.session.close();
    a.port.off('message', a.onMessage);
    a.port.off('close', a.onClose);
    a.port.close();
  }

  /** True while a port serves `domid`. */
  isAttached(domid: DomId): boolean {
    return this._attached.has(domid);
  }

  /** Detaches every domain. */
  close(): void {
    for (const domid of [...this._attached.keys()]) this.detach(domid);
  }

  private _onMessage(domid: DomId, session: StoreSession, port: MessagePort, msg: unknown): void {
    if (isStoreWatchAck(msg)) {
      session.ack(msg.ack);
      return;
    }
    if (!isStoreRequest(msg)) {
      this.droppedMessages++;
      return;
    }
    let response: StoreResponse;
    try {
      response = { id: msg.id, ok: true, value: session.handle(msg.op, msg.args) };
    } catch (err) {
      response = { id: msg.id, ok: false, error: toWireError(err) };
    }
    port.postMessage(response);
    this._opts.onPost?.(domid);
  }
}
