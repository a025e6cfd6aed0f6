/**
 * What the virtq adversary writes into its queue, and what a correct device must answer.
 *
 *  - `structuredCase`: 1..8 chains, each valid (readable then writable buffers in valid memory,
 *    direct or through an indirect table whose unused entries hold junk), except that chain d
 *    may carry exactly ONE defect. A correct device serves the d chains before it and refuses
 *    chain d with the defect's code (VIRTIO 1.2 §2.7.5, reference §6.2 item 8), so the plan
 *    carries that expectation: the device's verdict is checked, not only its survival.
 *  - `garbageCase`: random and edge values in every descriptor, indirect table, avail entry and
 *    avail index: only the invariants apply.
 *
 * Chains are written with GuestQueue (DataView, from the spec), never with pvio's frontend.
 */

import type { SplitFeatures } from '../../backend/virtio/SplitDevice.js';
import type { ErrorCode } from '../../protocol/errors.js';
import {
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../protocol/virtio/SplitRing.js';
import type { Rng } from '../core/FuzzTarget.js';
import { ADV_RO_DATA, ADV_TABLES, badAddr, garbageAddr, validAddr, validLen } from './AdvLayout.js';
import type { GuestQueue } from './GuestQueue.js';

/** The one defect a structured case may plant. */
export const DEFECTS = [
  'loop',
  'next-range',
  'head-range',
  'bad-addr',
  'huge-len',
  'write-read-only',
  'direction',
  'indirect-unnegotiated',
  'indirect-next',
  'indirect-nested',
  'indirect-len',
  'indirect-addr',
  'avail-jump',
] as const;
export type Defect = (typeof DEFECTS)[number];

/** What a case offered and what a correct device does with it. */
export interface AdvPlan {
  /** Avail entries offered (requests, in the fuzz report's terms). */
  readonly offered: number;
  /** Chains a correct device completes, and the code it refuses the next one with (none: all served). */
  readonly expect?: { readonly served: number; readonly code?: ErrorCode };
}

interface Desc {
  addr: number;
  hi: number;
  len: number;
  flags: number;
  next: number;
}
/** One descriptor of a chain: where it sits (table GPA, index) and what it says. */
interface Raw {
  readonly table: number;
  readonly at: number;
  readonly d: Desc;
}
interface Built {
  head: number;
  /** Buffer descriptors in chain order. */
  readonly data: Raw[];
  /** The descriptor pointing at the indirect table, if any. */
  readonly pointer?: Raw;
  /** Entries of the table the data descriptors sit in (QS, or the indirect table's). */
  readonly entries: number;
}

function shuffled(rng: Rng, n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function junk(rng: Rng, qs: number): Desc {
  const { addr, hi } = garbageAddr(rng);
  return {
    addr,
    hi,
    len: rng.chance(0.5) ? validLen(rng) : rng.edgeU32(),
    flags: rng.chance(0.8) ? rng.below(8) : rng.below(0x10000),
    next: rng.chance(0.7) ? rng.below(qs) : rng.below(0x10000),
  };
}

/** Hands out descriptor indices and table slots, builds and writes chains. */
class ChainWriter {
  private readonly _pool: number[];
  private readonly _tables: number[];

  constructor(
    private readonly _q: GuestQueue,
    private readonly _rng: Rng,
  ) {
    this._pool = shuffled(_rng, _q.qs);
    this._tables = shuffled(_rng, ADV_TABLES.length).map((i) => ADV_TABLES[i]);
  }

  /** A valid chain of `nr` readable then `nw` writable buffers, or undefined when out of room. */
  build(nr: number, nw: number, indirect: boolean): Built | undefined {
    const rng = this._rng;
    const qs = this._q.qs;
    const k = nr + nw;
    const descs: Desc[] = [];
    for (let i = 0; i < k; i++) {
      const write = i >= nr;
      const len = validLen(rng);
      descs.push({ addr: validAddr(rng, len, write), hi: 0, len, flags: write ? VIRTQ_DESC_F_WRITE : 0, next: 0 });
    }
    let table = this._q.addrs.desc as number;
    let ats: number[];
    let pointer: Raw | undefined;
    let entries = qs;
    if (indirect) {
      if (this._pool.length < 1 || this._tables.length < 1 || k > qs) return undefined;
      entries = Math.min(qs, k + rng.below(3));
      table = this._tables.pop() as number;
      // The chain starts at entry 0 of the table (VIRTIO 1.2 §2.7.5.3.2); the rest in any order.
      ats = [0, ...shuffled(rng, entries - 1).map((i) => i + 1)];
      const flags = VIRTQ_DESC_F_INDIRECT | (rng.chance(0.3) ? VIRTQ_DESC_F_WRITE : 0);
      const at = this._pool.pop() as number;
      pointer = {
        table: this._q.addrs.desc,
        at,
        d: { addr: table, hi: 0, len: VIRTQ_DESC_BYTES * entries, flags, next: rng.below(0x10000) },
      };
      for (const spare of ats.slice(k)) this._q.setDesc(spare, junk(rng, qs), table);
    } else {
      if (this._pool.length < k) return undefined;
      ats = this._pool.splice(0, k);
    }
    const data = descs.map((d, i): Raw => {
      if (i < k - 1) {
        d.flags |= VIRTQ_DESC_F_NEXT;
        d.next = ats[i + 1];
      } else d.next = rng.below(0x10000);
      return { table, at: ats[i], d };
    });
    return { head: pointer ? pointer.at : ats[0], data, pointer, entries };
  }

  write(b: Built): void {
    for (const r of b.pointer ? [b.pointer, ...b.data] : b.data) this._q.setDesc(r.at, r.d, r.table);
  }
}

/** The features a case negotiates: the indirect defects need VIRTIO_F_INDIRECT_DESC on (or off). */
export function featuresFor(rng: Rng, defect: Defect | undefined): SplitFeatures {
  const indirectDesc =
    defect === 'indirect-unnegotiated' ? false : defect?.startsWith('indirect') ? true : rng.chance(0.7);
  return { indirectDesc, eventIdx: rng.chance(0.5) };
}

/** Plants `defect` in chain `b`; returns the code a correct device refuses it with, or undefined if it does not fit. */
function plant(rng: Rng, defect: Defect, b: Built, qs: number): ErrorCode | undefined {
  const last = b.data[b.data.length - 1];
  const k = rng.below(b.data.length);
  const raw = b.data[k].d;
  switch (defect) {
    case 'loop':
      last.d.flags |= VIRTQ_DESC_F_NEXT;
      last.d.next = last.at;
      return 'PV_ERR_VIRTQ_LOOP';
    case 'next-range':
      last.d.flags |= VIRTQ_DESC_F_NEXT;
      last.d.next = b.entries + rng.below(0x10000 - b.entries);
      return 'PV_ERR_VIRTQ_BAD_DESC';
    case 'head-range':
      b.head = qs + rng.below(0x10000 - qs);
      return 'PV_ERR_VIRTQ_BAD_DESC';
    case 'bad-addr': {
      const bad = badAddr(rng, raw.len);
      raw.addr = bad.addr;
      raw.hi = bad.hi ?? Math.floor(bad.addr / 2 ** 32);
      raw.len = bad.len;
      return 'PV_ERR_VIRTQ_BAD_ADDR';
    }
    case 'huge-len': {
      const prefix = b.data.slice(0, k).reduce((s, r) => s + r.d.len, 0);
      raw.len = rng.pick([0x10001 + rng.below(0xfffeffff), 0xffffffff, 0x80000000, 0xffffffff - rng.below(prefix + 1)]);
      return prefix + raw.len > 2 ** 32 ? 'PV_ERR_VIRTQ_TOO_LONG' : 'PV_ERR_VIRTQ_BAD_ADDR';
    }
    case 'write-read-only':
      raw.len = Math.min(raw.len, ADV_RO_DATA[1]);
      raw.addr = ADV_RO_DATA[0] + rng.below(ADV_RO_DATA[1] - raw.len + 1);
      raw.flags |= VIRTQ_DESC_F_WRITE;
      return 'PV_ERR_VIRTQ_BAD_ADDR';
    case 'direction': {
      if (b.data.length < 2) return undefined;
      const first = b.data[0].d;
      first.flags |= VIRTQ_DESC_F_WRITE;
      first.addr = validAddr(rng, first.len, true);
      last.d.flags &= ~VIRTQ_DESC_F_WRITE;
      return 'PV_ERR_VIRTQ_DIRECTION';
    }
    case 'indirect-unnegotiated':
      return b.pointer ? 'PV_ERR_VIRTQ_BAD_DESC' : undefined;
    case 'indirect-next':
      if (!b.pointer) return undefined;
      b.pointer.d.flags |= VIRTQ_DESC_F_NEXT;
      b.pointer.d.next = rng.below(qs);
      return 'PV_ERR_VIRTQ_BAD_DESC';
    case 'indirect-nested':
      if (!b.pointer) return undefined;
      raw.flags |= VIRTQ_DESC_F_INDIRECT;
      raw.addr = rng.pick(ADV_TABLES);
      raw.len = VIRTQ_DESC_BYTES;
      return 'PV_ERR_VIRTQ_BAD_DESC';
    case 'indirect-len':
      if (!b.pointer) return undefined;
      b.pointer.d.len = rng.pick([0, 1, 8 + 16 * rng.below(qs), 16 * (qs + 1 + rng.below(64)), 0xfffffff0]);
      return 'PV_ERR_VIRTQ_BAD_DESC';
    case 'indirect-addr': {
      if (!b.pointer) return undefined;
      const bad = badAddr(rng, b.pointer.d.len, true);
      b.pointer.d.addr = bad.addr;
      b.pointer.d.hi = bad.hi ?? Math.floor(bad.addr / 2 ** 32);
      return 'PV_ERR_VIRTQ_BAD_ADDR';
    }
    default:
      return undefined;
  }
}

/** Writes 1..8 chains, chain d with `defect` (if any); see the file comment. */
export function structuredCase(q: GuestQueue, rng: Rng, f: SplitFeatures, defect: Defect | undefined): AdvPlan {
  const qs = q.qs;
  const w = new ChainWriter(q, rng);
  const count = 1 + rng.below(Math.min(qs, 8));
  const d = defect === undefined || defect === 'avail-jump' ? -1 : rng.below(count);
  let published = 0;
  let expect: { served: number; code?: ErrorCode } | undefined;
  for (let c = 0; c < count; c++) {
    const mine = c === d && defect !== undefined;
    const indirect = mine && defect.startsWith('indirect') ? true : f.indirectDesc && rng.chance(0.3);
    let nr = rng.below(3);
    const nw = rng.below(3);
    if (nr + nw < (mine && defect === 'direction' ? 2 : 1)) nr = 2;
    const b = w.build(nr, nw, indirect);
    if (!b) break;
    const code = mine ? plant(rng, defect, b, qs) : undefined;
    if (code && !expect) expect = { served: c, code };
    w.write(b);
    q.publish(b.head);
    published++;
  }
  if (defect === 'avail-jump') {
    q.setAvailIdx(qs + 1 + rng.below(0xffff - qs));
    return { offered: published, expect: { served: 0, code: 'PV_ERR_VIRTQ_AVAIL_IDX' } };
  }
  return { offered: published, expect: expect ?? { served: published } };
}

/** Random and edge values everywhere the driver writes; see the file comment. */
export function garbageCase(q: GuestQueue, rng: Rng): AdvPlan {
  const qs = q.qs;
  for (let i = 0; i < qs; i++) q.setDesc(i, junk(rng, qs));
  for (let t = rng.below(4); t > 0; t--) {
    const table = rng.pick(ADV_TABLES);
    for (let i = 0; i < 64; i++) q.setDesc(i, junk(rng, qs), table);
  }
  for (let i = 0; i < qs; i++) q.setRing(i, rng.chance(0.9) ? rng.below(qs) : rng.below(0x10000));
  q.setAvailFlags(rng.below(4));
  q.setUsedEvent(rng.below(0x10000));
  const idx = rng.chance(0.85)
    ? rng.below(qs + 1)
    : rng.chance(0.5)
      ? qs + 1 + rng.below(0xffff - qs)
      : rng.below(0x10000);
  q.setAvailIdx(idx);
  // A jump past QS offers one bad index, not thousands of chains.
  return { offered: idx <= qs ? idx : 1 };
}
