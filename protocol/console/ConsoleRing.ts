/**
 * A domain's console page: Xen's `struct xencons_interface` (xen/include/public/io/console.h)
 * followed by pvio's own words. The guest writes its console output into `out`; the host reads it
 * (xenconsoled's role) and feeds a terminal. `in` (host → guest keyboard input) is laid out but
 * not used yet.
 *
 * ```
 * offset  size  field       writer  reader  note
 * 0       1024  in          host    guest   bytes, MASK_XENCONS_IDX(idx, in) = idx & 1023
 * 1024    2048  out         guest   host    bytes, MASK_XENCONS_IDX(idx, out) = idx & 2047
 * 3072    4     in_cons     guest   host    free-running u32
 * 3076    4     in_prod     host    guest   free-running u32
 * 3080    4     out_cons    host    guest   free-running u32, published with Atomics.store
 * 3084    4     out_prod    guest   host    free-running u32, published with Atomics.store
 * 3088    4     out_dropped guest   host    pvio: bytes the guest dropped on a full ring (u32, wraps)
 * 3092    4     out_stalls  guest   host    pvio: writes that found the ring full and waited
 * 3096    1000  (unused)                    zero; the page is 4096 bytes as in Xen
 * ```
 * Full/empty: `(out_prod − out_cons) >>> 0` bytes are unread; 0 is empty, 2048 is full. A value
 * above 2048 is a broken ring (a guest that corrupts its own indices): the reader refuses it, as
 * xenconsoled does (`prod - cons > sizeof(intf->out)` → the domain's console is dropped).
 *
 * Blocking policy: a guest must never block forever on its console and never corrupt it. On a
 * full ring the writer spins, then sleeps in short `Atomics.wait`s on `out_cons` for at most
 * `waitMs` in all; then it drops the rest of that write and counts the bytes in `out_dropped`.
 * Once it has dropped, it does not wait again until the reader has moved `out_cons` (a host that
 * is not reading costs the guest one bounded wait, not one per line).
 */

import { pvError } from '../errors.js';

/** Byte offsets of the console page fields. */
export const enum ConsoleOffset {
  IN = 0,
  OUT = 1024,
  IN_CONS = 3072,
  IN_PROD = 3076,
  OUT_CONS = 3080,
  OUT_PROD = 3084,
  OUT_DROPPED = 3088,
  OUT_STALLS = 3092,
}

/** Int32 word indices of the index fields (byte offset / 4), for `Atomics`. */
export const enum ConsoleWord {
  IN_CONS = 768,
  IN_PROD = 769,
  OUT_CONS = 770,
  OUT_PROD = 771,
  OUT_DROPPED = 772,
  OUT_STALLS = 773,
}

/** `sizeof(intf->in)`. */
export const CONSOLE_IN_SIZE = 1024;
/** `sizeof(intf->out)`. */
export const CONSOLE_OUT_SIZE = 2048;
/** One page per domain, as Xen's console page. */
export const CONSOLE_PAGE_BYTES = 4096;

/** `MASK_XENCONS_IDX(idx, out)`: the byte offset inside `out` of a free-running index. */
export function maskOut(idx: number): number {
  return idx & (CONSOLE_OUT_SIZE - 1);
}

/** The Int32 view over a console page (a whole SharedArrayBuffer of CONSOLE_PAGE_BYTES). */
function pageWords(page: SharedArrayBuffer): Int32Array {
  if (page.byteLength !== CONSOLE_PAGE_BYTES) {
    throw pvError('PV_ERR_RING_LAYOUT', `a console page is ${CONSOLE_PAGE_BYTES} bytes, got ${page.byteLength}`);
  }
  return new Int32Array(page);
}

/**
 * Sets every index to `start` (0 on a fresh page; tests start near 2^32 to cross the wrap).
 * Only before either side runs.
 */
export function initConsolePage(page: SharedArrayBuffer, start = 0): void {
  const words = pageWords(page);
  for (const w of [ConsoleWord.IN_CONS, ConsoleWord.IN_PROD, ConsoleWord.OUT_CONS, ConsoleWord.OUT_PROD]) {
    // ORDERING: before any reader or writer exists; seq-cst stores keep it simple.
    Atomics.store(words, w, start | 0);
  }
}

/** Tuning of the guest's writer. */
export interface ConsoleWriterOptions {
  /** Polls of `out_cons` before sleeping when the ring is full (default 1000). */
  readonly spinBudget?: number;
  /** Longest a write waits in all for the reader before dropping (ms, default 100). */
  readonly waitMs?: number;
  /** Longest single `Atomics.wait` inside that budget (ms, default 5). */
  readonly sliceMs?: number;
}

/** The guest's side: the only writer of `out` and `out_prod`. */
export class ConsoleWriter {
  private readonly _words: Int32Array;
  private readonly _out: Uint8Array;
  private readonly _spin: number;
  private readonly _waitMs: number;
  private readonly _sliceMs: number;
  /** `out_cons` when we last dropped: no waiting again until the reader moves past it. */
  private _droppedAtCons: number | undefined;

  constructor(page: SharedArrayBuffer, opts: ConsoleWriterOptions = {}) {
    this._words = pageWords(page);
    this._out = new Uint8Array(page, ConsoleOffset.OUT, CONSOLE_OUT_SIZE);
    this._spin = opts.spinBudget ?? 1000;
    this._waitMs = opts.waitMs ?? 100;
    this._sliceMs = opts.sliceMs ?? 5;
  }

  /** Bytes dropped so far (u32, wraps). */
  get dropped(): number {
    // ORDERING: only this thread writes it; a load is enough.
    return Atomics.load(this._words, ConsoleWord.OUT_DROPPED) >>> 0;
  }

  /**
   * Writes `bytes` (UTF-8) to the ring; returns how many were written (the rest were dropped and
   * counted). Never blocks longer than `waitMs`.
   */
  write(bytes: Uint8Array): number {
    const words = this._words;
    let done = 0;
    let deadline: number | undefined;
    while (done < bytes.length) {
      // ORDERING: we are the only writer of out_prod; the load returns our own last store.
      const prod = Atomics.load(words, ConsoleWord.OUT_PROD);
      // ORDERING: seq-cst load pairs with the reader's Atomics.store of out_cons after it copied
      // the bytes out, so the space it frees is really free.
      const cons = Atomics.load(words, ConsoleWord.OUT_CONS);
      const free = CONSOLE_OUT_SIZE - ((prod - cons) >>> 0);
      if (free > 0) {
        const n = Math.min(free, bytes.length - done);
        for (let i = 0; i < n; i++) this._out[maskOut(prod + i)] = bytes[done + i];
        done += n;
        this._droppedAtCons = undefined;
        // ORDERING: plain stores of the bytes above happen-before this seq-cst store; a reader
        // that loads the new out_prod sees them.
        Atomics.store(words, ConsoleWord.OUT_PROD, (prod + n) | 0);
        // ORDERING: after the store, so a host parked in Atomics.waitAsync on out_prod wakes.
        Atomics.notify(words, ConsoleWord.OUT_PROD);
        continue;
      }
      // Full. Still stuck where we dropped last time: the reader is not reading, drop at once.
      if (this._droppedAtCons === cons) break;
      if (deadline === undefined) {
        deadline = Date.now() + this._waitMs;
        // ORDERING: a statistics counter; only this thread writes it.
        Atomics.add(words, ConsoleWord.OUT_STALLS, 1);
      }
      if (!this._waitForSpace(cons, deadline)) {
        this._droppedAtCons = cons;
        break;
      }
    }
    const lost = bytes.length - done;
    // ORDERING: statistics; the host reads it with Atomics.load whenever it likes.
    if (lost > 0) Atomics.add(words, ConsoleWord.OUT_DROPPED, lost);
    return done;
  }

  /** Spins, then sleeps in slices, until out_cons leaves `cons` or the deadline passes. */
  private _waitForSpace(cons: number, deadline: number): boolean {
    const words = this._words;
    for (let i = 0; i < this._spin; i++) {
      // ORDERING: seq-cst load pairs with the reader's store of out_cons.
      if (Atomics.load(words, ConsoleWord.OUT_CONS) !== cons) return true;
    }
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return Atomics.load(words, ConsoleWord.OUT_CONS) !== cons;
      // ORDERING: Atomics.wait re-checks out_cons atomically before sleeping; the reader
      // notifies out_cons after its store, so a store after our last poll is not lost.
      if (Atomics.wait(words, ConsoleWord.OUT_CONS, cons, Math.min(left, this._sliceMs)) !== 'timed-out') {
        if (Atomics.load(words, ConsoleWord.OUT_CONS) !== cons) return true;
      }
    }
  }
}

/** The host's side: the only writer of `out_cons`. */
export class ConsoleReader {
  private readonly _words: Int32Array;
  private readonly _out: Uint8Array;

  constructor(page: SharedArrayBuffer) {
    this._words = pageWords(page);
    this._out = new Uint8Array(page, ConsoleOffset.OUT, CONSOLE_OUT_SIZE);
  }

  /** The Int32 view, for `Atomics.waitAsync` on ConsoleWord.OUT_PROD. */
  get words(): Int32Array {
    return this._words;
  }

  /** Bytes the guest dropped on a full ring (u32, wraps). */
  get dropped(): number {
    // ORDERING: statistics written by the guest with Atomics.add.
    return Atomics.load(this._words, ConsoleWord.OUT_DROPPED) >>> 0;
  }

  /** Writes that found the ring full. */
  get stalls(): number {
    // ORDERING: statistics written by the guest with Atomics.add.
    return Atomics.load(this._words, ConsoleWord.OUT_STALLS) >>> 0;
  }

  /**
   * Copies out every unread byte and frees their space; an empty array when there are none.
   * Throws PV_ERR_RING_PROD_OVERFLOW when the guest's out_prod is more than a ring ahead.
   */
  read(): Uint8Array {
    const words = this._words;
    // ORDERING: seq-cst load pairs with the writer's store of out_prod after its byte stores.
    const prod = Atomics.load(words, ConsoleWord.OUT_PROD);
    // ORDERING: we are the only writer of out_cons.
    const cons = Atomics.load(words, ConsoleWord.OUT_CONS);
    const n = (prod - cons) >>> 0;
    if (n === 0) return new Uint8Array(0);
    if (n > CONSOLE_OUT_SIZE) {
      throw pvError('PV_ERR_RING_PROD_OVERFLOW', `console out_prod ${prod >>> 0} is ${n} bytes past out_cons`);
    }
    const bytes = new Uint8Array(n);
    const first = Math.min(n, CONSOLE_OUT_SIZE - maskOut(cons));
    bytes.set(this._out.subarray(maskOut(cons), maskOut(cons) + first), 0);
    if (first < n) bytes.set(this._out.subarray(0, n - first), first);
    // ORDERING: the copy above completes before this store frees the space to the writer.
    Atomics.store(words, ConsoleWord.OUT_CONS, prod);
    // ORDERING: after the store, so a writer sleeping on a full ring wakes.
    Atomics.notify(words, ConsoleWord.OUT_CONS);
    return bytes;
  }
}
