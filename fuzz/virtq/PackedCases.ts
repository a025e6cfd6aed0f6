/**
 * The `packed` case kind of the virtq fuzz target: the real PackedDevice
 * (backend/virtio/PackedDevice.ts) on a fresh packed queue in the adversary's memory
 * (AdvLayout.ts), QS 1..64 (any integer), random INDIRECT_DESC / EVENT_IDX. The adversary writes
 * chains one at a time at its own ring position and wrap counter (head flags last), and the
 * device pops, echoes and uses each before the next, so chains cross the ring end and stale
 * used descriptors of the last lap sit in front of the device. Two sub-kinds:
 *  - structured: valid chains with at most one planted defect in chain k (loop past QS slots,
 *    readable after writable, INDIRECT unnegotiated / with NEXT / bad table length / nested,
 *    a bad or past-2^53 address, a writable read-only buffer, an id ≥ QS, an id still
 *    outstanding), whose verdict is known: k chains popped, then the defect's code;
 *  - garbage: random and edge values in the next slots, flags included.
 * Invariants (signatures, as the split cases): only VirtioError (`virtq/packed:threw`); a refusal
 * breaks the queue (`…:refusal-not-fatal`) and nothing else does (`…:broken-silently`); a broken
 * queue pops and publishes nothing (`…:broken-served`); a slot not available for the device's
 * wrap is never consumed (`…:consumed-unavailable`); structured verdicts (`…:wrong-verdict`);
 * every used descriptor carries the id, len and wrap flags of its chain (`…:used-mismatch`);
 * and memory: every changed byte lies in the ring, the device event or a popped chain's
 * writable segment (`virtq/memory:unexpected-write`), holes intact, translations recorded.
 */

import { PackedDevice } from '../../backend/virtio/PackedDevice.js';
import type { SplitFeatures } from '../../backend/virtio/SplitDevice.js';
import { PvError, VirtioError } from '../../protocol/errors.js';
import { guestPhysAddr as g } from '../../protocol/Types.js';
import { usedFlags } from '../../protocol/virtio/PackedRing.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import {
  ADV_QUEUE,
  ADV_REGIONS,
  ADV_RO_DATA,
  ADV_TABLES,
  badAddr,
  garbageAddr,
  validAddr,
  validLen,
} from './AdvLayout.js';
import type { GuestRam } from './GuestRam.js';
import type { RecordingMap } from './RecordingMap.js';

export const PACKED_DEFECTS = [
  'loop',
  'direction',
  'indirect-unnegotiated',
  'indirect-next',
  'table-len',
  'nested',
  'bad-addr',
  'ro-write',
  'bad-id',
  'dup-id',
] as const;
export type PackedDefect = (typeof PACKED_DEFECTS)[number];

const EXPECT: Record<PackedDefect, string> = {
  loop: 'PV_ERR_VIRTQ_LOOP',
  direction: 'PV_ERR_VIRTQ_DIRECTION',
  'indirect-unnegotiated': 'PV_ERR_VIRTQ_BAD_DESC',
  'indirect-next': 'PV_ERR_VIRTQ_BAD_DESC',
  'table-len': 'PV_ERR_VIRTQ_BAD_DESC',
  nested: 'PV_ERR_VIRTQ_BAD_DESC',
  'bad-addr': 'PV_ERR_VIRTQ_BAD_ADDR',
  'ro-write': 'PV_ERR_VIRTQ_BAD_ADDR',
  'bad-id': 'PV_ERR_VIRTQ_BAD_DESC',
  'dup-id': 'PV_ERR_VIRTQ_BAD_DESC',
};

/** Driver and device event structures right after the largest ring (16·64 bytes at ADV_QUEUE). */
const DRV_EV = ADV_QUEUE + 0x400;
const DEV_EV = ADV_QUEUE + 0x404;
/** Writable tables (region 0, below the data areas); the read-only ones stay for reading. */
const TABLES = ADV_TABLES.filter((t) => t < 0x5000);
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;

/** One descriptor as the adversary writes it. */
interface Desc {
  addr: number;
  hi?: number;
  len: number;
  flags: number;
}

/** What one packed case did. */
export interface PackedCaseResult {
  readonly kind: string;
  readonly requests: number;
  readonly violations: Violation[];
}

/** One packed case; see the file comment. */
export function packedCase(
  ram: GuestRam,
  map: RecordingMap,
  rng: Rng,
  stats: Record<string, number>,
): PackedCaseResult {
  for (const r of ADV_REGIONS) rng.fill(ram.u8.subarray(r.offset, r.offset + r.size));
  const garbage = rng.chance(0.25);
  const defect: PackedDefect | undefined = !garbage && rng.chance(0.8) ? rng.pick(PACKED_DEFECTS) : undefined;
  // A defect that adds descriptors (direction, ro-write, nested, indirect-next) needs room for them.
  const roomy = defect !== undefined && defect !== 'loop' && defect !== 'bad-id' && defect !== 'dup-id';
  const qs = roomy ? 6 + rng.below(59) : 1 + rng.below(64);
  const needsIndirect = defect === 'indirect-next' || defect === 'table-len' || defect === 'nested';
  const f: SplitFeatures = {
    indirectDesc: defect === 'indirect-unnegotiated' ? false : needsIndirect || rng.chance(0.6),
    eventIdx: rng.chance(0.5),
  };
  const kind = garbage ? 'packed/garbage' : `packed/${defect ?? 'valid'}`;
  const ringOff = ram.off(ADV_QUEUE);
  ram.u8.fill(0, ringOff, ringOff + 16 * qs);
  ram.u8.fill(0, ram.off(DRV_EV), ram.off(DRV_EV) + 8);
  if (rng.chance(0.5)) ram.dv.setUint16(ram.off(DRV_EV) + 2, rng.below(4), true);
  // The adversary's own writes outside the ring go into the snapshot too: only the device's count.
  const snapshot = ram.u8.slice();
  const put = (gpa: number, d: Desc, id: number, flags: number): void => {
    const o = ram.off(gpa);
    ram.dv.setUint32(o, d.addr >>> 0, true);
    ram.dv.setUint32(o + 4, d.hi ?? 0, true);
    ram.dv.setUint32(o + 8, d.len >>> 0, true);
    ram.dv.setUint16(o + 12, id & 0xffff, true);
    ram.dv.setUint16(o + 14, flags & 0xffff, true);
    snapshot.set(ram.u8.subarray(o, o + 16), o);
  };
  const dev = new PackedDevice(map, f);
  dev.attach({ size: qs, desc: g(ADV_QUEUE), driverEvent: g(DRV_EV), deviceEvent: g(DEV_EV) });
  const iov = dev.newIovecList();
  const bounce = new Uint8Array(4096);
  const v: Violation[] = [];
  const allowed: Array<readonly [number, number]> = [
    [ringOff, ringOff + 16 * qs],
    [ram.off(DEV_EV), ram.off(DEV_EV) + 4],
  ];
  let pos = 0;
  let wrap = true;
  let popped = 0;
  let err: unknown;
  // dup-id needs a chain before k (held, never used) whose id chain k repeats.
  const n = garbage ? 1 + rng.below(4) : (defect === 'dup-id' ? 2 : 1) + rng.below(Math.min(2 * qs + 2, 12));
  const k = defect === undefined ? n : defect === 'dup-id' ? 1 + rng.below(n - 1) : rng.below(n);
  let held = -1;
  for (let c = 0; c < n && err === undefined; c++) {
    // Nothing new is available: the device must not consume the slot in front of it (zero, a used
    // descriptor or last lap's chain). Garbage NEXT flags can desynchronise the two positions, so
    // only structured cases know the slot is unavailable.
    if (!garbage) {
      const before = dev.availPosition;
      try {
        if (dev.pop(iov) >= 0)
          v.push({ signature: 'virtq/packed:consumed-unavailable', detail: `${kind} slot ${pos}` });
      } catch (e) {
        err = e;
        break;
      }
      const after = dev.availPosition;
      if (after.pos !== before.pos || after.wrap !== before.wrap) {
        v.push({ signature: 'virtq/packed:consumed-unavailable', detail: `${kind}: position moved` });
      }
    }
    const chain = garbage ? garbageChain(rng, qs) : validChain(rng, qs, f, c === k ? defect : undefined, put);
    let id = rng.below(qs);
    if (c === k && defect === 'bad-id') id = qs + rng.below(0x10000 - qs);
    if (c === k && defect === 'dup-id') id = held;
    if (garbage && rng.chance(0.3)) id = rng.below(0x10000);
    let headFlags = 0;
    const head = pos;
    for (let s = 0; s < chain.length; s++) {
      const d = chain[s];
      let flags = d.flags | (wrap ? 0x80 : 0x8000);
      if (garbage && rng.chance(0.3)) flags = rng.below(0x10000);
      if (s === 0) headFlags = flags;
      put(ADV_QUEUE + 16 * pos, d, id, s === 0 ? 0 : flags);
      if (++pos === qs) {
        pos = 0;
        wrap = !wrap;
      }
    }
    // ORDERING: the head's flags last, as a driver publishes (single thread here: a plain store).
    ram.dv.setUint16(ringOff + 16 * head + 14, headFlags, true);
    let id2: number;
    try {
      id2 = dev.pop(iov);
    } catch (e) {
      err = e;
      break;
    }
    if (id2 < 0) continue;
    popped++;
    for (let i = iov.readableCount; i < iov.readableCount + iov.writableCount; i++) {
      const r = ram.regionAt(iov.gpa(i), iov.len(i));
      if (r) allowed.push([r.offset + iov.gpa(i) - r.gpa, r.offset + iov.gpa(i) - r.gpa + iov.len(i)]);
    }
    if (defect === 'dup-id' && c === k - 1) {
      held = id2;
      continue;
    }
    const got = iov.read(0, bounce, 0, Math.min(iov.readableBytes, iov.writableBytes, bounce.length));
    const len = iov.write(0, bounce, 0, got);
    const usedAt = dev.usedPosition;
    try {
      dev.pushUsed(id2, len);
    } catch (e) {
      err = e;
      break;
    }
    const o = ringOff + 16 * usedAt.pos;
    const u = {
      id: ram.dv.getUint16(o + 12, true),
      len: ram.dv.getUint32(o + 8, true),
      fl: ram.dv.getUint16(o + 14, true),
    };
    const overRing = allowed.slice(2).some(([a, b]) => a < ringOff + 16 * qs && ringOff < b);
    if (!overRing && (u.id !== id2 || u.len !== len || u.fl !== usedFlags(usedAt.wrap))) {
      v.push({
        signature: 'virtq/packed:used-mismatch',
        detail: `${kind}: ${JSON.stringify(u)} for id ${id2} len ${len}`,
      });
    }
  }
  v.push(...verdict(dev, err, kind, defect, popped, k, stats));
  const hole = ram.checkHoles();
  if (hole >= 0) v.push({ signature: 'virtq/memory:outside-write', detail: `packed: backing byte ${hole}` });
  for (const r of ADV_REGIONS) {
    for (let i = r.offset; i < r.offset + r.size; i++) {
      if (ram.u8[i] === snapshot[i]) continue;
      if (!r.readOnly && allowed.some(([a, b]) => i >= a && i < b)) continue;
      v.push({ signature: 'virtq/memory:unexpected-write', detail: `${kind}: backing byte 0x${i.toString(16)}` });
      break;
    }
  }
  v.push(...map.take());
  stats.served += popped;
  return { kind, requests: n, violations: v };
}

/** The refusal rules and the structured verdict. */
function verdict(
  dev: PackedDevice,
  err: unknown,
  kind: string,
  defect: PackedDefect | undefined,
  popped: number,
  k: number,
  stats: Record<string, number>,
): Violation[] {
  const v: Violation[] = [];
  if (err !== undefined && !(err instanceof VirtioError)) {
    return [
      { signature: 'virtq/packed:threw', detail: err instanceof Error ? (err.stack ?? err.message) : String(err) },
    ];
  }
  if (err === undefined && dev.broken) v.push({ signature: 'virtq/packed:broken-silently', detail: kind });
  if (err instanceof VirtioError) {
    stats.refused++;
    stats[err.code] = (stats[err.code] ?? 0) + 1;
    if (!dev.broken) v.push({ signature: 'virtq/packed:refusal-not-fatal', detail: `${kind}: ${err.code}` });
    for (const op of [() => dev.pop(dev.newIovecList()), () => dev.publishUsed()]) {
      try {
        op();
        v.push({ signature: 'virtq/packed:broken-served', detail: kind });
      } catch (e) {
        if (!(e instanceof VirtioError && e.code === 'PV_ERR_VIRTIO_NEEDS_RESET')) {
          v.push({ signature: 'virtq/packed:broken-served', detail: `${kind}: ${String(e)}` });
        }
      }
    }
  }
  if (!kind.startsWith('packed/garbage')) {
    const code = err instanceof PvError ? err.code : undefined;
    const want = defect === undefined ? undefined : EXPECT[defect];
    const wantPopped = defect === undefined ? popped : k;
    if (code !== want || popped !== wantPopped) {
      v.push({
        signature: 'virtq/packed:wrong-verdict',
        detail: `${kind}: popped ${popped} then ${code ?? 'nothing'}, expected ${wantPopped} then ${want ?? 'nothing'}`,
      });
    }
  }
  return v;
}

/** A valid chain (readable first, then writable) with `defect` planted, as ring descriptors. */
function validChain(
  rng: Rng,
  qs: number,
  f: SplitFeatures,
  defect: PackedDefect | undefined,
  put: (gpa: number, d: Desc, id: number, flags: number) => void,
): Desc[] {
  const buf = (write: boolean): Desc => {
    const len = validLen(rng);
    return { addr: validAddr(rng, len, write), len, flags: write ? F_WRITE : 0 };
  };
  if (defect === 'loop') return Array.from({ length: qs }, () => ({ ...buf(false), flags: F_NEXT }));
  const cnt = 1 + rng.below(Math.min(qs, 4));
  const nr = rng.below(cnt + 1);
  const bufs = Array.from({ length: cnt }, (_, i) => buf(i >= nr));
  if (defect === 'direction') {
    bufs.splice(0, 0, buf(true));
    bufs.push(buf(false));
  }
  if (defect === 'bad-addr') {
    const i = rng.below(bufs.length);
    const b = badAddr(rng, bufs[i].len);
    bufs[i] = { addr: b.addr, hi: b.hi, len: b.len, flags: bufs[i].flags };
  }
  if (defect === 'ro-write') bufs.push({ addr: ADV_RO_DATA[0] + rng.below(64), len: 16, flags: F_WRITE });
  const indirect =
    defect === 'indirect-unnegotiated' ||
    defect === 'indirect-next' ||
    defect === 'table-len' ||
    defect === 'nested' ||
    (f.indirectDesc && rng.chance(0.3));
  if (!indirect || bufs.length > qs)
    return bufs.map((b, i) => ({ ...b, flags: b.flags | (i < bufs.length - 1 ? F_NEXT : 0) }));
  const table = rng.pick(TABLES);
  if (defect === 'nested') bufs.push({ addr: rng.pick(TABLES), len: 16, flags: F_INDIRECT });
  bufs.forEach((b, i) => {
    put(table + 16 * i, b, 0, b.flags);
  });
  let len = 16 * bufs.length;
  if (defect === 'table-len') len = rng.pick([0, 8, 24, 16 * qs + 16, 0xfffffff0]);
  const head: Desc = { addr: table, len, flags: F_INDIRECT | (rng.chance(0.5) ? F_WRITE : 0) };
  if (defect === 'indirect-next') return [{ ...head, flags: head.flags | F_NEXT }, buf(true)];
  return [head];
}

/** Random and edge descriptors (flags are set by the caller, sometimes garbage too). */
function garbageChain(rng: Rng, qs: number): Desc[] {
  return Array.from({ length: 1 + rng.below(Math.min(qs, 6)) }, () => {
    const a = garbageAddr(rng);
    const len = rng.pick([0, 1, 16, 32, 0x1000, rng.edgeU32(), rng.u32()]);
    return { addr: a.addr, hi: a.hi, len, flags: rng.below(8) };
  });
}
