import assert from 'node:assert/strict';
import {
  availFlags,
  checkPackedQueueSize,
  isDescAvail,
  isDescUsed,
  PackedDescOffset,
  PackedEventOffset,
  packEventDesc,
  packedLayout,
  packedNeedEvent,
  packedNotifyNeeded,
  usedFlags,
  VIRTQ_PACKED_ALIGN,
  VIRTQ_PACKED_DESC_BYTES,
  VIRTQ_PACKED_DESC_F_AVAIL,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_USED,
  VIRTQ_PACKED_DESC_F_WRITE,
  VIRTQ_PACKED_EVENT_BYTES,
  VIRTQ_PACKED_MAX_SIZE,
  VRING_PACKED_EVENT_F_WRAP_CTR,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
  VRING_PACKED_EVENT_FLAG_ENABLE,
} from '../../../protocol/virtio/PackedRing.js';
import { structLayout } from './StructLayout.js';

/** VIRTIO 1.2 §2.8.13 `struct pvirtq_desc` and `struct pvirtq_event_suppress`, field by field. */
const PVIRTQ_DESC = [
  ['addr', 8],
  ['len', 4],
  ['id', 2],
  ['flags', 2],
] as const;
const PVIRTQ_EVENT = [
  ['desc', 2],
  ['flags', 2],
] as const;

describe('packed virtqueue layout: offsets match the VIRTIO 1.2 struct definitions', () => {
  it('pvirtq_desc {le64 addr; le32 len; le16 id; le16 flags} is 16 bytes at PackedDescOffset', () => {
    const { off, size } = structLayout(PVIRTQ_DESC);
    assert.equal(VIRTQ_PACKED_DESC_BYTES, size);
    assert.deepEqual(
      [PackedDescOffset.ADDR, PackedDescOffset.LEN, PackedDescOffset.ID, PackedDescOffset.FLAGS],
      [off.addr, off.len, off.id, off.flags],
    );
  });

  it('pvirtq_event_suppress {le16 desc (off:15 | wrap:1); le16 flags} is 4 bytes at PackedEventOffset', () => {
    const { off, size } = structLayout(PVIRTQ_EVENT);
    assert.equal(VIRTQ_PACKED_EVENT_BYTES, size);
    assert.deepEqual([PackedEventOffset.DESC, PackedEventOffset.FLAGS], [off.desc, off.flags]);
    assert.equal(VRING_PACKED_EVENT_F_WRAP_CTR, 15);
    assert.deepEqual(
      [VRING_PACKED_EVENT_FLAG_ENABLE, VRING_PACKED_EVENT_FLAG_DISABLE, VRING_PACKED_EVENT_FLAG_DESC],
      [0, 1, 2],
    );
  });

  it('flag bits: NEXT 1, WRITE 2, INDIRECT 4, AVAIL 1<<7, USED 1<<15', () => {
    assert.deepEqual(
      [
        VIRTQ_PACKED_DESC_F_NEXT,
        VIRTQ_PACKED_DESC_F_WRITE,
        VIRTQ_PACKED_DESC_F_INDIRECT,
        VIRTQ_PACKED_DESC_F_AVAIL,
        VIRTQ_PACKED_DESC_F_USED,
      ],
      [1, 2, 4, 128, 32768],
    );
  });

  for (const qs of [1, 2, 3, 256, 32768]) {
    it(`QS=${qs}: ring at 0 (align 16), driver then device event structure (align 4), disjoint`, () => {
      const l = packedLayout(qs);
      assert.deepEqual(VIRTQ_PACKED_ALIGN, { desc: 16, driverEvent: 4, deviceEvent: 4 });
      assert.equal(l.desc, 0);
      assert.equal(l.driverEvent % 4, 0);
      assert.equal(l.deviceEvent % 4, 0);
      assert.ok(l.driverEvent >= 16 * qs);
      assert.ok(l.deviceEvent >= l.driverEvent + 4);
      assert.equal(l.bytes, l.deviceEvent + 4);
    });
  }

  it('sizes: any integer in [1, 2^15]; 0, 32769, 1.5, -1 are PV_ERR_VIRTQ_LAYOUT', () => {
    assert.equal(VIRTQ_PACKED_MAX_SIZE, 32768);
    for (const ok of [1, 3, 1000, 32768]) assert.doesNotThrow(() => checkPackedQueueSize(ok));
    for (const bad of [0, 32769, 65536, 1.5, -1, Number.NaN]) {
      assert.throws(() => checkPackedQueueSize(bad), { code: 'PV_ERR_VIRTQ_LAYOUT' });
      assert.throws(() => packedLayout(bad), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    }
  });

  it('a ring and event structures encoded with DataView read back through the offset tables', () => {
    const qs = 5;
    const l = packedLayout(qs);
    const sab = new SharedArrayBuffer(l.bytes);
    const dv = new DataView(sab);
    const d = structLayout(PVIRTQ_DESC).off;
    const ev = structLayout(PVIRTQ_EVENT).off;
    for (let i = 0; i < qs; i++) {
      dv.setBigUint64(16 * i + d.addr, 0xfeed_0000_0000n + BigInt(i), true);
      dv.setUint32(16 * i + d.len, 0xffff_fff0 + i, true);
      dv.setUint16(16 * i + d.id, 0x8000 + i, true);
      dv.setUint16(16 * i + d.flags, availFlags(i % 2 === 0, true, i < qs - 1), true);
    }
    dv.setUint16(l.driverEvent + ev.desc, (1 << 15) | 3, true);
    dv.setUint16(l.driverEvent + ev.flags, 2, true);
    dv.setUint16(l.deviceEvent + ev.desc, 4, true);
    dv.setUint16(l.deviceEvent + ev.flags, 1, true);
    const u16 = new Uint16Array(sab);
    const u32 = new Uint32Array(sab);
    for (let i = 0; i < qs; i++) {
      const at = 16 * i;
      const addr = u32[(at + PackedDescOffset.ADDR) >> 2] + u32[((at + PackedDescOffset.ADDR) >> 2) + 1] * 2 ** 32;
      assert.equal(addr, 0xfeed_0000_0000 + i);
      assert.equal(u32[(at + PackedDescOffset.LEN) >> 2], 0xffff_fff0 + i);
      assert.equal(u16[(at + PackedDescOffset.ID) >> 1], 0x8000 + i);
      const flags = Atomics.load(u16, (at + PackedDescOffset.FLAGS) >> 1);
      assert.equal(isDescAvail(flags, i % 2 === 0), true);
      assert.equal((flags & VIRTQ_PACKED_DESC_F_NEXT) !== 0, i < qs - 1);
    }
    assert.equal(u16[(l.driverEvent + PackedEventOffset.DESC) >> 1], packEventDesc(3, true));
    assert.equal(u16[(l.driverEvent + PackedEventOffset.FLAGS) >> 1], VRING_PACKED_EVENT_FLAG_DESC);
    assert.equal(u16[(l.deviceEvent + PackedEventOffset.DESC) >> 1], packEventDesc(4, false));
    assert.equal(u16[(l.deviceEvent + PackedEventOffset.FLAGS) >> 1], VRING_PACKED_EVENT_FLAG_DISABLE);
  });
});

describe('packed virtqueue: wrap counters decide available and used', () => {
  it('availFlags: wrap 1 → AVAIL set, USED clear; wrap 0 → AVAIL clear, USED set; WRITE and NEXT as asked', () => {
    assert.equal(availFlags(true, false, false), VIRTQ_PACKED_DESC_F_AVAIL);
    assert.equal(availFlags(false, false, false), VIRTQ_PACKED_DESC_F_USED);
    assert.equal(availFlags(true, true, true), VIRTQ_PACKED_DESC_F_AVAIL | 2 | 1);
    assert.equal(usedFlags(true), VIRTQ_PACKED_DESC_F_AVAIL | VIRTQ_PACKED_DESC_F_USED);
    assert.equal(usedFlags(false), 0);
  });

  it('every AVAIL/USED combination against both wrap counters (the spec table)', () => {
    // [avail bit, used bit, wrap] → [available?, used?]; avail = (A == wrap && U != wrap), used = (A == U == wrap).
    const table: Array<[number, number, boolean, boolean, boolean]> = [
      [1, 0, true, true, false],
      [0, 1, true, false, false],
      [1, 1, true, false, true],
      [0, 0, true, false, false],
      [0, 1, false, true, false],
      [1, 0, false, false, false],
      [0, 0, false, false, true],
      [1, 1, false, false, false],
    ];
    for (const [a, u, wrap, avail, used] of table) {
      const flags = (a ? VIRTQ_PACKED_DESC_F_AVAIL : 0) | (u ? VIRTQ_PACKED_DESC_F_USED : 0) | 7;
      assert.equal(isDescAvail(flags, wrap), avail, `A=${a} U=${u} wrap=${wrap} available`);
      assert.equal(isDescUsed(flags, wrap), used, `A=${a} U=${u} wrap=${wrap} used`);
    }
  });

  it('a slot the driver made available is not used, and becomes used once the device writes usedFlags', () => {
    for (const wrap of [true, false]) {
      const f = availFlags(wrap, true, false);
      assert.equal(isDescAvail(f, wrap), true);
      assert.equal(isDescUsed(f, wrap), false);
      assert.equal(isDescAvail(f, !wrap), false, 'stale from the other lap: not available');
      const g = usedFlags(wrap) | (f & ~(VIRTQ_PACKED_DESC_F_AVAIL | VIRTQ_PACKED_DESC_F_USED));
      assert.equal(isDescUsed(g, wrap), true);
      assert.equal(isDescAvail(g, wrap), false);
    }
  });
});

describe('packed virtqueue: packedNeedEvent with the wrap bit', () => {
  /** Wrap counter of absolute position p (counters start at 1 and flip each lap). */
  const wrapOf = (p: number, qs: number) => Math.floor(p / qs) % 2 === 0;

  it('for QS 1, 3, 4, 8: every event within one lap of new, every batch size, many starting positions', () => {
    let checked = 0;
    for (const qs of [1, 3, 4, 8]) {
      for (let pNew = 0; pNew < 4 * qs + 2; pNew++) {
        for (let count = 0; count <= Math.min(qs, pNew); count++) {
          for (let e = pNew - qs; e < pNew + qs; e++) {
            if (e < 0) continue;
            const offWrap = packEventDesc(e % qs, wrapOf(e, qs));
            const got = packedNeedEvent(offWrap, pNew % qs, wrapOf(pNew, qs), count, qs);
            const want = e >= pNew - count && e < pNew;
            assert.equal(got, want, `qs ${qs} new ${pNew} count ${count} event ${e}`);
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 1000);
  });

  it('a batch of exactly QS slots notifies for any event in the lap it covered (not mistaken for empty)', () => {
    const qs = 4;
    for (let e = 0; e < qs; e++) {
      // The driver went from position 0 (wrap 1) round to position 0 (wrap 0).
      assert.equal(packedNeedEvent(packEventDesc(e, true), 0, false, qs, qs), true, `event ${e}`);
    }
  });

  it('packedNotifyNeeded: ENABLE always, DISABLE never, DESC by the event, nothing published → no notify', () => {
    const ow = packEventDesc(2, true);
    assert.equal(packedNotifyNeeded(VRING_PACKED_EVENT_FLAG_ENABLE, ow, 1, true, 1, 8), true);
    assert.equal(packedNotifyNeeded(VRING_PACKED_EVENT_FLAG_DISABLE, ow, 3, true, 3, 8), false);
    assert.equal(packedNotifyNeeded(VRING_PACKED_EVENT_FLAG_DESC, ow, 3, true, 3, 8), true);
    assert.equal(packedNotifyNeeded(VRING_PACKED_EVENT_FLAG_DESC, ow, 2, true, 2, 8), false);
    assert.equal(packedNotifyNeeded(VRING_PACKED_EVENT_FLAG_ENABLE, ow, 3, true, 0, 8), false);
    assert.equal(packedNotifyNeeded(3, ow, 3, true, 1, 8), true, 'unknown flags: notify (spurious is harmless)');
  });
});
