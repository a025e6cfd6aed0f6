/**
 * A synchronous call from a simulated hardware thread (a domain worker running a NIC's requester
 * inline, the lender's NTB service thread running a device) to its host process's main thread,
 * which owns the host links (TCP sockets live in the main event loop). The worker blocks in
 * `Atomics.wait` — as a CPU stalls on a non-posted PCIe read — while the main thread does the
 * network round trip and answers. One mailbox per calling thread; calls on it are serial.
 *
 * Layout (one SharedArrayBuffer; Int32 words, then the data area):
 * ```
 * word  byte   field     writer   note
 * 0     0      STATE     both     IDLE 0 → REQUEST 1 (client) → BUSY 3 (server took it) → DONE 2 (server)
 *                                  → IDLE (client); a client that times out moves REQUEST → IDLE or
 *                                  BUSY → ABANDONED 4, and the server then ends at IDLE, not DONE
 * 1     4      OP        client   operation number (the server's handler interprets it)
 * 2     8      OUT_LEN   client   request bytes at the start of the data area
 * 3     12     IN_LEN    server   response bytes at the start of the data area
 * 4     16     STATUS    server   0, or the negative catalogue status of the error
 * 5     20     SEQ       client   call number, so a late answer to a timed-out call is ignored
 * 6     24     ANS_SEQ   server   SEQ of the call the answer belongs to
 * 7     28     MSG_LEN   server   STATUS ≠ 0: bytes of the UTF-8 error message in the data area
 * 8-31  32     ARGS      both     24 i32 arguments in, results out
 * -     128    DATA      both     request data in, response data (or error text) out
 * ```
 * Codes cross threads, classes do not: an error answer is a catalogue status plus its message,
 * rebuilt into the typed error in the caller.
 */

import { codeFromStatus, errorFromCode, pvError, statusFromError } from '../../protocol/errors.js';
import { waitAsync } from '../../protocol/wait.js';

/** Word indices of the mailbox (the table above). */
export const enum MailboxWord {
  STATE = 0,
  OP = 1,
  OUT_LEN = 2,
  IN_LEN = 3,
  STATUS = 4,
  SEQ = 5,
  ANS_SEQ = 6,
  MSG_LEN = 7,
  ARGS = 8,
  ARG_COUNT = 24,
}

export const enum MailboxState {
  IDLE = 0,
  REQUEST = 1,
  DONE = 2,
  BUSY = 3,
  ABANDONED = 4,
}

/** Byte offset of the data area. */
export const MAILBOX_DATA_OFFSET = 128;
/** Default data area: room for the largest link message bulk (LinkFrame.MAX_MESSAGE_BULK). */
export const DEFAULT_MAILBOX_DATA = 16 * 1024 * 1024;

/** A new mailbox with `dataBytes` of data area (committed lazily by the OS). */
export function createMailbox(dataBytes = DEFAULT_MAILBOX_DATA): SharedArrayBuffer {
  if (!Number.isSafeInteger(dataBytes) || dataBytes < 256) {
    throw pvError('PV_ERR_CONFIG', `mailbox data area must be ≥ 256 bytes, got ${dataBytes}`);
  }
  return new SharedArrayBuffer(MAILBOX_DATA_OFFSET + dataBytes);
}

function views(sab: SharedArrayBuffer): { words: Int32Array; args: Int32Array; data: Uint8Array } {
  if (sab.byteLength < MAILBOX_DATA_OFFSET + 256) throw pvError('PV_ERR_CONFIG', 'not a mailbox buffer');
  return {
    words: new Int32Array(sab, 0, MAILBOX_DATA_OFFSET / 4),
    args: new Int32Array(sab, MailboxWord.ARGS * 4, MailboxWord.ARG_COUNT),
    data: new Uint8Array(sab, MAILBOX_DATA_OFFSET),
  };
}

/** The calling (worker) side. */
export class MailboxClient {
  /** Arguments: fill before `call`; results after it. */
  readonly args: Int32Array;
  /** Request data before `call`; response data (first `call()` bytes) after it. */
  readonly data: Uint8Array;
  private readonly _w: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    const v = views(sab);
    this._w = v.words;
    this.args = v.args;
    this.data = v.data;
  }

  /**
   * Posts call `op` with `outLen` request bytes and blocks until the main thread answers or
   * `timeoutMs` passes (PV_ERR_TIMEOUT). Returns the response length; an error answer is thrown
   * as its typed error.
   */
  call(op: number, outLen: number, timeoutMs: number): number {
    const w = this._w;
    if (!(outLen >= 0 && outLen <= this.data.length)) {
      throw pvError('PV_ERR_BAD_LENGTH', `mailbox request of ${outLen} bytes exceeds ${this.data.length}`);
    }
    // ORDERING: seq-cst load; only an IDLE slot is ours (a timed-out call's handler may still run).
    if (Atomics.load(w, MailboxWord.STATE) !== MailboxState.IDLE) {
      throw pvError('PV_ERR_TIMEOUT', 'the previous call on this mailbox timed out and is still being answered');
    }
    const seq = (w[MailboxWord.SEQ] + 1) | 0;
    w[MailboxWord.SEQ] = seq;
    w[MailboxWord.OP] = op;
    w[MailboxWord.OUT_LEN] = outLen;
    // ORDERING: the seq-cst store publishes OP, args and data (plain writes above) to the server,
    // whose waitAsync wakes on this word; notify after it.
    Atomics.store(w, MailboxWord.STATE, MailboxState.REQUEST);
    Atomics.notify(w, MailboxWord.STATE);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // ORDERING: seq-cst load pairs with the server's store of DONE after its results.
      const st = Atomics.load(w, MailboxWord.STATE);
      if (st === MailboxState.DONE && w[MailboxWord.ANS_SEQ] === seq) break;
      const left = deadline - performance.now();
      if (left <= 0) {
        // ORDERING: CAS — not taken yet: the slot is free again; taken: the server's handler
        // still runs, so the slot stays the server's (ABANDONED) until it ends at IDLE.
        const taken = Atomics.compareExchange(w, MailboxWord.STATE, MailboxState.BUSY, MailboxState.ABANDONED);
        const free = Atomics.compareExchange(w, MailboxWord.STATE, MailboxState.REQUEST, MailboxState.IDLE);
        if (taken === MailboxState.BUSY || free === MailboxState.REQUEST) {
          throw pvError('PV_ERR_TIMEOUT', `host link call ${op} got no answer within ${timeoutMs} ms`);
        }
        continue;
      }
      // ORDERING: wait re-checks STATE atomically; the server notifies after each change.
      Atomics.wait(w, MailboxWord.STATE, st, Math.min(left, 1000));
    }
    const status = w[MailboxWord.STATUS];
    const inLen = w[MailboxWord.IN_LEN];
    // ORDERING: results were read after the seq-cst load of DONE; hand the slot back.
    Atomics.store(w, MailboxWord.STATE, MailboxState.IDLE);
    if (status !== 0) {
      const msgLen = Math.min(Math.max(w[MailboxWord.MSG_LEN], 0), 4096, this.data.length);
      const message = new TextDecoder().decode(this.data.slice(0, msgLen));
      throw errorFromCode(codeFromStatus(status) ?? 'PV_ERR_BAD_REQUEST', message);
    }
    return inLen;
  }

  /**
   * True when a call may be made: no earlier call's handler is still running. Check before
   * writing request data into `data`/`args` after a timeout, so a late handler's input is not
   * changed under it.
   */
  idle(): boolean {
    // ORDERING: seq-cst load of the slot state.
    return Atomics.load(this._w, MailboxWord.STATE) === MailboxState.IDLE;
  }
}

/** One call as the server's handler sees it. */
export interface MailboxCall {
  readonly op: number;
  readonly outLen: number;
  /** In: arguments; out: results. */
  readonly args: Int32Array;
  /** In: request data; out: response data. */
  readonly data: Uint8Array;
}

/** Handles a call; returns the response length, or throws a pvio error to answer with. */
export type MailboxHandler = (call: MailboxCall) => Promise<number>;

/** The answering (main thread) side: serves one mailbox until `stop`. */
export class MailboxServer {
  private readonly _w: Int32Array;
  private readonly _call: MailboxCall;
  private _running = false;
  private _loop: Promise<void> | undefined;

  constructor(
    sab: SharedArrayBuffer,
    private readonly _handler: MailboxHandler,
  ) {
    const v = views(sab);
    this._w = v.words;
    this._call = { op: 0, outLen: 0, args: v.args, data: v.data };
  }

  /** Starts serving (idempotent). */
  start(): void {
    if (this._running) return;
    this._running = true;
    this._loop = this._serve();
  }

  /** Stops after the call in progress (if any) is answered. */
  async stop(): Promise<void> {
    this._running = false;
    // ORDERING: wakes the waitAsync below so the loop sees _running false.
    Atomics.notify(this._w, MailboxWord.STATE);
    await this._loop;
  }

  private async _serve(): Promise<void> {
    const w = this._w;
    while (this._running) {
      // ORDERING: seq-cst load pairs with the client's store of REQUEST after its arguments.
      const st = Atomics.load(w, MailboxWord.STATE);
      if (st !== MailboxState.REQUEST) {
        // A ref'd timer keeps the process alive while it serves (waitAsync alone does not).
        const r = waitAsync(w, MailboxWord.STATE, st, 1000);
        if (r.async) await r.value;
        continue;
      }
      // ORDERING: take the call (REQUEST → BUSY) so a client timeout cannot free the slot while
      // the handler still reads and writes it.
      if (
        Atomics.compareExchange(w, MailboxWord.STATE, MailboxState.REQUEST, MailboxState.BUSY) !== MailboxState.REQUEST
      ) {
        continue;
      }
      const seq = w[MailboxWord.SEQ];
      const call = this._call as { op: number; outLen: number };
      call.op = w[MailboxWord.OP];
      call.outLen = w[MailboxWord.OUT_LEN];
      let status = 0;
      let len = 0;
      try {
        len = await this._handler(this._call);
      } catch (err) {
        status = statusFromError(err);
        const text = new TextEncoder().encode(String((err as Error).message ?? err)).subarray(0, 4096);
        this._call.data.set(text.subarray(0, Math.min(text.length, this._call.data.length)));
        w[MailboxWord.MSG_LEN] = text.length;
      }
      w[MailboxWord.STATUS] = status;
      w[MailboxWord.IN_LEN] = len;
      w[MailboxWord.ANS_SEQ] = seq;
      // ORDERING: answer (BUSY → DONE) unless the client gave up meanwhile (ABANDONED → IDLE:
      // the slot is free for its next call); notify either way.
      if (Atomics.compareExchange(w, MailboxWord.STATE, MailboxState.BUSY, MailboxState.DONE) !== MailboxState.BUSY) {
        Atomics.store(w, MailboxWord.STATE, MailboxState.IDLE);
      }
      Atomics.notify(w, MailboxWord.STATE);
    }
  }
}
