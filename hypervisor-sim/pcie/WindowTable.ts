/**
 * One host's NTB translation-window table, in ONE `SharedArrayBuffer`: lending sets windows up and
 * tears them down at run time (reference §4: the lender maps the borrower's DMA window through its
 * NTB, the borrower maps the device's BARs), possibly from another thread than the one routing a
 * DMA, so a reader must never see a torn window (the base of one and the peer base of another).
 *
 * ```
 * word        byte        size   field         writer                         reader
 * --- header (64 B) ------------------------------------------------------------------------------
 * 0           0           4      MAGIC         create()                       attach
 * 1           4           4      SEQ           writers (odd while one         lookup/list (seqlock),
 *                                              updates; acts as their lock)   writers
 * 2           8           4      GENERATION    writers, on every change       generation()
 * 3           12          4      MAX_WINDOWS   create()                       everyone
 * 4           16          4      LIVE          writers                        diagnostics
 * 5           20          44     pad           zero                           -
 * --- window slot s, at word 16 + s * 8 (32 B each) -------------------------------------------------
 * +0          +0          4      STATE         writers (FREE / LIVE)          lookup
 * +1          +4          4      PORT          writers                        lookup
 * +2,+3       +8          8      BASE lo, hi   writers                        lookup
 * +4,+5       +16         8      SIZE lo, hi   writers                        lookup
 * +6,+7       +24         8      PEER lo, hi   writers                        lookup
 * ```
 * Total = 64 + MAX_WINDOWS * 32 bytes. 64-bit values (< 2^53) are two u32 words (DESIGN §4).
 *
 * Seqlock: a writer CASes SEQ from even to odd (which also excludes other writers), writes the
 * slot, bumps GENERATION and stores SEQ + 1 (even). A reader loads SEQ (retrying while odd), loads
 * the fields, and loads SEQ again: any change means a writer ran in between and the reader retries.
 * Every access is an `Atomics` call, so no field read is torn and all of them are ordered between
 * the two SEQ loads.
 */

import { pvError } from '../../protocol/errors.js';

/** 'NTBW': marks an initialised table, so attaching to a foreign buffer fails loudly. */
export const WINDOW_MAGIC = 0x4e544257;

/** Int32 word indices of the header. */
export const enum WinWord {
  MAGIC = 0,
  SEQ = 1,
  GENERATION = 2,
  MAX_WINDOWS = 3,
  LIVE = 4,
  HEADER = 16,
}

/** Word offsets inside a window slot. */
export const enum SlotWord {
  STATE = 0,
  PORT = 1,
  BASE_LO = 2,
  BASE_HI = 3,
  SIZE_LO = 4,
  SIZE_HI = 5,
  PEER_LO = 6,
  PEER_HI = 7,
  STRIDE = 8,
}

/** Values of a slot's STATE. */
export const enum SlotState {
  FREE = 0,
  LIVE = 1,
}

/** Bytes of a table holding `maxWindows` slots. */
export function windowTableBytes(maxWindows: number): number {
  return (WinWord.HEADER + maxWindows * SlotWord.STRIDE) * 4;
}

/** A live window, as one consistent snapshot. */
export interface WindowEntry {
  readonly slot: number;
  /** Index of the NTB side on this host (PcieCluster's port numbering). */
  readonly port: number;
  readonly base: number;
  readonly size: number;
  readonly peerBase: number;
}

const TWO_32 = 0x1_0000_0000;
/** Polls of SEQ (reader or writer) before sleeping 1 ms per retry. */
const SPINS = 1000;
/** 1 ms sleeps allowed before giving up (a thread terminated mid-update). */
const SLEEPS = 100;
/**
 * Wall time a reader keeps retrying before it gives up. A reader retries both while a writer
 * holds SEQ and when a write completed under it; on 2 busy cores a writer can be descheduled
 * inside its critical section, and back-to-back remaps can keep invalidating a reader, so the
 * bound is time (a writer that died mid-update), not a retry count.
 */
const READ_TIMEOUT_MS = 2000;

/** One host's window table, attached in one thread. */
export class WindowTable {
  /** The shared state; post it to attach another thread. */
  readonly buffer: SharedArrayBuffer;
  readonly maxWindows: number;
  private readonly _w: Int32Array;

  /** A new, empty table. */
  static create(maxWindows: number): WindowTable {
    if (!Number.isSafeInteger(maxWindows) || maxWindows < 1 || maxWindows > 4096) {
      throw pvError('PV_ERR_INVALID_ARG', `window table: maxWindows must be 1 … 4096, got ${maxWindows}`);
    }
    const buf = new SharedArrayBuffer(windowTableBytes(maxWindows));
    const w = new Int32Array(buf);
    w[WinWord.MAX_WINDOWS] = maxWindows;
    // ORDERING: published last; an attach in another thread gets the buffer by postMessage after this.
    Atomics.store(w, WinWord.MAGIC, WINDOW_MAGIC);
    return new WindowTable(buf);
  }

  /** Attaches to a table made by `create` (in any thread). */
  constructor(buffer: SharedArrayBuffer) {
    const w = new Int32Array(buffer);
    // ORDERING: seq-cst load; pairs with create's store.
    if (buffer.byteLength < WinWord.HEADER * 4 || Atomics.load(w, WinWord.MAGIC) !== WINDOW_MAGIC) {
      throw pvError('PV_ERR_INVALID_ARG', 'window table: buffer is not an initialised window table');
    }
    this.buffer = buffer;
    this._w = w;
    this.maxWindows = w[WinWord.MAX_WINDOWS];
    if (buffer.byteLength < windowTableBytes(this.maxWindows)) {
      throw pvError('PV_ERR_INVALID_ARG', 'window table: buffer shorter than its slots');
    }
  }

  /** Bumped on every set and clear: routes resolved before a change may be stale. */
  generation(): number {
    // ORDERING: seq-cst load; read it before resolving anything you intend to cache.
    return Atomics.load(this._w, WinWord.GENERATION);
  }

  /**
   * Installs a window in the lowest free slot and returns the slot. The caller (PcieCluster)
   * has checked that it lies inside the port's aperture; this checks the numbers and that it
   * overlaps no live window (→ PV_ERR_INVALID_ARG), and that a slot is free (→ PV_ERR_LIMIT).
   */
  set(port: number, base: number, size: number, peerBase: number): number {
    checkRange('base', base, size);
    checkRange('peerBase', peerBase, size);
    const odd = this._lock();
    const w = this._w;
    try {
      let free = -1;
      for (let s = 0; s < this.maxWindows; s++) {
        const b = slotBase(s);
        if (w[b + SlotWord.STATE] !== SlotState.LIVE) {
          if (free < 0) free = s;
          continue;
        }
        // INVARIANT: we hold the lock, so plain reads see every live slot's final values.
        const ob = read64(w, b + SlotWord.BASE_LO);
        const os = read64(w, b + SlotWord.SIZE_LO);
        if (base < ob + os && ob < base + size) {
          throw pvError('PV_ERR_INVALID_ARG', `window [${hex(base)}, +${hex(size)}) overlaps window ${s}`);
        }
      }
      if (free < 0) throw pvError('PV_ERR_LIMIT', `window table full (${this.maxWindows} windows)`);
      const b = slotBase(free);
      w[b + SlotWord.PORT] = port;
      write64(w, b + SlotWord.BASE_LO, base);
      write64(w, b + SlotWord.SIZE_LO, size);
      write64(w, b + SlotWord.PEER_LO, peerBase);
      // ORDERING: the fields above are plain stores inside the critical section; readers only
      // trust them after the even SEQ store in _unlock, which publishes them.
      w[b + SlotWord.STATE] = SlotState.LIVE;
      w[WinWord.LIVE]++;
      // ORDERING: seq-cst add, before _unlock's SEQ store.
      Atomics.add(w, WinWord.GENERATION, 1);
      return free;
    } finally {
      this._unlock(odd);
    }
  }

  /** Removes the window in `slot`; false if it was not live. */
  clear(slot: number): boolean {
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= this.maxWindows) return false;
    const odd = this._lock();
    const w = this._w;
    try {
      const b = slotBase(slot);
      if (w[b + SlotWord.STATE] !== SlotState.LIVE) return false;
      // Zero the whole slot so a freed slot never carries a stale translation.
      w.fill(0, b, b + SlotWord.STRIDE);
      w[WinWord.LIVE]--;
      // ORDERING: seq-cst add, before _unlock's SEQ store.
      Atomics.add(w, WinWord.GENERATION, 1);
      return true;
    } finally {
      this._unlock(odd);
    }
  }

  /** The live window containing `addr`, as one consistent snapshot, or null. */
  lookup(addr: number): WindowEntry | null {
    return this._read((w) => {
      for (let s = 0; s < this.maxWindows; s++) {
        const e = readSlot(w, s);
        if (e !== null && addr >= e.base && addr - e.base < e.size) return e;
      }
      return null;
    });
  }

  /** Every live window, as one consistent snapshot. */
  list(): WindowEntry[] {
    return this._read((w) => {
      const out: WindowEntry[] = [];
      for (let s = 0; s < this.maxWindows; s++) {
        const e = readSlot(w, s);
        if (e !== null) out.push(e);
      }
      return out;
    });
  }

  /** Runs `body` between two equal even SEQ loads (retrying otherwise). */
  private _read<T>(body: (w: Int32Array) => T): T {
    const w = this._w;
    let deadline = 0;
    for (let attempt = 0; ; attempt++) {
      if (attempt >= SPINS) {
        // Past the spinning phase: from here the reader is bounded by time (READ_TIMEOUT_MS).
        if (deadline === 0) deadline = performance.now() + READ_TIMEOUT_MS;
        else if (performance.now() > deadline) break;
      }
      // ORDERING: first seqlock load; pairs with _unlock's store.
      const seq = Atomics.load(w, WinWord.SEQ);
      if ((seq & 1) !== 0) {
        // ORDERING: sleeps only while the writer still holds SEQ at `seq`; _unlock notifies.
        if (attempt >= SPINS) Atomics.wait(w, WinWord.SEQ, seq, 1);
        continue;
      }
      const result = body(w);
      // ORDERING: second seqlock load; any change means a writer ran: retry with fresh fields.
      if (Atomics.load(w, WinWord.SEQ) === seq) return result;
    }
    throw pvError('PV_ERR_TIMEOUT', 'window table: a writer held the table too long');
  }

  private _lock(): number {
    const w = this._w;
    for (let i = 0; i < SPINS + SLEEPS; i++) {
      // ORDERING: seq-cst load; pairs with _unlock's store of the next even value.
      const s = Atomics.load(w, WinWord.SEQ);
      if ((s & 1) === 0) {
        // ORDERING: seq-cst CAS claims the lock; readers that loaded `s` will see SEQ changed.
        if (Atomics.compareExchange(w, WinWord.SEQ, s, (s + 1) | 0) === s) return (s + 1) | 0;
        continue;
      }
      // ORDERING: sleeps only while SEQ still holds the odd value we saw; _unlock notifies.
      if (i >= SPINS) Atomics.wait(w, WinWord.SEQ, s, 1);
    }
    throw pvError('PV_ERR_TIMEOUT', 'window table: another writer holds the table');
  }

  private _unlock(odd: number): void {
    // ORDERING: seq-cst store publishes every field stored inside the critical section.
    Atomics.store(this._w, WinWord.SEQ, (odd + 1) | 0);
    // ORDERING: wakes readers and writers sleeping on SEQ (≈ 40 ns when nobody sleeps).
    Atomics.notify(this._w, WinWord.SEQ);
  }
}

/** Int32 index of slot `s`. */
export function slotBase(s: number): number {
  return WinWord.HEADER + s * SlotWord.STRIDE;
}

function readSlot(w: Int32Array, s: number): WindowEntry | null {
  const b = slotBase(s);
  // ORDERING: seq-cst loads, ordered between the reader's two SEQ loads.
  if (Atomics.load(w, b + SlotWord.STATE) !== SlotState.LIVE) return null;
  return {
    slot: s,
    port: Atomics.load(w, b + SlotWord.PORT),
    base: load64(w, b + SlotWord.BASE_LO),
    size: load64(w, b + SlotWord.SIZE_LO),
    peerBase: load64(w, b + SlotWord.PEER_LO),
  };
}

function load64(w: Int32Array, i: number): number {
  // ORDERING: two seq-cst loads; the seqlock (not these) makes the pair consistent.
  return (Atomics.load(w, i) >>> 0) + (Atomics.load(w, i + 1) >>> 0) * TWO_32;
}

function read64(w: Int32Array, i: number): number {
  return (w[i] >>> 0) + (w[i + 1] >>> 0) * TWO_32;
}

function write64(w: Int32Array, i: number, v: number): void {
  w[i] = (v % TWO_32) | 0;
  w[i + 1] = Math.floor(v / TWO_32) | 0;
}

function checkRange(what: string, base: number, size: number): void {
  if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(size) || size < 1) {
    throw pvError('PV_ERR_INVALID_ARG', `window ${what}: need safe integers, base ≥ 0 and size ≥ 1`);
  }
  if (base + size > Number.MAX_SAFE_INTEGER) {
    throw pvError('PV_ERR_INVALID_ARG', `window ${what}: [${hex(base)}, +${hex(size)}) passes 2^53`);
  }
}

/** Hex text of an address (messages). */
export function hex(v: number): string {
  return `0x${v.toString(16)}`;
}
