/**
 * The requests a borrower has in flight on a lent device, each with the callback that fails it.
 *
 * Device Lending may take a device away while requests are in flight (a forced return). The rule
 * is "never a hang, never silent loss": every request begun and not yet ended is failed, at once,
 * through its own callback, with PV_ERR_LEND_REVOKED; a completion that arrives after that is
 * dropped (`end` returns false, so the caller knows the request was already failed). After the
 * tracker is closed, `begin` throws the same error: no new request can start.
 */

import { type PvError, pvError } from '../../protocol/errors.js';

/** Identifies one outstanding request (from `begin`). */
export type RequestTicket = number;

/** Fails one request; receives the PV_ERR_LEND_REVOKED error. */
export type FailRequest = (err: PvError) => void;

/** The outstanding-request tracker (see the file comment). */
export class Outstanding {
  private readonly _pending = new Map<RequestTicket, FailRequest>();
  private _next = 1;
  private _closed: PvError | undefined;
  /** Called with the new count after every change (usage reporting). */
  private readonly _onChange: ((outstanding: number) => void) | undefined;

  constructor(onChange?: (outstanding: number) => void) {
    this._onChange = onChange;
  }

  /** Requests begun and neither ended nor failed. */
  get count(): number {
    return this._pending.size;
  }

  /** The error every request gets once the tracker is closed (undefined while open). */
  get closedWith(): PvError | undefined {
    return this._closed;
  }

  /** Starts tracking a request; throws the closing error once closed. */
  begin(onFail: FailRequest): RequestTicket {
    if (this._closed !== undefined) throw this._fresh();
    if (typeof onFail !== 'function') throw pvError('PV_ERR_INVALID_ARG', 'begin needs a failure callback');
    const ticket = this._next++;
    this._pending.set(ticket, onFail);
    this._onChange?.(this._pending.size);
    return ticket;
  }

  /**
   * The request completed. True if it was still outstanding; false if it had been failed by
   * `close` (its late result must be discarded). An unknown ticket is the caller's bug.
   */
  end(ticket: RequestTicket): boolean {
    if (this._pending.delete(ticket)) {
      this._onChange?.(this._pending.size);
      return true;
    }
    if (this._closed !== undefined && Number.isInteger(ticket) && ticket > 0 && ticket < this._next) return false;
    throw pvError('PV_ERR_INVALID_ARG', `request ticket ${String(ticket)} is not outstanding`);
  }

  /**
   * Closes the tracker with `err` and fails every outstanding request through its callback, in
   * the order they began. Every callback runs even if one throws; the first throw is rethrown
   * after all of them. Returns how many requests were failed. Closing twice does nothing more.
   */
  close(err: PvError): number {
    if (this._closed !== undefined) return 0;
    this._closed = err;
    const failing = [...this._pending.values()];
    this._pending.clear();
    let thrown: { err: unknown } | undefined;
    for (const fail of failing) {
      try {
        // A fresh error per request: callers may annotate or rethrow it independently.
        fail(this._fresh());
      } catch (e) {
        thrown ??= { err: e };
      }
    }
    if (failing.length > 0) this._onChange?.(0);
    if (thrown !== undefined) throw thrown.err;
    return failing.length;
  }

  private _fresh(): PvError {
    const c = this._closed as PvError;
    return pvError(c.code, c.message);
  }
}
