/**
 * The device side of a packed queue (VIRTIO 1.2 §2.8, reference §5.2, §6): attach validation,
 * only the next slot is looked at and only if available for the device's wrap counter, chains
 * that wrap, every refusal (→ broken until reset), used descriptors and the interrupt decision,
 * and a concurrent mutator Worker rewriting the ring while the device walks it (decisions on ONE
 * copy: segments inside guest memory, readable first, only VirtioErrors).
 */

import assert from 'node:assert/strict';
import { PackedDevice, type PackedQueueAddrs } from '../../../backend/virtio/PackedDevice.js';
import type { SplitFeatures } from '../../../backend/virtio/SplitDevice.js';
import { Mutator } from '../../../fuzz/core/Mutator.js';
import { GuestRam } from '../../../fuzz/virtq/GuestRam.js';
import { guestPhysAddr as g } from '../../../protocol/Types.js';
import { assertIovecInside, virtioCode as code } from './VirtioAsserts.js';

const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const F_AVAIL = 0x80;
const F_USED = 0x8000;
const PLAIN: SplitFeatures = { indirectDesc: false, eventIdx: false };
const ALL: SplitFeatures = { indirectDesc: true, eventIdx: true };
/** RAM [0, 32 KiB) at backing 0, read-only [64 KiB, +4 KiB) at backing 32 KiB. */
const RO = 0x10000;
const RING = 0x1000;
const DRV_EV = 0x0f00;
const DEV_EV = 0x0f10;

interface D {
  addr: number;
  len: number;
  write?: boolean;
  indirect?: boolean;
  next?: boolean;
  id?: number;
}

/** A guest writing the ring by hand, from the spec (driver wrap counter, head flags last). */
class Guest {
  pos = 0;
  wrap = true;
  constructor(
    readonly ram: GuestRam,
    readonly qs: number,
  ) {}
  get addrs(): PackedQueueAddrs {
    return { size: this.qs, desc: g(RING), driverEvent: g(DRV_EV), deviceEvent: g(DEV_EV) };
  }
  put(at: number, d: D, flags: number): void {
    const dv = this.ram.dv;
    const o = this.ram.off(at);
    dv.setUint32(o, d.addr % 2 ** 32, true);
    dv.setUint32(o + 4, Math.floor(d.addr / 2 ** 32), true);
    dv.setUint32(o + 8, d.len, true);
    dv.setUint16(o + 12, d.id ?? 0, true);
    dv.setUint16(o + 14, flags, true);
  }
  static flags(d: D, more: boolean): number {
    return (d.write ? F_WRITE : 0) | (d.indirect ? F_INDIRECT : 0) | (more || d.next ? F_NEXT : 0);
  }
  /** Makes `ds` available as one chain with buffer id `id` (NEXT on all but the last). */
  chain(ds: D[], id: number): void {
    let headFlags = 0;
    for (let k = 0; k < ds.length; k++) {
      const f = Guest.flags(ds[k], k < ds.length - 1) | (this.wrap ? F_AVAIL : F_USED);
      if (k === 0) headFlags = f;
      this.put(RING + 16 * this.pos, { ...ds[k], id }, k === 0 ? 0 : f);
      if (++this.pos === this.qs) {
        this.pos = 0;
        this.wrap = !this.wrap;
      }
    }
    this.ram.dv.setUint16(this.ram.off(RING + 16 * ((this.pos - ds.length + this.qs) % this.qs)) + 14, headFlags, true);
  }
  /** Writes an indirect table at `at`. */
  table(at: number, ds: D[]): void {
    ds.forEach((d, k) => {
      this.put(at + 16 * k, d, Guest.flags(d, false));
    });
  }
  used(slot: number): { id: number; len: number; flags: number } {
    const o = this.ram.off(RING + 16 * slot);
    const dv = this.ram.dv;
    return { id: dv.getUint16(o + 12, true), len: dv.getUint32(o + 8, true), flags: dv.getUint16(o + 14, true) };
  }
  setDriverEvent(flags: number, desc = 0): void {
    this.ram.dv.setUint16(this.ram.off(DRV_EV), desc, true);
    this.ram.dv.setUint16(this.ram.off(DRV_EV) + 2, flags, true);
  }
  deviceEvent(): { desc: number; flags: number } {
    const o = this.ram.off(DEV_EV);
    return { desc: this.ram.dv.getUint16(o, true), flags: this.ram.dv.getUint16(o + 2, true) };
  }
}

function setup(qs: number, features = PLAIN) {
  const ram = new GuestRam(0x9000, [
    { gpa: 0, size: 0x8000, offset: 0 },
    { gpa: RO, size: 0x1000, offset: 0x8000, readOnly: true },
  ]);
  const gq = new Guest(ram, qs);
  const dev = new PackedDevice(ram.map(), features);
  dev.attach(gq.addrs);
  return { ram, gq, dev, iov: dev.newIovecList() };
}

describe('PackedDevice: attach validates the queue placement (PV_ERR_VIRTQ_LAYOUT)', () => {
  it('QS 1..32768 (any integer), areas aligned 16/4/4, inside memory, ring and device event writable, disjoint', () => {
    const ram = new GuestRam(0x9000, [
      { gpa: 0, size: 0x8000, offset: 0 },
      { gpa: RO, size: 0x1000, offset: 0x8000, readOnly: true },
    ]);
    const map = ram.map();
    const at = (size: number, desc: number, drv: number, dv: number) => () =>
      new PackedDevice(map, PLAIN).attach({ size, desc: g(desc), driverEvent: g(drv), deviceEvent: g(dv) });
    for (const bad of [
      at(0, RING, DRV_EV, DEV_EV),
      at(32769, RING, DRV_EV, DEV_EV),
      at(8, RING + 8, DRV_EV, DEV_EV),
      at(8, RING, DRV_EV + 2, DEV_EV),
      at(8, RING, DRV_EV, DEV_EV + 2),
      at(8, 0x7ff0, DRV_EV, DEV_EV),
      at(8, RO, DRV_EV, DEV_EV),
      at(8, RING, DRV_EV, RO),
      at(8, RING, RING + 0x40, DEV_EV),
      at(8, RING, DRV_EV, DRV_EV),
      at(8, RING, DRV_EV, 0x20000),
    ]) {
      assert.equal(code(bad), 'PV_ERR_VIRTQ_LAYOUT');
    }
    assert.equal(code(at(3, RING, RO, DEV_EV)), 'no error', 'the driver event may be read-only; QS 3 is fine');
    assert.equal(code(at(32768, 0, 0x7ff8, 0x7ffc)), 'PV_ERR_VIRTQ_LAYOUT', '512 KiB ring');
  });
});

describe('PackedDevice: pop looks only at the next slot, for the current wrap', () => {
  it('a slot not available for the device wrap is not consumed: zero, used, and lap-2 flags all pop nothing', () => {
    const { gq, dev, iov } = setup(4);
    assert.equal(dev.pop(iov), -1, 'all-zero ring');
    for (const f of [F_USED, F_AVAIL | F_USED, 0]) {
      gq.put(RING, { addr: 0x2000, len: 8, id: 0 }, f);
      assert.equal(dev.pop(iov), -1, `flags 0x${f.toString(16)}`);
      assert.deepEqual(dev.availPosition, { pos: 0, wrap: true });
    }
    gq.put(RING + 16, { addr: 0x2000, len: 8, id: 1 }, F_AVAIL);
    assert.equal(dev.pop(iov), -1, 'slot 1 is available but slot 0 is not: never looked at');
  });

  it('a chain is popped with its buffers, the id of its last slot, and used back as ONE descriptor (flags last)', () => {
    const { gq, dev, iov } = setup(8);
    gq.chain(
      [
        { addr: 0x2000, len: 10 },
        { addr: RO, len: 20 },
        { addr: 0x3000, len: 30, write: true },
      ],
      5,
    );
    assert.equal(dev.pop(iov), 5);
    assert.deepEqual([iov.readableCount, iov.readableBytes, iov.writableCount, iov.writableBytes], [2, 30, 1, 30]);
    assert.deepEqual(dev.availPosition, { pos: 3, wrap: true });
    assert.throws(() => dev.pushUsed(5, 31), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => dev.pushUsed(4, 0), { code: 'PV_ERR_INVALID_ARG' });
    assert.equal(dev.pushUsed(5, 30), true, 'driver event ENABLE');
    assert.deepEqual(gq.used(0), { id: 5, len: 30, flags: F_AVAIL | F_USED });
    assert.deepEqual(dev.usedPosition, { pos: 3, wrap: true });
    assert.throws(() => dev.pushUsed(5, 0), { code: 'PV_ERR_INVALID_ARG' }, 'completed once only');
  });

  it('a chain whose slots run past the ring end wraps with the wrap counter; used descriptors follow', () => {
    const { gq, dev, iov } = setup(3);
    for (let n = 0; n < 30; n++) {
      const len = 1 + (n % 3 === 0 ? 1 : 0);
      gq.chain(
        Array.from({ length: len }, (_, k) => ({ addr: 0x2000 + k, len: 1, write: k === len - 1 })),
        n % 3,
      );
      const before = dev.usedPosition;
      assert.equal(dev.pop(iov), n % 3, `chain ${n}`);
      assert.deepEqual(dev.availPosition, { pos: gq.pos, wrap: gq.wrap });
      dev.pushUsed(n % 3, 1);
      const u = gq.used(before.pos);
      assert.equal(u.flags, before.wrap ? F_AVAIL | F_USED : 0);
    }
  });

  it('interrupts follow the driver event: DISABLE → no, DESC → only when the used batch covers its position', () => {
    const { gq, dev, iov } = setup(4, ALL);
    const one = (id: number) => {
      gq.chain([{ addr: 0x3000, len: 4, write: true }], id);
      assert.equal(dev.pop(iov), id);
    };
    assert.deepEqual(gq.deviceEvent(), { desc: 0x8000, flags: 2 }, 'EVENT_IDX: DESC at the avail position');
    gq.setDriverEvent(1);
    one(0);
    assert.deepEqual(gq.deviceEvent(), { desc: 0x8001, flags: 2 }, 're-armed after the pop');
    assert.equal(dev.pushUsed(0, 0), false);
    gq.setDriverEvent(2, 0x8002);
    one(1);
    assert.equal(dev.pushUsed(1, 0), false, 'slot 1 used; the driver asked for slot 2');
    one(2);
    assert.equal(dev.pushUsed(2, 0), true);
    assert.equal(dev.publishUsed(), false, 'nothing new');
  });
});

describe('PackedDevice: every refusal breaks the queue until reset', () => {
  const cases: Array<[string, SplitFeatures, (gq: Guest) => void, string]> = [
    [
      'a chain longer than QS (NEXT on every slot: the TTL)',
      PLAIN,
      (gq) =>
        gq.chain(
          [0, 1, 2, 3].map(() => ({ addr: 0x2000, len: 1, next: true })),
          0,
        ),
      'PV_ERR_VIRTQ_LOOP',
    ],
    [
      'a readable buffer after a writable one',
      PLAIN,
      (gq) =>
        gq.chain(
          [
            { addr: 0x2000, len: 1, write: true },
            { addr: 0x2000, len: 1 },
          ],
          0,
        ),
      'PV_ERR_VIRTQ_DIRECTION',
    ],
    [
      'INDIRECT without the feature',
      PLAIN,
      (gq) => gq.chain([{ addr: 0x4000, len: 16, indirect: true }], 0),
      'PV_ERR_VIRTQ_BAD_DESC',
    ],
    [
      'INDIRECT with NEXT',
      ALL,
      (gq) =>
        gq.chain(
          [
            { addr: 0x4000, len: 16, indirect: true, next: true },
            { addr: 0x2000, len: 1 },
          ],
          0,
        ),
      'PV_ERR_VIRTQ_BAD_DESC',
    ],
    ['an empty table', ALL, (gq) => gq.chain([{ addr: 0x4000, len: 0, indirect: true }], 0), 'PV_ERR_VIRTQ_BAD_DESC'],
    [
      'a table length not a multiple of 16',
      ALL,
      (gq) => gq.chain([{ addr: 0x4000, len: 24, indirect: true }], 0),
      'PV_ERR_VIRTQ_BAD_DESC',
    ],
    [
      'a table of more than QS entries',
      ALL,
      (gq) => gq.chain([{ addr: 0x4000, len: 16 * 5, indirect: true }], 0),
      'PV_ERR_VIRTQ_BAD_DESC',
    ],
    [
      'a nested indirect table',
      ALL,
      (gq) => {
        gq.table(0x4000, [
          { addr: 0x2000, len: 1 },
          { addr: 0x5000, len: 16, indirect: true },
        ]);
        gq.chain([{ addr: 0x4000, len: 32, indirect: true }], 0);
      },
      'PV_ERR_VIRTQ_BAD_DESC',
    ],
    [
      'a table readable after writable',
      ALL,
      (gq) => {
        gq.table(0x4000, [
          { addr: 0x2000, len: 1, write: true },
          { addr: 0x2000, len: 1 },
        ]);
        gq.chain([{ addr: 0x4000, len: 32, indirect: true }], 0);
      },
      'PV_ERR_VIRTQ_DIRECTION',
    ],
    [
      'a table outside memory',
      ALL,
      (gq) => gq.chain([{ addr: 0x7ff0, len: 32, indirect: true }], 0),
      'PV_ERR_VIRTQ_BAD_ADDR',
    ],
    ['a buffer past the end of RAM', PLAIN, (gq) => gq.chain([{ addr: 0x7fff, len: 2 }], 0), 'PV_ERR_VIRTQ_BAD_ADDR'],
    ['a buffer in a hole', PLAIN, (gq) => gq.chain([{ addr: 0x9000, len: 1 }], 0), 'PV_ERR_VIRTQ_BAD_ADDR'],
    ['an address past 2^53', PLAIN, (gq) => gq.chain([{ addr: 2 ** 53, len: 1 }], 0), 'PV_ERR_VIRTQ_BAD_ADDR'],
    ['a huge length', PLAIN, (gq) => gq.chain([{ addr: 0x2000, len: 0xffffffff }], 0), 'PV_ERR_VIRTQ_BAD_ADDR'],
    [
      'a writable buffer in read-only memory',
      PLAIN,
      (gq) => gq.chain([{ addr: RO, len: 16, write: true }], 0),
      'PV_ERR_VIRTQ_BAD_ADDR',
    ],
    ['a buffer id ≥ QS', PLAIN, (gq) => gq.chain([{ addr: 0x2000, len: 1 }], 4), 'PV_ERR_VIRTQ_BAD_DESC'],
  ];
  for (const [what, features, write, want] of cases) {
    it(`${what} → ${want}`, () => {
      const { gq, dev, iov } = setup(4, features);
      write(gq);
      assert.equal(
        code(() => dev.pop(iov)),
        want,
      );
      assert.equal(dev.broken, true);
      assert.equal(dev.brokenBy, want);
      assert.equal(
        code(() => dev.pop(iov)),
        'PV_ERR_VIRTIO_NEEDS_RESET',
      );
      assert.equal(
        code(() => dev.pushUsed(0, 0)),
        'PV_ERR_VIRTIO_NEEDS_RESET',
      );
      dev.reset();
      new Uint8Array(gq.ram.sab).fill(0, gq.ram.off(RING), gq.ram.off(RING) + 64);
      gq.pos = 0;
      gq.wrap = true;
      dev.attach(gq.addrs);
      gq.chain([{ addr: 0x2000, len: 1 }], 1);
      assert.equal(dev.pop(iov), 1, 'served again after reset and attach');
    });
  }

  it('an id still outstanding is refused (the per-id record must stay unambiguous)', () => {
    const { gq, dev, iov } = setup(4);
    gq.chain([{ addr: 0x2000, len: 1 }], 2);
    assert.equal(dev.pop(iov), 2);
    gq.chain([{ addr: 0x2000, len: 1 }], 2);
    assert.equal(
      code(() => dev.pop(iov)),
      'PV_ERR_VIRTQ_BAD_DESC',
    );
  });

  it('a good indirect chain passes; its table descriptor WRITE flag is ignored', () => {
    const { gq, dev, iov } = setup(4, ALL);
    gq.table(0x4000, [
      { addr: 0x2000, len: 3 },
      { addr: 0x3000, len: 5, write: true },
    ]);
    gq.chain([{ addr: 0x4000, len: 32, indirect: true, write: true }], 3);
    assert.equal(dev.pop(iov), 3);
    assert.deepEqual([iov.readableBytes, iov.writableBytes], [3, 5]);
    assert.deepEqual(dev.availPosition, { pos: 1, wrap: true }, 'one slot');
  });

  it('a chain of exactly 2^32 bytes passes; one byte more is PV_ERR_VIRTQ_TOO_LONG', () => {
    const qs = 32768;
    const ram = GuestRam.flat(16 * qs + 0x30000);
    const gq = new Guest(ram, qs);
    const addrs = { size: qs, desc: g(RING), driverEvent: g(DRV_EV), deviceEvent: g(DEV_EV) };
    const buf = 16 * qs + 0x2000;
    const ds = Array.from({ length: qs }, () => ({ addr: buf, len: 2 ** 17 }));
    let dev = new PackedDevice(ram.map(), PLAIN);
    dev.attach(addrs);
    const iov = dev.newIovecList();
    gq.chain(ds, 0);
    assert.equal(dev.pop(iov), 0);
    assert.equal(iov.readableBytes, 2 ** 32);
    dev = new PackedDevice(ram.map(), PLAIN);
    dev.attach(addrs);
    gq.pos = 0;
    gq.wrap = true;
    ds[qs - 1] = { addr: buf, len: 2 ** 17 + 1 };
    gq.chain(ds, 0);
    assert.equal(
      code(() => dev.pop(iov)),
      'PV_ERR_VIRTQ_TOO_LONG',
    );
  });
});

describe('PackedDevice: a concurrent mutator rewrites the ring while the device walks it', function () {
  this.timeout(60_000);
  let mut: Mutator | undefined;
  after(async () => mut?.stop());

  it('every decision is taken on one copy: segments inside memory, readable first, only VirtioErrors', () => {
    const qs = 16;
    const ram = new GuestRam(0xa000, [
      { gpa: 0, size: 0x8000, offset: 0x1000 },
      { gpa: RO, size: 0x1000, offset: 0x9000, readOnly: true },
    ]);
    ram.armHoles(9);
    ram.bytes(RO, 0x1000).fill(0xa5);
    const gq = new Guest(ram, qs);
    const dev = new PackedDevice(ram.map(), ALL);
    const fresh = (): void => {
      dev.reset();
      ram.bytes(RING, 16 * qs).fill(0);
      gq.pos = 0;
      gq.wrap = true;
      dev.attach(gq.addrs);
    };
    fresh();
    gq.table(0x4000, [
      { addr: RO, len: 32 },
      { addr: 0x5000, len: 32, write: true },
    ]);
    mut = Mutator.start(ram.sab);
    mut.run(
      [
        { word: ram.off(RING) >> 2, words: (16 * qs) >> 2 },
        { word: ram.off(0x4000) >> 2, words: 8 },
      ],
      4321,
    );
    const iov = dev.newIovecList();
    const fill = new Uint8Array(256).fill(0x3c);
    let served = 0;
    let refused = 0;
    let n = 0;
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline || served + refused < 2000) {
      n++;
      if (n % 5 === 0) gq.chain([{ addr: 0x4000, len: 32, indirect: true }], n % qs);
      else {
        gq.chain(
          [
            { addr: RO + 64 * (n % 8), len: 64 },
            { addr: 0x2000 + 64 * (n % 16), len: 64, write: true },
          ],
          n % qs,
        );
      }
      let id: number;
      try {
        id = dev.pop(iov);
      } catch (err) {
        assert.equal((err as Error).name, 'VirtioError', String(err));
        assert.match((err as { code: string }).code, /^PV_ERR_VIRTQ_/);
        refused++;
        fresh();
        continue;
      }
      if (id < 0) {
        // The head's flags were scribbled: not consumed. Restart the guest's ring from scratch.
        fresh();
        continue;
      }
      assertIovecInside(iov, ram);
      iov.write(0, fill, 0, fill.length);
      dev.pushUsed(id, Math.min(fill.length, iov.writableBytes));
      served++;
    }
    assert.equal(mut.pause(), true);
    assert.ok(mut.writes > 0, 'the mutator ran');
    assert.ok(served > 0 && refused > 0, `served ${served}, refused ${refused}: both outcomes seen`);
    assert.equal(ram.checkHoles(), -1, 'no byte outside guest memory changed');
    assert.ok(
      ram.bytes(RO, 0x1000).every((b) => b === 0xa5),
      'the read-only region was never written',
    );
  });
});
