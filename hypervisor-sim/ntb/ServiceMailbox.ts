/**
 * The lender's main thread → its NTB service worker: one MMIO access to the lent BAR at a time.
 * The reverse of link/Mailbox.ts: here the CALLER is the main thread (async: it must keep serving
 * the sockets and the worker's DMA mailbox while it waits, so it never blocks) and the SERVER is
 * the worker (sync: it runs the controller inline and has nothing else to do, so it sleeps in
 * `Atomics.wait` between accesses).
 *
 * Layout (one SharedArrayBuffer of SERVICE_MAILBOX_BYTES; Int32 words, then the error text):
 * ```
 * word  byte  field    writer  note
 * 0     0     STATE    both    IDLE 0 → REQUEST 1 (caller) → DONE 2 (server) → IDLE (caller)
 * 1     4     SEQ      caller  call number, so a stale answer is never taken for the current call
 * 2     8     OP       caller  ServiceOp
 * 3     12    BAR      caller  BAR index
 * 4     16    OFFSET   caller  byte offset in the BAR
 * 5     20    VALUE    both    WRITE: the value in; READ: the register out
 * 6     24    STATUS   server  0, or the negative catalogue status of the error
 * 7     28    ANS_SEQ  server  SEQ of the call the answer belongs to
 * 8     32    MSG_LEN  server  STATUS ≠ 0: bytes of UTF-8 error text at MSG
 * -     64    MSG      server  error text, at most SERVICE_MSG_MAX bytes
 * ```
 * Codes cross threads, classes do not: an error answer is a status plus its text, rebuilt into
 * the typed error in the caller.
 */

import { codeFromStatus, errorFromCode, pvError, statusFromError } from '../../protocol/errors.js';
import { waitAsync } from '../../protocol/wait.js';

/** Word indices (the table above). */
export const enum ServiceWord {
  STATE = 0,
  SEQ = 1,
  OP = 2,
  BAR = 3,
  OFFSET = 4,
  VALUE = 5,
  STATUS = 6,
  ANS_SEQ = 7,
  MSG_LEN = 8,
}

export const enum ServiceState {
  IDLE = 0,
  REQUEST = 1,
  DONE = 2,
}

/** What the caller asks. */
export const enum ServiceOp {
  READ = 1,
  WRITE = 2,
  /** Reset the controller and leave the service loop. */
  STOP = 3,
}

/** Byte offset of the error text. */
export const SERVICE_MSG_OFFSET = 64;
/** Longest error text carried. */
export const SERVICE_MSG_MAX = 448;
/** Size of the buffer. */
export const SERVICE_MAILBOX_BYTES = SERVICE_MSG_OFFSET + SERVICE_MSG_MAX;

/** A new, idle service mailbox. */
export function createServiceMailbox(): SharedArrayBuffer {
  return new SharedArrayBuffer(SERVICE_MAILBOX_BYTES);
}

function words(sab: SharedArrayBuffer): Int32Array {
  if (sab.byteLength !== SERVICE_MAILBOX_BYTES) throw pvError('PV_ERR_CONFIG', 'not a service mailbox buffer');
  return new Int32Array(sab, 0, SERVICE_MSG_OFFSET / 4);
}

/** Main-thread side: one call in flight; later calls queue behind it. */
export class ServiceCaller {
  private readonly _w: Int32Array;
  private readonly _msg: Uint8Array;
  private _tail: Promise<unknown> = Promise.resolve();
  private _broken: Error | undefined;

  constructor(sab: SharedArrayBuffer) {
    this._w = words(sab);
    this._msg = new Uint8Array(sab, SERVICE_MSG_OFFSET, SERVICE_MSG_MAX);
  }

  /**
   * Asks the worker to do `op` and resolves with VALUE, or rejects with the worker's typed
   * error, or PV_ERR_TIMEOUT after `timeoutMs` — after which the mailbox is broken (the worker
   * may still be inside the call) and every later call rejects at once.
   */
  call(op: ServiceOp, bar: number, offset: number, value: number, timeoutMs: number): Promise<number> {
    const run = this._tail.then(
      () => this._call(op, bar, offset, value, timeoutMs),
      () => this._call(op, bar, offset, value, timeoutMs),
    );
    this._tail = run.catch(() => undefined);
    return run;
  }

  /** Breaks the mailbox: queued and later calls reject with `err` (the caller is shutting down). */
  break(err: Error): void {
    this._broken ??= err;
  }

  /**
   * Sends STOP even on a broken mailbox: waits (bounded) for the worker to answer the access it
   * may still be running, then asks it to reset and leave. Resolves true when it answered STOP.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    const w = this._w;
    const deadline = performance.now() + timeoutMs;
    // ORDERING: seq-cst load; the worker stores DONE when it answers the call in progress.
    while (Atomics.load(w, ServiceWord.STATE) === ServiceState.REQUEST) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      // ORDERING: waitAsync re-checks STATE atomically; the worker notifies after DONE.
      const r = waitAsync(w, ServiceWord.STATE, ServiceState.REQUEST, Math.min(left, 50));
      if (r.async) await r.value;
    }
    this._broken ??= pvError('PV_ERR_LEND_REVOKED', 'NTB service stopped');
    try {
      await this._call(ServiceOp.STOP, 0, 0, 0, Math.max(deadline - performance.now(), 1), true);
      return true;
    } catch {
      return false;
    }
  }

  private async _call(
    op: ServiceOp,
    bar: number,
    offset: number,
    value: number,
    timeoutMs: number,
    force = false,
  ): Promise<number> {
    if (this._broken && !force) throw this._broken;
    const w = this._w;
    const seq = (w[ServiceWord.SEQ] + 1) | 0;
    w[ServiceWord.SEQ] = seq;
    w[ServiceWord.OP] = op;
    w[ServiceWord.BAR] = bar;
    w[ServiceWord.OFFSET] = offset;
    w[ServiceWord.VALUE] = value;
    // ORDERING: the seq-cst store publishes the plain writes above to the worker, whose
    // Atomics.wait on STATE returns after it; notify after the store.
    Atomics.store(w, ServiceWord.STATE, ServiceState.REQUEST);
    Atomics.notify(w, ServiceWord.STATE);
    const deadline = performance.now() + timeoutMs;
    // ORDERING: seq-cst load pairs with the worker's store of DONE after its results.
    while (Atomics.load(w, ServiceWord.STATE) !== ServiceState.DONE || w[ServiceWord.ANS_SEQ] !== seq) {
      const left = deadline - performance.now();
      if (left <= 0) {
        const err = pvError('PV_ERR_TIMEOUT', `NTB service worker did not answer op ${op} within ${timeoutMs} ms`);
        this._broken ??= err;
        throw err;
      }
      if (this._broken && !force) throw this._broken;
      // ORDERING: waitAsync re-checks STATE atomically; the worker notifies after storing DONE.
      // Sliced so a break() is noticed without an answer.
      const r = waitAsync(w, ServiceWord.STATE, ServiceState.REQUEST, Math.min(left, 50));
      if (r.async) await r.value;
    }
    const status = w[ServiceWord.STATUS];
    const result = w[ServiceWord.VALUE];
    const msgLen = Math.min(Math.max(w[ServiceWord.MSG_LEN], 0), SERVICE_MSG_MAX);
    const text = status !== 0 ? new TextDecoder().decode(this._msg.slice(0, msgLen)) : '';
    // ORDERING: results were read after the seq-cst load of DONE; hand the slot back.
    Atomics.store(w, ServiceWord.STATE, ServiceState.IDLE);
    if (status !== 0) throw errorFromCode(codeFromStatus(status) ?? 'PV_ERR_BAD_REQUEST', text);
    return result;
  }
}

/** One access as the worker sees it. */
export interface ServiceCall {
  readonly op: ServiceOp;
  readonly bar: number;
  readonly offset: number;
  readonly value: number;
}

/** Worker side: takes one call, then answers it (`answer` or `fail`). */
export class ServiceServer {
  private readonly _w: Int32Array;
  private readonly _msg: Uint8Array;

  constructor(sab: SharedArrayBuffer) {
    this._w = words(sab);
    this._msg = new Uint8Array(sab, SERVICE_MSG_OFFSET, SERVICE_MSG_MAX);
  }

  /** Blocks up to `waitMs` for a call; undefined when none came (the caller re-checks its state). */
  next(waitMs: number): ServiceCall | undefined {
    const w = this._w;
    // ORDERING: seq-cst load pairs with the caller's store of REQUEST after its fields.
    if (Atomics.load(w, ServiceWord.STATE) !== ServiceState.REQUEST) {
      // ORDERING: wait re-checks STATE atomically; the caller notifies after storing REQUEST.
      Atomics.wait(w, ServiceWord.STATE, Atomics.load(w, ServiceWord.STATE), waitMs);
      if (Atomics.load(w, ServiceWord.STATE) !== ServiceState.REQUEST) return undefined;
    }
    return {
      op: w[ServiceWord.OP],
      bar: w[ServiceWord.BAR],
      offset: w[ServiceWord.OFFSET],
      value: w[ServiceWord.VALUE],
    };
  }

  /** Answers the call taken by `next` with `value`. */
  answer(value: number): void {
    this._w[ServiceWord.VALUE] = value | 0;
    this._done(0);
  }

  /** Answers the call taken by `next` with an error (its code if it has one). */
  fail(err: unknown): void {
    const status = statusFromError(err);
    const text = new TextEncoder().encode(String((err as Error)?.message ?? err)).subarray(0, SERVICE_MSG_MAX);
    this._msg.set(text);
    this._w[ServiceWord.MSG_LEN] = text.length;
    this._done(status);
  }

  private _done(status: number): void {
    const w = this._w;
    w[ServiceWord.STATUS] = status;
    w[ServiceWord.ANS_SEQ] = w[ServiceWord.SEQ];
    // ORDERING: the seq-cst store of DONE publishes VALUE, STATUS, ANS_SEQ and the text.
    Atomics.store(w, ServiceWord.STATE, ServiceState.DONE);
    Atomics.notify(w, ServiceWord.STATE);
  }
}
