/**
 * Where a host's exported shared memory segments live (SmartIO's distributed shared memory, TOCS
 * 2021): a region reserved at the TOP of the host's bus-address space "RAM",
 * `[ramBytes − segmentBytes, ramBytes)`, backed by one SharedArrayBuffer allocated when the
 * Cluster is built. The region is outside what the host's IOMMU contexts hand out as long as a
 * domain's memory plus the IOMMU's foreign window stays below `ramBytes − segmentBytes` (the
 * defaults: ≤ 1 GiB − 16 MiB); a lent device's resolver claims every address of the region for
 * segments and never asks the IOMMU about it.
 *
 * The pool is fixed at construction because a lent device's resolver runs in a borrower's domain
 * thread that received its SABs when the device was borrowed: segments exported later must live
 * in memory that thread already holds. Which parts of the pool are live segments is in a small
 * shared table, so the resolver bounds every DMA to one live segment:
 *
 * ```
 * word  byte       size  field        writer                         reader
 * 0     0          4     MAGIC        create()                       attach
 * 1     4          4     GENERATION   Cluster (odd while writing)    resolver (retry on change)
 * 2     8          4     SLOTS        create()                       resolver
 * 3     12         4     (reserved)
 * 4+4i  16+16i     4     STATE i      Cluster (FREE / LIVE)          resolver
 * 5+4i  20+16i     4     OFFSET i     Cluster (byte offset in pool)  resolver
 * 6+4i  24+16i     4     SIZE i       Cluster (bytes)                resolver
 * 7+4i  28+16i     4     ID i         Cluster (export number)        diagnostics
 * ```
 * Total 16 + 16 · SEG_SLOTS bytes. Offsets and sizes fit an Int32: a pool is < 2 GiB.
 */

import { pvError } from '../../protocol/errors.js';
import { WINDOW_ALIGN } from './FabricPlan.js';

/** 'SEGT': marks an initialised table. */
export const SEG_TABLE_MAGIC = 0x53454754;
/** Segments one host may export at once. */
export const SEG_SLOTS = 32;
/** Default pool size per host: 16 MiB. */
export const DEFAULT_SEGMENT_BYTES = 16 << 20;

/** A host's default pool: DEFAULT_SEGMENT_BYTES, or ramBytes / 16 (64 KiB-aligned) when that is less. */
export function defaultSegmentBytes(ramBytes: number): number {
  return Math.min(DEFAULT_SEGMENT_BYTES, Math.floor(ramBytes / 16 / 0x1_0000) * 0x1_0000);
}

/** Int32 word indices of the header; slot i's fields are at SEG_SLOT0 + 4i + SegField. */
export const enum SegWord {
  MAGIC = 0,
  GENERATION = 1,
  SLOTS = 2,
}
export const SEG_SLOT0 = 4;
export const enum SegField {
  STATE = 0,
  OFFSET = 1,
  SIZE = 2,
  ID = 3,
}
export const enum SegState {
  FREE = 0,
  LIVE = 1,
}
/** Bytes of a table. */
export const SEG_TABLE_BYTES = 4 * (SEG_SLOT0 + 4 * SEG_SLOTS);

/** One host's pool, as lent-device data carries it (structured-cloneable). */
export interface SegmentPoolData {
  readonly host: string;
  /** Bus address of the pool's first byte on `host`. */
  readonly base: number;
  readonly bytes: number;
  /** The pool's memory and its table. */
  readonly mem: SharedArrayBuffer;
  readonly table: SharedArrayBuffer;
}

/** Makes a pool for `host` at the top of its `ramBytes` (bytes: a positive multiple of WINDOW_ALIGN). */
export function createSegmentPool(host: string, ramBytes: number, bytes: number): SegmentPoolData {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % WINDOW_ALIGN !== 0 || bytes >= ramBytes) {
    throw pvError('PV_ERR_CONFIG', `${host}: segmentBytes must be a multiple of ${WINDOW_ALIGN} below ramBytes`);
  }
  if (bytes > 0x7fff_0000) throw pvError('PV_ERR_CONFIG', `${host}: segmentBytes must be < 2 GiB`);
  const table = new SharedArrayBuffer(SEG_TABLE_BYTES);
  const w = new Int32Array(table);
  w[SegWord.SLOTS] = SEG_SLOTS;
  // ORDERING: seq-cst store last; an attach that sees MAGIC sees the rest.
  Atomics.store(w, SegWord.MAGIC, SEG_TABLE_MAGIC);
  return { host, base: ramBytes - bytes, bytes, mem: new SharedArrayBuffer(bytes), table };
}

/** A pool attached in one thread: the resolver's lookups, and (Cluster only) slot updates. */
export class SegmentPool {
  readonly data: SegmentPoolData;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  private readonly _t: Int32Array;

  constructor(data: SegmentPoolData) {
    this.data = data;
    this.bytes = new Uint8Array(data.mem);
    this.words = new Int32Array(data.mem);
    this._t = new Int32Array(data.table);
    // ORDERING: seq-cst load pairs with createSegmentPool's store.
    if (Atomics.load(this._t, SegWord.MAGIC) !== SEG_TABLE_MAGIC) {
      throw pvError('PV_ERR_CONFIG', `${data.host}: buffer does not hold a segment table`);
    }
  }

  /** True when bus address `addr` of the pool's host is inside the pool. */
  covers(addr: number): boolean {
    return addr >= this.data.base && addr < this.data.base + this.data.bytes;
  }

  /**
   * Pool offset of `[addr, addr + len)` if it lies inside ONE live segment, else -1. Retries
   * while the Cluster rewrites the table (generation odd, or moved during the scan).
   */
  lookup(addr: number, len: number): number {
    const off = addr - this.data.base;
    const t = this._t;
    for (;;) {
      // ORDERING: seq-cst load; pairs with the writer's closing increment.
      const g = Atomics.load(t, SegWord.GENERATION);
      if ((g & 1) !== 0) continue;
      let found = -1;
      for (let i = 0; i < SEG_SLOTS; i++) {
        const s = SEG_SLOT0 + 4 * i;
        // ORDERING: seq-cst loads inside the generation bracket.
        if (Atomics.load(t, s + SegField.STATE) !== SegState.LIVE) continue;
        const o = Atomics.load(t, s + SegField.OFFSET);
        const n = Atomics.load(t, s + SegField.SIZE);
        if (off >= o && len > 0 && len <= n && off - o <= n - len) {
          found = off;
          break;
        }
      }
      // ORDERING: seq-cst load; an unchanged even generation means the scan saw one table.
      if (Atomics.load(t, SegWord.GENERATION) === g) return found;
    }
  }

  /** The table's generation (grows with every change). */
  generation(): number {
    // ORDERING: seq-cst load of a counter that only grows.
    return Atomics.load(this._t, SegWord.GENERATION);
  }

  /** Cluster: marks `[offset, offset + size)` live in a free slot; returns the slot (PV_ERR_LIMIT when full). */
  publish(offset: number, size: number, id: number): number {
    const t = this._t;
    for (let i = 0; i < SEG_SLOTS; i++) {
      const s = SEG_SLOT0 + 4 * i;
      if (Atomics.load(t, s + SegField.STATE) !== SegState.FREE) continue;
      this._write(() => {
        // ORDERING: seq-cst stores inside the odd generation; STATE last.
        Atomics.store(t, s + SegField.OFFSET, offset);
        Atomics.store(t, s + SegField.SIZE, size);
        Atomics.store(t, s + SegField.ID, id);
        Atomics.store(t, s + SegField.STATE, SegState.LIVE);
      });
      return i;
    }
    throw pvError('PV_ERR_LIMIT', `${this.data.host} already exports ${SEG_SLOTS} segments`);
  }

  /** Cluster: frees slot `i`; later DMAs into its range fault. */
  withdraw(i: number): void {
    const s = SEG_SLOT0 + 4 * i;
    // ORDERING: seq-cst stores inside the odd generation.
    this._write(() => Atomics.store(this._t, s + SegField.STATE, SegState.FREE));
  }

  private _write(fn: () => void): void {
    // ORDERING: seq-cst adds bracket the change: odd while it is made (readers retry).
    Atomics.add(this._t, SegWord.GENERATION, 1);
    try {
      fn();
    } finally {
      Atomics.add(this._t, SegWord.GENERATION, 1);
    }
  }
}
