/**
 * The requests one host link (LinkConn.ts) has in flight: their ids, their timers, and the
 * answers that settle them.
 *
 * Ids are u32 and never 0 (notices carry 0). A fresh id is never one still pending or one that
 * timed out recently, so an answer that comes after its request timed out is recognized and
 * dropped (for the last EXPIRED_IDS_KEPT such ids). An answer to any other unknown id, or of
 * another type than its request, breaks the protocol: `answer` throws PV_ERR_LINK_FRAME and the
 * link closes.
 */

import { type ErrorCode, errorFromCode, isErrorCode, pvError } from '../../protocol/errors.js';
import type { LinkType } from '../../protocol/link/LinkSchema.js';
import type { ReadMessage } from './LinkReader.js';

/** Answers to timed-out requests that are still recognized (and dropped) when they come late. */
const EXPIRED_IDS_KEPT = 4096;

/** One request awaiting its answer. */
export interface Pending {
  type: LinkType;
  resolve(body: unknown, bulk: Uint8Array | undefined): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export class LinkPending {
  private readonly _pending = new Map<number, Pending>();
  private readonly _expired = new Set<number>();
  private _id = 0;

  /** `label` names the peer in the error of an error answer that has no message. */
  constructor(private readonly _label: () => string) {}

  /** Registers `p` under a fresh id; returns the id. */
  add(p: Pending): number {
    const id = this._nextId();
    this._pending.set(id, p);
    return id;
  }

  /** Settles pending request `id` once (answer, error, timeout or link down). */
  settle(id: number, ok: { body: unknown; bulk: Uint8Array | undefined } | undefined, err?: Error): void {
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    clearTimeout(p.timer);
    if (ok) p.resolve(ok.body, ok.bulk);
    else p.reject(err as Error);
  }

  /** Remembers timed-out request `id`, so that its late answer is dropped instead of refused. */
  expire(id: number): void {
    this._expired.add(id);
    if (this._expired.size > EXPIRED_IDS_KEPT) this._expired.delete(this._expired.values().next().value as number);
  }

  /** Settles the request a RESPONSE answers (PV_ERR_LINK_FRAME: it answers none of ours). */
  answer({ msg, bulk }: ReadMessage): void {
    const p = this._pending.get(msg.id);
    if (!p) {
      // A late answer to a request that timed out is dropped; any other unknown id breaks the protocol.
      if (this._expired.delete(msg.id)) return;
      throw pvError('PV_ERR_LINK_FRAME', `response to unknown request id ${msg.id}`);
    }
    if (p.type !== msg.type) throw pvError('PV_ERR_LINK_FRAME', `${msg.type} response to ${p.type} request ${msg.id}`);
    if (msg.errorCode !== '') {
      const code: ErrorCode = isErrorCode(msg.errorCode) ? msg.errorCode : 'PV_ERR_BAD_REQUEST';
      this.settle(msg.id, undefined, errorFromCode(code, msg.errorMessage || `${msg.errorCode} from ${this._label()}`));
    } else {
      this.settle(msg.id, { body: msg.body, bulk });
    }
  }

  /** Fails every request in flight with `err` (the link is down). */
  failAll(err: Error): void {
    for (const id of [...this._pending.keys()]) this.settle(id, undefined, err);
  }

  private _nextId(): number {
    do this._id = (this._id + 1) >>> 0;
    while (this._id === 0 || this._pending.has(this._id) || this._expired.has(this._id));
    return this._id;
  }
}
