/**
 * The guest driver of a packed queue (VIRTIO 1.2 §2.8, reference §5.2). The ring is decoded here
 * independently with a DataView, by a spec device written from the spec's text (not PackedDevice):
 * chains in ring order with the driver's wrap counter, the wrap flip after QS slots, out-of-order
 * completion, hostile used descriptors refused with the driver's records intact and the driver
 * still usable, and both suppression structures (kick and interrupt).
 */

import assert from 'node:assert/strict';
import { PackedDriver } from '../../../frontend/virtio/PackedDriver.js';
import { UsedLenError, type VirtqBuffer } from '../../../frontend/virtio/SplitDriver.js';
import { guestPhysAddr as g } from '../../../protocol/Types.js';
import { packedLayout } from '../../../protocol/virtio/PackedRing.js';

const MEM = 1 << 16;
const BASE = 0x1000;
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const F_AVAIL = 0x80;
const F_USED = 0x8000;

interface Desc {
  addr: number;
  len: number;
  id: number;
  flags: number;
}

/** A device written from the spec's words: looks at the next slot only, writes one used descriptor per chain. */
class SpecDevice {
  readonly dv: DataView;
  pos = 0;
  wrap = true;
  usedPos = 0;
  usedWrap = true;
  constructor(
    mem: SharedArrayBuffer,
    readonly qs: number,
    readonly ring = BASE,
  ) {
    this.dv = new DataView(mem);
  }
  desc(slot: number): Desc {
    const at = this.ring + 16 * slot;
    const dv = this.dv;
    const addr = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
    return {
      addr,
      len: dv.getUint32(at + 8, true),
      id: dv.getUint16(at + 12, true),
      flags: dv.getUint16(at + 14, true),
    };
  }
  /** The next available chain (its descriptors, id of the last, slot count), or undefined. */
  take(): { descs: Desc[]; id: number; slots: number } | undefined {
    const head = this.desc(this.pos);
    const avail = (head.flags & F_AVAIL) !== 0;
    const used = (head.flags & F_USED) !== 0;
    if (avail !== this.wrap || used === this.wrap) return undefined;
    const descs: Desc[] = [];
    for (;;) {
      const d = this.desc(this.pos);
      descs.push(d);
      if (++this.pos === this.qs) {
        this.pos = 0;
        this.wrap = !this.wrap;
      }
      if ((d.flags & F_NEXT) === 0) break;
    }
    return { descs, id: descs[descs.length - 1].id, slots: descs.length };
  }
  /** Writes a used descriptor at the used position and advances by `slots`. */
  complete(id: number, len: number, slots: number): void {
    const at = this.ring + 16 * this.usedPos;
    this.dv.setUint16(at + 12, id, true);
    this.dv.setUint32(at + 8, len, true);
    this.dv.setUint16(at + 14, this.usedWrap ? F_AVAIL | F_USED : 0, true);
    this.usedPos += slots;
    if (this.usedPos >= this.qs) {
      this.usedPos -= this.qs;
      this.usedWrap = !this.usedWrap;
    }
  }
  /** Sets the device event suppression structure (flags, desc word). */
  setEvent(flags: number, desc = 0): void {
    const at = this.ring + packedLayout(this.qs).deviceEvent;
    this.dv.setUint16(at, desc, true);
    this.dv.setUint16(at + 2, flags, true);
  }
  driverEvent(): { desc: number; flags: number } {
    const at = this.ring + packedLayout(this.qs).driverEvent;
    return { desc: this.dv.getUint16(at, true), flags: this.dv.getUint16(at + 2, true) };
  }
}

const buf = (addr: number, len: number): VirtqBuffer => ({ addr: g(addr), len });

function rig(qs: number, opts = {}) {
  const mem = new SharedArrayBuffer(MEM);
  return { mem, drv: new PackedDriver<string>(mem, BASE, qs, opts), dev: new SpecDevice(mem, qs) };
}

describe('PackedDriver: placement (PV_ERR_VIRTQ_LAYOUT)', () => {
  it('QS in 1..32768 (not necessarily a power of two), base 16-aligned, the block inside guest memory', () => {
    const mem = new SharedArrayBuffer(MEM);
    for (const qs of [0, 32769, 1.5])
      assert.throws(() => new PackedDriver(mem, BASE, qs), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => new PackedDriver(mem, BASE + 4, 8), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => new PackedDriver(mem, MEM - 64, 8), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.equal(new PackedDriver(mem, BASE, 3).size, 3);
    assert.equal(new PackedDriver(mem, BASE, 1).numFree, 1);
  });
});

describe('PackedDriver: chains in ring order with the wrap counter', () => {
  it('a chain is written slot by slot: same id, NEXT on all but the last, WRITE on writable, AVAIL=1 USED=0 on lap 1', () => {
    const { drv, dev } = rig(8);
    const id = drv.addChain([buf(0x4000, 10), buf(0x5000, 20)], [buf(0x6000, 30)], 'a');
    const got = [0, 1, 2].map((s) => dev.desc(s));
    assert.deepEqual(got, [
      { addr: 0x4000, len: 10, id, flags: F_AVAIL | F_NEXT },
      { addr: 0x5000, len: 20, id, flags: F_AVAIL | F_NEXT },
      { addr: 0x6000, len: 30, id, flags: F_AVAIL | F_WRITE },
    ]);
    assert.equal(dev.desc(3).flags, 0, 'nothing past the chain');
    assert.deepEqual([drv.numFree, drv.inFlight], [5, 1]);
  });

  it('after QS slots the wrap counter flips: lap 2 slots carry AVAIL=0 USED=1, and a chain may straddle the ring end', () => {
    const { drv, dev } = rig(3);
    const seen: string[] = [];
    for (let n = 0; n < 60; n++) {
      const two = n % 3 !== 0;
      const r = two ? [buf(0x4000, 4)] : [];
      drv.addChain(r, [buf(0x5000, 8)], `t${n}`);
      const c = dev.take();
      assert.ok(c, `chain ${n} available`);
      // Every descriptor's AVAIL/USED pair is the device's wrap at that slot: it saw them as available.
      for (const d of c.descs) assert.notEqual((d.flags & F_AVAIL) !== 0, (d.flags & F_USED) !== 0);
      dev.complete(c.id, 3, c.slots);
      const u = drv.getUsed();
      assert.deepEqual(u, { token: `t${n}`, len: 3 });
      seen.push(u.token);
      assert.equal(drv.getUsed(), undefined);
    }
    assert.equal(seen.length, 60);
    assert.deepEqual([drv.numFree, drv.inFlight], [3, 0]);
    // The raw flags of lap 2, on a queue of 2.
    const { drv: d2, dev: dv2 } = rig(2);
    d2.addChain([buf(0x4000, 1)], [], 'x');
    d2.addChain([buf(0x4000, 1)], [], 'y');
    for (let i = 0; i < 2; i++) {
      const c = dv2.take();
      assert.ok(c);
      dv2.complete(c.id, 0, 1);
    }
    assert.equal(d2.getUsed()?.token, 'x');
    assert.equal(d2.getUsed()?.token, 'y');
    d2.addChain([buf(0x4000, 1)], [], 'z');
    assert.equal(dv2.desc(0).flags, F_USED, 'lap 2: AVAIL=0, USED=1 (driver wrap 0)');
    assert.deepEqual(d2.availPosition, { pos: 1, wrap: false });
  });

  it('an indirect chain takes one slot: INDIRECT only, len 16·n; the table holds the buffers in order', () => {
    const { mem, drv, dev } = rig(4, { indirect: true });
    const t = 0x8000;
    drv.addChain([buf(0x4000, 5)], [buf(0x5000, 6), buf(0x6000, 7)], 'i', g(t));
    const head = dev.desc(0);
    assert.deepEqual(head, { addr: t, len: 48, id: head.id, flags: F_AVAIL | F_INDIRECT });
    const tab = new SpecDevice(mem, 3, t);
    assert.deepEqual(
      [0, 1, 2].map((k) => [tab.desc(k).addr, tab.desc(k).len, tab.desc(k).flags]),
      [
        [0x4000, 5, 0],
        [0x5000, 6, F_WRITE],
        [0x6000, 7, F_WRITE],
      ],
    );
    assert.equal(drv.numFree, 3);
    assert.throws(() => rig(4).drv.addChain([buf(0x4000, 1)], [], 'x', g(t)), { code: 'PV_ERR_NOT_SUPPORTED' });
    assert.throws(() => drv.addChain([buf(0x4000, 1)], [], 'x', g(BASE)), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('a chain that does not fit is PV_ERR_RING_FULL and writes nothing', () => {
    const { drv, dev } = rig(4);
    drv.addChain([buf(0x4000, 1), buf(0x4000, 1), buf(0x4000, 1)], [], 'a');
    assert.throws(() => drv.addChain([buf(0x4000, 1), buf(0x4000, 1)], [], 'b'), { code: 'PV_ERR_RING_FULL' });
    assert.equal(dev.desc(3).flags, 0);
    assert.deepEqual([drv.numFree, drv.inFlight], [1, 1]);
    assert.throws(() => drv.addChain([], [], 'c'), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.addChain([buf(MEM - 1, 2)], [], 'c'), { code: 'PV_ERR_INVALID_ARG' });
  });
});

describe('PackedDriver: completion', () => {
  it('out-of-order completion: the driver skips each chain by its OWN slot count and frees the right ids', () => {
    const { drv, dev } = rig(8);
    drv.addChain([buf(0x4000, 1)], [buf(0x5000, 10)], 'a');
    drv.addChain([buf(0x4000, 1), buf(0x4000, 1)], [buf(0x5000, 10)], 'b');
    drv.addChain([buf(0x4000, 1)], [buf(0x5000, 10)], 'c');
    const cs = [dev.take(), dev.take(), dev.take()];
    assert.ok(cs.every((c) => c !== undefined));
    const [a, b, c] = cs as Array<{ id: number; slots: number }>;
    assert.equal(drv.numFree, 1);
    dev.complete(c.id, 4, c.slots);
    dev.complete(a.id, 5, a.slots);
    dev.complete(b.id, 6, b.slots);
    assert.deepEqual(
      [drv.getUsed(), drv.getUsed(), drv.getUsed(), drv.getUsed()],
      [{ token: 'c', len: 4 }, { token: 'a', len: 5 }, { token: 'b', len: 6 }, undefined],
    );
    assert.deepEqual([drv.numFree, drv.inFlight], [8, 0]);
  });
});

describe('PackedDriver: hostile used descriptors are refused and the driver stays usable', () => {
  /** Posts two one-slot chains 'a' (slot 0) and 'b' (slot 1) and lets the spec device take them. */
  function two() {
    const r = rig(8);
    r.drv.addChain([], [buf(0x5000, 16)], 'a');
    r.drv.addChain([], [buf(0x5000, 16)], 'b');
    const a = r.dev.take();
    const b = r.dev.take();
    assert.ok(a && b);
    return { ...r, a, b };
  }

  for (const [what, badId] of [
    ['an id ≥ QS', 8],
    ['an id that is not outstanding', 5],
    ['an id far out of range', 0xffff],
  ] as const) {
    it(`${what} is PV_ERR_VIRTQ_BAD_DESC; the outstanding chains are untouched and later ones still complete`, () => {
      const { drv, dev, b } = two();
      dev.complete(badId, 0, 1);
      assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' });
      assert.deepEqual([drv.numFree, drv.inFlight], [6, 2], 'nothing freed by the refused descriptor');
      dev.complete(b.id, 7, 1);
      assert.deepEqual(drv.getUsed(), { token: 'b', len: 7 });
      drv.addChain([], [buf(0x5000, 16)], 'c');
      const c = dev.take();
      assert.ok(c);
      dev.complete(c.id, 1, 1);
      assert.deepEqual(drv.getUsed(), { token: 'c', len: 1 });
    });
  }

  it('a len beyond the writable bytes is UsedLenError carrying the token; the chain is freed', () => {
    const { drv, dev, a, b } = two();
    dev.complete(a.id, 17, 1);
    assert.throws(
      () => drv.getUsed(),
      (e: unknown) => e instanceof UsedLenError && e.code === 'PV_ERR_VIRTQ_BAD_DESC' && e.token === 'a',
    );
    assert.deepEqual([drv.numFree, drv.inFlight], [7, 1]);
    dev.complete(b.id, 16, 1);
    assert.deepEqual(drv.getUsed(), { token: 'b', len: 16 });
  });

  it('a used id given back twice is refused the second time', () => {
    const { drv, dev, a } = two();
    dev.complete(a.id, 0, 1);
    assert.equal(drv.getUsed()?.token, 'a');
    dev.complete(a.id, 0, 1);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' });
    assert.equal(drv.inFlight, 1);
  });

  it('a used slot with nothing outstanding is PV_ERR_RING_RSP_OVERFLOW and consumes nothing', () => {
    const { drv, dev } = rig(4);
    dev.complete(0, 0, 1);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_RING_RSP_OVERFLOW' });
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_RING_RSP_OVERFLOW' });
    // The driver's next chain overwrites the slot's flags: available again, the device proceeds.
    drv.addChain([], [buf(0x5000, 4)], 'a');
    assert.equal(drv.getUsed(), undefined);
    const c = dev.take();
    assert.ok(c);
    dev.usedPos = 0;
    dev.usedWrap = true;
    dev.complete(c.id, 2, c.slots);
    assert.deepEqual(drv.getUsed(), { token: 'a', len: 2 });
  });

  it('a chain whose slots would carry the used position past the avail position is refused', () => {
    const { drv, dev } = rig(8);
    drv.addChain([buf(0x4000, 1), buf(0x4000, 1), buf(0x4000, 1)], [], 'long');
    const c = dev.take();
    assert.ok(c);
    dev.complete(9, 0, 1); // junk at slot 0: the driver steps one slot
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' });
    dev.complete(c.id, 0, c.slots); // slot 1: 3 slots would pass availPos (3)
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' });
    assert.equal(drv.inFlight, 1, 'the chain stays outstanding: nothing freed on a refusal');
  });
});

describe('PackedDriver: notification suppression', () => {
  it('kicks follow the device event structure: ENABLE → kick, DISABLE → none, nothing new → none', () => {
    const { drv, dev } = rig(8);
    assert.equal(drv.publish(), false, 'nothing added');
    drv.addChain([buf(0x4000, 1)], [], 'a');
    assert.equal(drv.publish(), true);
    assert.equal(drv.publish(), false, 'the batch was already published');
    dev.setEvent(1);
    drv.addChain([buf(0x4000, 1)], [], 'b');
    assert.equal(drv.publish(), false);
  });

  it('DESC (EVENT_IDX): a kick iff the batch covers the device event position of the right wrap', () => {
    const { drv, dev } = rig(4, { eventIdx: true });
    const desc = (off: number, wrap: boolean) => off | (wrap ? 0x8000 : 0);
    dev.setEvent(2, desc(1, true));
    drv.addChain([buf(0x4000, 1)], [], 'a'); // slot 0
    assert.equal(drv.publish(), false, 'event at slot 1 not reached');
    drv.addChain([buf(0x4000, 1)], [], 'b'); // slot 1
    assert.equal(drv.publish(), true, 'slot 1 made available');
    drv.addChain([buf(0x4000, 1), buf(0x4000, 1)], [], 'c'); // slots 2, 3: wrap flips
    dev.setEvent(2, desc(0, false));
    assert.equal(drv.publish(), false, 'slot 0 of lap 2 not yet written');
    dev.setEvent(2, desc(3, true));
    for (let i = 0; i < 3; i++) {
      const c = dev.take();
      assert.ok(c);
      dev.complete(c.id, 0, c.slots);
    }
    for (let i = 0; i < 3; i++) drv.getUsed();
    drv.addChain([buf(0x4000, 1)], [], 'd'); // slot 0, wrap 0
    dev.setEvent(2, desc(0, false));
    assert.equal(drv.publish(), true, 'lap 2 slot 0 written');
  });

  it('interrupts: disable writes DISABLE; enable writes ENABLE (or DESC at usedPos/wrap) and re-checks the next slot', () => {
    const plain = rig(4);
    plain.drv.disableInterrupts();
    assert.equal(plain.dev.driverEvent().flags, 1);
    assert.equal(plain.drv.enableInterrupts(), true, 'nothing pending');
    assert.equal(plain.dev.driverEvent().flags, 0);

    const { drv, dev } = rig(4, { eventIdx: true });
    drv.addChain([buf(0x4000, 1)], [], 'a');
    drv.addChain([buf(0x4000, 1)], [], 'b');
    const a = dev.take();
    assert.ok(a);
    dev.complete(a.id, 0, 1);
    assert.equal(drv.enableInterrupts(), false, 'a used descriptor arrived: do not sleep (the race re-check)');
    assert.deepEqual(dev.driverEvent(), { desc: 0x8000, flags: 2 });
    assert.equal(drv.getUsed()?.token, 'a');
    assert.equal(drv.enableInterrupts(), true);
    assert.deepEqual(dev.driverEvent(), { desc: 0x8001, flags: 2 }, 'DESC at slot 1, wrap 1');
  });
});
