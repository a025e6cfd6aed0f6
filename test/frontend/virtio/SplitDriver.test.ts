import assert from 'node:assert/strict';
import { SplitDriver, UsedLenError, type VirtqBuffer } from '../../../frontend/virtio/SplitDriver.js';
import { VirtioError } from '../../../protocol/errors.js';
import { type GuestPhysAddr, guestPhysAddr } from '../../../protocol/Types.js';
import { type SplitLayout, splitLayout } from '../../../protocol/virtio/SplitRing.js';

const MEM_BYTES = 1 << 20;
const BASE = 4096;
/** Buffers live from here up (clear of any queue at BASE with QS ≤ 256). */
const DATA = 1 << 16;

const buf = (addr: number, len: number): VirtqBuffer => ({ addr: guestPhysAddr(addr), len });

interface SeenBuffer {
  addr: number;
  len: number;
  write: boolean;
}

/**
 * A device written straight from VIRTIO 1.2 §2.7 with raw offsets (desc: addr 0, len 8, flags 12,
 * next 14; avail: idx 2, ring 4; used: idx 2, ring 4 + 8·i) and DataView little-endian reads; it
 * completes whatever it is told to, in any order, and can be made to lie.
 */
class SpecDevice {
  readonly dv: DataView;
  readonly u16: Uint16Array;
  readonly l: SplitLayout;
  lastAvail = 0;
  usedIdx = 0;

  constructor(
    mem: SharedArrayBuffer,
    readonly base: number,
    readonly qs: number,
  ) {
    this.dv = new DataView(mem);
    this.u16 = new Uint16Array(mem);
    this.l = splitLayout(qs);
  }

  availIdx(): number {
    return Atomics.load(this.u16, (this.base + this.l.avail + 2) >> 1);
  }

  pop(): { head: number; bufs: SeenBuffer[] } | undefined {
    if (this.availIdx() === this.lastAvail) return undefined;
    const head = this.dv.getUint16(this.base + this.l.avail + 4 + 2 * (this.lastAvail % this.qs), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    const bufs: SeenBuffer[] = [];
    let table = this.base + this.l.desc;
    let i = head;
    let ttl = this.qs;
    for (;;) {
      const at = table + 16 * i;
      const addr = Number(this.dv.getBigUint64(at, true));
      const len = this.dv.getUint32(at + 8, true);
      const flags = this.dv.getUint16(at + 12, true);
      if (flags & 4) {
        assert.equal(flags, 4, 'an indirect descriptor has neither NEXT nor WRITE');
        table = addr;
        ttl = len / 16;
        i = 0;
        continue;
      }
      bufs.push({ addr, len, write: (flags & 2) !== 0 });
      if ((flags & 1) === 0) break;
      i = this.dv.getUint16(at + 14, true);
      assert.ok(--ttl > 0, 'chain longer than the queue');
    }
    return { head, bufs };
  }

  /** Writes a used element {id, len} and then publishes used.idx (len before idx, as the spec requires). */
  complete(id: number, len: number, publish = true): void {
    const e = this.base + this.l.used + 4 + 8 * (this.usedIdx % this.qs);
    this.dv.setUint32(e, id, true);
    this.dv.setUint32(e + 4, len, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    if (publish) Atomics.store(this.u16, (this.base + this.l.used + 2) >> 1, this.usedIdx);
  }

  setUsedIdx(v: number): void {
    Atomics.store(this.u16, (this.base + this.l.used + 2) >> 1, v);
  }

  setNoNotify(on: boolean): void {
    this.dv.setUint16(this.base + this.l.used, on ? 1 : 0, true);
  }

  setAvailEvent(v: number): void {
    this.dv.setUint16(this.base + this.l.used + 4 + 8 * this.qs, v, true);
  }

  availFlags(): number {
    return this.dv.getUint16(this.base + this.l.avail, true);
  }

  usedEvent(): number {
    return this.dv.getUint16(this.base + this.l.avail + 4 + 2 * this.qs, true);
  }
}

function setup(qs: number, opts: { eventIdx?: boolean; indirect?: boolean } = {}) {
  const mem = new SharedArrayBuffer(MEM_BYTES);
  return { mem, drv: new SplitDriver<string>(mem, BASE, qs, opts), dev: new SpecDevice(mem, BASE, qs) };
}

/** xorshift32: a reproducible completion order. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('virtio split driver: attach', () => {
  it('a bad queue size, a misaligned base or a queue outside memory is PV_ERR_VIRTQ_LAYOUT', () => {
    const mem = new SharedArrayBuffer(MEM_BYTES);
    assert.throws(() => new SplitDriver(mem, BASE, 3), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => new SplitDriver(mem, BASE + 8, 8), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => new SplitDriver(mem, MEM_BYTES - 64, 8), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => new SplitDriver(mem, -16, 8), { code: 'PV_ERR_VIRTQ_LAYOUT' });
  });
});

describe('virtio split driver: addChain writes descriptors and the avail ring', () => {
  it('readable then writable descriptors, NEXT links, WRITE flags, ring[idx] = head, idx published by publish()', () => {
    const { mem, drv, dev } = setup(8);
    const dv = new DataView(mem);
    const head = drv.addChain([buf(DATA, 16), buf(DATA + 100, 200)], [buf(DATA + 4096, 512)], 'a');
    assert.equal(drv.numFree, 5);
    assert.equal(dev.availIdx(), 0, 'not visible before publish');
    const l = dev.l;
    const desc = (i: number) => {
      const at = BASE + l.desc + 16 * i;
      return {
        addr: Number(dv.getBigUint64(at, true)),
        len: dv.getUint32(at + 8, true),
        flags: dv.getUint16(at + 12, true),
        next: dv.getUint16(at + 14, true),
      };
    };
    const d0 = desc(head);
    assert.deepEqual({ addr: d0.addr, len: d0.len, flags: d0.flags }, { addr: DATA, len: 16, flags: 1 });
    const d1 = desc(d0.next);
    assert.deepEqual({ addr: d1.addr, len: d1.len, flags: d1.flags }, { addr: DATA + 100, len: 200, flags: 1 });
    const d2 = desc(d1.next);
    assert.deepEqual({ addr: d2.addr, len: d2.len, flags: d2.flags }, { addr: DATA + 4096, len: 512, flags: 2 });
    assert.equal(new Set([head, d0.next, d1.next]).size, 3, 'three distinct descriptors');
    assert.equal(dv.getUint16(BASE + l.avail + 4, true), head);
    drv.publish();
    assert.equal(dev.availIdx(), 1);
    assert.deepEqual(dev.pop(), {
      head,
      bufs: [
        { addr: DATA, len: 16, write: false },
        { addr: DATA + 100, len: 200, write: false },
        { addr: DATA + 4096, len: 512, write: true },
      ],
    });
  });

  it('free list exhaustion is PV_ERR_RING_FULL and writes nothing; freed descriptors are reused', () => {
    const { drv, dev } = setup(4);
    drv.addChain([buf(DATA, 1)], [buf(DATA + 8, 1), buf(DATA + 16, 1)], 'three');
    assert.throws(() => drv.addChain([buf(DATA, 1), buf(DATA, 1)], [], 'two'), { code: 'PV_ERR_RING_FULL' });
    assert.equal(drv.numFree, 1);
    assert.equal(drv.inFlight, 1);
    drv.addChain([buf(DATA, 1)], [], 'one');
    assert.throws(() => drv.addChain([buf(DATA, 1)], [], 'none'), { code: 'PV_ERR_RING_FULL' });
    drv.publish();
    const first = dev.pop();
    assert.equal(first?.bufs.length, 3);
    dev.complete(first?.head ?? -1, 2);
    assert.deepEqual(drv.getUsed(), { token: 'three', len: 2 });
    assert.equal(drv.numFree, 3);
    drv.addChain([buf(DATA, 1), buf(DATA, 2), buf(DATA, 3)], [], 'again');
    drv.publish();
    dev.pop();
    assert.equal(dev.pop()?.bufs.length, 3);
  });

  it('bad arguments are PV_ERR_INVALID_ARG: empty chain, more buffers than QS, buffer outside memory, bad length', () => {
    const { drv } = setup(4);
    assert.throws(() => drv.addChain([], [], 'x'), { code: 'PV_ERR_INVALID_ARG' });
    const five = Array.from({ length: 5 }, () => buf(DATA, 1));
    assert.throws(() => drv.addChain(five, [], 'x'), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.addChain([buf(MEM_BYTES - 4, 8)], [], 'x'), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.addChain([{ addr: DATA as GuestPhysAddr, len: 1.5 }], [], 'x'), {
      code: 'PV_ERR_INVALID_ARG',
    });
    assert.throws(() => drv.addChain([{ addr: -1 as GuestPhysAddr, len: 1 }], [], 'x'), { code: 'PV_ERR_INVALID_ARG' });
    assert.equal(drv.numFree, 4, 'nothing was allocated by a refused chain');
    assert.throws(() => drv.addChain([buf(DATA, 1)], [], 'x', guestPhysAddr(DATA)), { code: 'PV_ERR_NOT_SUPPORTED' });
  });
});

describe('virtio split driver: kick decisions', () => {
  it('without EVENT_IDX: kick unless used.flags has NO_NOTIFY; nothing published → no kick', () => {
    const { drv, dev } = setup(8);
    assert.equal(drv.publish(), false, 'nothing added');
    drv.addChain([buf(DATA, 1)], [], 'a');
    assert.equal(drv.publish(), true);
    dev.setNoNotify(true);
    drv.addChain([buf(DATA, 1)], [], 'b');
    assert.equal(drv.publish(), false);
    dev.setNoNotify(false);
    drv.addChain([buf(DATA, 1)], [], 'c');
    assert.equal(drv.publish(), true);
  });

  it('with EVENT_IDX: kick iff avail_event ∈ [old, new), the flag ignored', () => {
    const { drv, dev } = setup(8, { eventIdx: true });
    dev.setNoNotify(true);
    dev.setAvailEvent(0);
    drv.addChain([buf(DATA, 1)], [], 'a');
    assert.equal(drv.publish(), true, 'event 0 ∈ [0, 1), NO_NOTIFY ignored');
    drv.addChain([buf(DATA, 1)], [], 'b');
    assert.equal(drv.publish(), false, 'event 0 ∉ [1, 2)');
    dev.setAvailEvent(3);
    for (const t of ['c', 'd']) drv.addChain([buf(DATA, 1)], [], t);
    assert.equal(drv.publish(), true, 'event 3 ∈ [2, 4)');
    dev.setAvailEvent(6);
    for (const t of ['e', 'f']) drv.addChain([buf(DATA, 1)], [], t);
    assert.equal(drv.publish(), false, 'event 6 ∉ [4, 6)');
  });

  it('with EVENT_IDX across the 65535 → 0 wrap of avail.idx', () => {
    const { drv, dev } = setup(2, { eventIdx: true });
    let kicks = 0;
    for (let n = 0; n < 65540; n++) {
      dev.setAvailEvent(65535);
      drv.addChain([buf(DATA, 1)], [], 'x');
      if (drv.publish()) kicks++;
      const p = dev.pop();
      assert.ok(p !== undefined);
      dev.complete(p.head, 0);
      assert.equal(drv.getUsed()?.token, 'x');
    }
    assert.equal(kicks, 1, 'only the publish from 65535 to 0 crossed avail_event 65535');
    assert.equal(dev.availIdx(), 65540 & 0xffff);
  });
});

describe('virtio split driver: completions', () => {
  it('a device completing chains out of order gets each token back with its len; 70 000 chains cross the u16 wrap', () => {
    const qs = 8;
    const { drv, dev } = setup(qs);
    const next = rng(0x5eed);
    const seen = new Map<number, { token: string; bufs: SeenBuffer[] }>();
    let posted = 0;
    let popped = 0;
    let completed = 0;
    while (completed < 70_000) {
      while (drv.numFree >= 3 && posted < 70_000) {
        const a = DATA + 64 * (posted % 1000);
        drv.addChain([buf(a, 8)], posted % 2 ? [buf(a + 8, 48), buf(a + 56, 8)] : [buf(a + 8, 56)], `t${posted}`);
        posted++;
      }
      drv.publish();
      for (let p = dev.pop(); p !== undefined; p = dev.pop()) seen.set(p.head, { token: `t${popped++}`, bufs: p.bufs });
      const heads = [...seen.keys()];
      const pick = heads[Math.floor(next() * heads.length)];
      const want = seen.get(pick);
      assert.ok(want !== undefined);
      const n = Number(want.token.slice(1));
      const a = DATA + 64 * (n % 1000);
      const shape = n % 2 ? [8, 48, 8] : [8, 56];
      assert.deepEqual(
        want.bufs,
        shape.map((len, k) => ({ addr: a + shape.slice(0, k).reduce((x, y) => x + y, 0), len, write: k > 0 })),
        'the device read the chain the driver wrote for that token',
      );
      dev.complete(pick, 56);
      assert.deepEqual(drv.getUsed(), { token: want.token, len: 56 });
      seen.delete(pick);
      completed++;
      assert.equal(drv.getUsed(), undefined, 'nothing else pending');
    }
    assert.equal(drv.numFree, qs);
    assert.equal(drv.inFlight, 0);
  });

  it('enableInterrupts without EVENT_IDX clears NO_INTERRUPT and re-checks used.idx (the VS:701-736 race)', () => {
    const { drv, dev } = setup(8);
    drv.disableInterrupts();
    assert.equal(dev.availFlags(), 1);
    assert.equal(drv.enableInterrupts(), true, 'nothing pending: safe to sleep');
    assert.equal(dev.availFlags(), 0);
    drv.addChain([buf(DATA, 1)], [], 'a');
    drv.publish();
    drv.disableInterrupts();
    dev.complete(dev.pop()?.head ?? -1, 0);
    assert.equal(drv.enableInterrupts(), false, 'a completion slipped in: poll again');
    assert.equal(drv.getUsed()?.token, 'a');
    assert.equal(drv.enableInterrupts(), true);
  });

  it('enableInterrupts with EVENT_IDX writes used_event = last_used; avail.flags stays 0', () => {
    const { drv, dev } = setup(8, { eventIdx: true });
    for (const t of ['a', 'b']) drv.addChain([buf(DATA, 1)], [], t);
    drv.publish();
    for (let p = dev.pop(); p !== undefined; p = dev.pop()) dev.complete(p.head, 0);
    drv.getUsed();
    drv.disableInterrupts();
    assert.equal(dev.availFlags(), 0, 'VIRTIO 1.2 §2.7.7.1: flags must be 0 with EVENT_IDX');
    assert.equal(dev.usedEvent(), 0, 'moved behind last_used (1)');
    assert.equal(drv.enableInterrupts(), false, 'one more used buffer pending');
    assert.equal(dev.usedEvent(), 1);
    drv.getUsed();
    assert.equal(drv.enableInterrupts(), true);
    assert.equal(dev.usedEvent(), 2);
  });
});

describe('virtio split driver: a hostile used ring is refused and the driver stays usable', () => {
  /** Posts `n` single-buffer chains (1 writable byte each), publishes, and has the device pop them. */
  function post(drv: SplitDriver<string>, dev: SpecDevice, tokens: string[]): number[] {
    for (const t of tokens) drv.addChain([], [buf(DATA, 16)], t);
    drv.publish();
    const heads: number[] = [];
    for (let p = dev.pop(); p !== undefined; p = dev.pop()) heads.push(p.head);
    return heads;
  }

  /** After the abuse: every descriptor is free again and QS distinct heads can be posted and completed. */
  function assertHealthy(drv: SplitDriver<string>, dev: SpecDevice, qs: number): void {
    assert.equal(drv.numFree, qs);
    assert.equal(drv.inFlight, 0);
    const heads = post(
      drv,
      dev,
      Array.from({ length: qs }, (_, i) => `h${i}`),
    );
    assert.equal(new Set(heads).size, qs, 'no descriptor handed out twice');
    for (const h of heads.reverse()) dev.complete(h, 16);
    const tokens = new Set<string>();
    for (let u = drv.getUsed(); u !== undefined; u = drv.getUsed()) tokens.add(u.token);
    assert.equal(tokens.size, qs);
    assert.equal(drv.numFree, qs);
  }

  it('id ≥ QS, id of a free descriptor, id of a non-head descriptor: PV_ERR_VIRTQ_BAD_DESC, entry skipped', () => {
    const qs = 8;
    const { drv, dev } = setup(qs);
    drv.addChain([buf(DATA, 1)], [buf(DATA + 8, 4)], 'pair');
    drv.publish();
    const p = dev.pop();
    assert.ok(p !== undefined);
    const second = new DataView(dev.dv.buffer).getUint16(BASE + 16 * p.head + 14, true);
    for (const id of [qs, 0xffff_ffff, 7, second]) {
      dev.complete(id, 0);
      assert.throws(
        () => drv.getUsed(),
        (e: unknown) => e instanceof VirtioError && (e as VirtioError).code === 'PV_ERR_VIRTQ_BAD_DESC',
        `id ${id}`,
      );
      assert.equal(drv.numFree, qs - 2, 'nothing freed');
    }
    dev.complete(p.head, 4);
    assert.deepEqual(drv.getUsed(), { token: 'pair', len: 4 });
    assertHealthy(drv, dev, qs);
  });

  it('a head completed twice, and a head added but not yet published, are not outstanding', () => {
    const qs = 4;
    const { drv, dev } = setup(qs);
    const [ha, hb] = post(drv, dev, ['a', 'b']);
    dev.complete(ha, 1);
    assert.equal(drv.getUsed()?.token, 'a');
    dev.complete(ha, 1);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' }, 'completed twice');
    const later = drv.addChain([], [buf(DATA, 16)], 'later');
    dev.complete(later, 1);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' }, 'added, not yet published');
    drv.publish();
    assert.equal(dev.pop()?.head, later);
    dev.complete(later, 2);
    dev.complete(hb, 3);
    assert.deepEqual(drv.getUsed(), { token: 'later', len: 2 });
    assert.deepEqual(drv.getUsed(), { token: 'b', len: 3 });
    assertHealthy(drv, dev, qs);
  });

  it('used.idx ahead of every published chain is PV_ERR_RING_RSP_OVERFLOW and consumes nothing', () => {
    const qs = 8;
    const { drv, dev } = setup(qs);
    const heads = post(drv, dev, ['a', 'b']);
    dev.setUsedIdx(3);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_RING_RSP_OVERFLOW' });
    dev.setUsedIdx(0x8000);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_RING_RSP_OVERFLOW' });
    dev.setUsedIdx(0);
    for (const h of heads) dev.complete(h, 16);
    assert.equal(drv.getUsed()?.token, 'a');
    assert.equal(drv.getUsed()?.token, 'b');
    assertHealthy(drv, dev, qs);
  });

  it('a len beyond the chain’s writable bytes is a UsedLenError carrying the token; the chain is freed', () => {
    const qs = 4;
    const { drv, dev } = setup(qs);
    const [h] = post(drv, dev, ['a']);
    const [r] = (() => {
      drv.addChain([buf(DATA, 8)], [], 'read-only');
      drv.publish();
      return [dev.pop()?.head ?? -1];
    })();
    dev.complete(h, 17);
    assert.throws(
      () => drv.getUsed(),
      (e: unknown) => e instanceof UsedLenError && e.code === 'PV_ERR_VIRTQ_BAD_DESC' && e.token === 'a',
    );
    dev.complete(r, 0xffff_ffff);
    assert.throws(
      () => drv.getUsed(),
      (e: unknown) => e instanceof UsedLenError && e.token === 'read-only',
    );
    assertHealthy(drv, dev, qs);
  });

  it('a device scribbling over the descriptor table cannot make the driver free the wrong descriptors', () => {
    const qs = 8;
    const { drv, dev } = setup(qs);
    drv.addChain([buf(DATA, 1), buf(DATA, 1), buf(DATA, 1)], [], 'three');
    drv.publish();
    const p = dev.pop();
    assert.ok(p !== undefined);
    for (let i = 0; i < qs; i++) {
      dev.dv.setUint16(BASE + 16 * i + 12, 1, true);
      dev.dv.setUint16(BASE + 16 * i + 14, p.head, true);
    }
    dev.complete(p.head, 0);
    assert.equal(drv.getUsed()?.token, 'three');
    assertHealthy(drv, dev, qs);
  });
});

describe('virtio split driver: indirect descriptors (VIRTIO_F_INDIRECT_DESC)', () => {
  it('the chain goes into the caller’s table; the ring holds one INDIRECT descriptor', () => {
    const qs = 4;
    const { mem, drv, dev } = setup(qs, { indirect: true });
    const table = guestPhysAddr(DATA + 8192);
    const head = drv.addChain([buf(DATA, 10), buf(DATA + 16, 20)], [buf(DATA + 64, 30)], 'ind', table);
    assert.equal(drv.numFree, qs - 1);
    const dv = new DataView(mem);
    const at = BASE + 16 * head;
    assert.equal(Number(dv.getBigUint64(at, true)), table);
    assert.equal(dv.getUint32(at + 8, true), 48);
    assert.equal(dv.getUint16(at + 12, true), 4);
    assert.deepEqual(
      [0, 1, 2].map((k) => [dv.getUint16(table + 16 * k + 12, true), dv.getUint16(table + 16 * k + 14, true)]),
      [
        [1, 1],
        [1, 2],
        [2, 0],
      ],
    );
    drv.publish();
    const p = dev.pop();
    assert.deepEqual(p?.bufs, [
      { addr: DATA, len: 10, write: false },
      { addr: DATA + 16, len: 20, write: false },
      { addr: DATA + 64, len: 30, write: true },
    ]);
    dev.complete(head, 31);
    assert.throws(() => drv.getUsed(), { code: 'PV_ERR_VIRTQ_BAD_DESC' }, 'writable bytes counted through the table');
    assert.equal(drv.numFree, qs);
  });

  it('a misaligned table, one outside memory or one overlapping the queue is PV_ERR_INVALID_ARG', () => {
    const { drv } = setup(4, { indirect: true });
    const one = [buf(DATA, 1)];
    assert.throws(() => drv.addChain(one, [], 'x', guestPhysAddr(DATA + 8)), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.addChain([...one, ...one], [], 'x', guestPhysAddr(MEM_BYTES - 16)), {
      code: 'PV_ERR_INVALID_ARG',
    });
    assert.throws(() => drv.addChain(one, [], 'x', guestPhysAddr(BASE)), { code: 'PV_ERR_INVALID_ARG' });
    assert.equal(drv.numFree, 4);
  });
});
