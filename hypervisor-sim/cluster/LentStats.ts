/**
 * One lease's shared record (ONE `SharedArrayBuffer`): whether the lease is still live, and what
 * the fabric did for the lent device. The borrower's domain threads write it (the MMIO hook of
 * the LentFunction, and the NtbDmaResolver inside the NIC engine that runs in the doorbell
 * writer's thread); the Cluster (main thread) revokes through it and tests read the counts —
 * e.g. "a 64 B WRITE on a lent NIC crosses the NTB exactly twice: once for the doorbell, once for
 * the payload" — because they are counts, never times.
 *
 * ```
 * word  byte  size  field                 writer                          reader
 * 0     0     4     MAGIC                 create()                        attach
 * 1     4     4     STATE                 Cluster (LIVE → REVOKED, once)  MMIO hook, resolver
 * 2     8     4     MMIO_READS            MMIO hook                       tests, diagnostics
 * 3     12    4     MMIO_WRITES           MMIO hook                       tests
 * 4     16    4     MMIO_NTB_CROSSINGS    MMIO hook                       tests
 * 5     20    4     MMIO_LINK_HOPS        MMIO hook                       tests
 * 6     24    4     DMA_READS             resolver                        tests
 * 7     28    4     DMA_WRITES            resolver                        tests
 * 8     32    4     DMA_NTB_CROSSINGS     resolver                        tests
 * 9     36    4     DMA_LINK_HOPS         resolver                        tests
 * 10    40    4     DMA_FAULTS            resolver (refused DMAs)         tests
 * 11    44    4     MMIO_REFUSED          MMIO hook (revoked / no route)  tests
 * 12    48    4     P2P_READS             resolver (into a peer's BAR 1)  tests
 * 13    52    4     P2P_WRITES            resolver (into a peer's BAR 1)  tests
 * 14    56    4     P2P_NTB_CROSSINGS     resolver                        tests, ping-pong
 * 15    60    4     P2P_LINK_HOPS         resolver                        tests
 * --- 64-bit block (BigInt64 index 8 = byte 64) ------------------------------------------------
 * -     64    8     FABRIC_NS             both (modelled ns paid)         tests
 * -     72    8     DMA_BYTES             resolver                        tests
 * ```
 * Total 80 bytes. 32-bit counters wrap at 2^32 (a counter is a difference of two snapshots in
 * every use); the 64-bit ones do not wrap in practice.
 *
 * Every access is an `Atomics` call: several threads of the borrower may run the device at once
 * (the owner's doorbells, and other domains whose NICs send to it).
 */

import { pvError } from '../../protocol/errors.js';

/** 'LENT': marks an initialised record. */
export const LENT_MAGIC = 0x4c454e54;

/** Int32 word indices. */
export const enum LentWord {
  MAGIC = 0,
  STATE = 1,
  MMIO_READS = 2,
  MMIO_WRITES = 3,
  MMIO_NTB_CROSSINGS = 4,
  MMIO_LINK_HOPS = 5,
  DMA_READS = 6,
  DMA_WRITES = 7,
  DMA_NTB_CROSSINGS = 8,
  DMA_LINK_HOPS = 9,
  DMA_FAULTS = 10,
  MMIO_REFUSED = 11,
  P2P_READS = 12,
  P2P_WRITES = 13,
  P2P_NTB_CROSSINGS = 14,
  P2P_LINK_HOPS = 15,
}

/** BigInt64 indices (byte offset = index · 8). */
export const enum LentBig {
  FABRIC_NS = 8,
  DMA_BYTES = 9,
}

/** Bytes of the record. */
export const LENT_STATS_BYTES = 80;

/** Values of STATE. */
export const enum LentState {
  LIVE = 0,
  REVOKED = 1,
}

/** A snapshot of the counters (plain data). */
export interface LentCountersSnapshot {
  readonly revoked: boolean;
  readonly mmioReads: number;
  readonly mmioWrites: number;
  readonly mmioNtbCrossings: number;
  readonly mmioLinkHops: number;
  readonly mmioRefused: number;
  readonly dmaReads: number;
  readonly dmaWrites: number;
  readonly dmaNtbCrossings: number;
  readonly dmaLinkHops: number;
  readonly dmaFaults: number;
  readonly p2pReads: number;
  readonly p2pWrites: number;
  readonly p2pNtbCrossings: number;
  readonly p2pLinkHops: number;
  readonly dmaBytes: number;
  readonly fabricNs: number;
}

/** One lease's record, attached in one thread. */
export class LentStats {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  private readonly _big: BigInt64Array;

  /** A fresh record (LIVE, every counter 0). */
  static create(): SharedArrayBuffer {
    const buf = new SharedArrayBuffer(LENT_STATS_BYTES);
    // ORDERING: seq-cst store last; an attach that sees MAGIC sees a zeroed record.
    Atomics.store(new Int32Array(buf), LentWord.MAGIC, LENT_MAGIC);
    return buf;
  }

  constructor(buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== LENT_STATS_BYTES) {
      throw pvError('PV_ERR_CONFIG', 'a lease record must be an 80-byte SharedArrayBuffer');
    }
    this.buffer = buffer;
    this.words = new Int32Array(buffer);
    this._big = new BigInt64Array(buffer);
    // ORDERING: seq-cst load pairs with create()'s store.
    if (Atomics.load(this.words, LentWord.MAGIC) !== LENT_MAGIC) {
      throw pvError('PV_ERR_CONFIG', 'buffer does not hold a lease record');
    }
  }

  /** True once the Cluster revoked (or ended) the lease. */
  get revoked(): boolean {
    // ORDERING: seq-cst load; pairs with revoke()'s store.
    return Atomics.load(this.words, LentWord.STATE) !== LentState.LIVE;
  }

  /** Ends the lease for every thread; true the first time. */
  revoke(): boolean {
    // ORDERING: seq-cst CAS; every later MMIO and DMA of any thread sees REVOKED.
    return Atomics.compareExchange(this.words, LentWord.STATE, LentState.LIVE, LentState.REVOKED) === LentState.LIVE;
  }

  /** Adds `n` to a 32-bit counter. */
  add(word: LentWord, n = 1): void {
    // ORDERING: seq-cst add; counters order nothing.
    Atomics.add(this.words, word, n);
  }

  /** Adds `n` (rounded, ≥ 0) to a 64-bit counter. */
  addBig(index: LentBig, n: number): void {
    if (!(n > 0)) return;
    // ORDERING: seq-cst add; counters order nothing.
    Atomics.add(this._big, index, BigInt(Math.round(n)));
  }

  /** Every counter, read one by one (not one atomic snapshot). */
  snapshot(): LentCountersSnapshot {
    const w = this.words;
    // ORDERING: seq-cst loads of counters; each is exact, the set is not one instant.
    const at = (i: LentWord): number => Atomics.load(w, i) >>> 0;
    return {
      revoked: this.revoked,
      mmioReads: at(LentWord.MMIO_READS),
      mmioWrites: at(LentWord.MMIO_WRITES),
      mmioNtbCrossings: at(LentWord.MMIO_NTB_CROSSINGS),
      mmioLinkHops: at(LentWord.MMIO_LINK_HOPS),
      mmioRefused: at(LentWord.MMIO_REFUSED),
      dmaReads: at(LentWord.DMA_READS),
      dmaWrites: at(LentWord.DMA_WRITES),
      dmaNtbCrossings: at(LentWord.DMA_NTB_CROSSINGS),
      dmaLinkHops: at(LentWord.DMA_LINK_HOPS),
      dmaFaults: at(LentWord.DMA_FAULTS),
      p2pReads: at(LentWord.P2P_READS),
      p2pWrites: at(LentWord.P2P_WRITES),
      p2pNtbCrossings: at(LentWord.P2P_NTB_CROSSINGS),
      p2pLinkHops: at(LentWord.P2P_LINK_HOPS),
      dmaBytes: Number(Atomics.load(this._big, LentBig.DMA_BYTES)),
      fabricNs: Number(Atomics.load(this._big, LentBig.FABRIC_NS)),
    };
  }
}
