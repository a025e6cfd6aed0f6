import assert from 'node:assert/strict';
import {
  AvailOffset,
  availEventOffset,
  availRingBytes,
  checkQueueSize,
  DescOffset,
  descTableBytes,
  HOST_IS_LITTLE_ENDIAN,
  splitLayout,
  UsedElemOffset,
  UsedOffset,
  usedEventOffset,
  usedRingBytes,
  VIRTQ_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_MAX_SIZE,
  VIRTQ_USED_ELEM_BYTES,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from '../../../protocol/virtio/SplitRing.js';
import { structLayout } from './StructLayout.js';

/**
 * The VIRTIO 1.2 §2.7 structs as written in the spec, field by field (name, bytes), packed in
 * order: every field is naturally aligned there, so C lays them out with no padding. Offsets
 * below are derived from these lists, not from SplitRing.ts.
 */
type Field = readonly [name: string, bytes: number];
const VIRTQ_DESC: readonly Field[] = [
  ['addr', 8],
  ['len', 4],
  ['flags', 2],
  ['next', 2],
];
const VIRTQ_USED_ELEM: readonly Field[] = [
  ['id', 4],
  ['len', 4],
];
const virtqAvail = (qs: number): Field[] => [
  ['flags', 2],
  ['idx', 2],
  ['ring', 2 * qs],
  ['used_event', 2],
];
const virtqUsed = (qs: number): Field[] => [
  ['flags', 2],
  ['idx', 2],
  ['ring', 8 * qs],
  ['avail_event', 2],
];

const SIZES = [1, 2, 256, 32768];

describe('split virtqueue layout: offsets match the VIRTIO 1.2 struct definitions', () => {
  it('the host is little-endian (the typed-array views read le fields right)', () => {
    assert.equal(HOST_IS_LITTLE_ENDIAN, true);
  });

  it('virtq_desc {le64 addr; le32 len; le16 flags; le16 next} is 16 bytes at DescOffset', () => {
    const { off, size } = structLayout(VIRTQ_DESC);
    assert.equal(VIRTQ_DESC_BYTES, size);
    assert.deepEqual(
      [DescOffset.ADDR, DescOffset.LEN, DescOffset.FLAGS, DescOffset.NEXT],
      [off.addr, off.len, off.flags, off.next],
    );
    assert.deepEqual([VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT], [1, 2, 4]);
    assert.deepEqual([VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY], [1, 1]);
  });

  it('virtq_used_elem {le32 id; le32 len} is 8 bytes at UsedElemOffset', () => {
    const { off, size } = structLayout(VIRTQ_USED_ELEM);
    assert.equal(VIRTQ_USED_ELEM_BYTES, size);
    assert.deepEqual([UsedElemOffset.ID, UsedElemOffset.LEN], [off.id, off.len]);
  });

  for (const qs of SIZES) {
    it(`QS=${qs}: avail and used rings, event indices and area sizes`, () => {
      const avail = structLayout(virtqAvail(qs));
      const used = structLayout(virtqUsed(qs));
      assert.deepEqual(
        [AvailOffset.FLAGS, AvailOffset.IDX, AvailOffset.RING],
        [avail.off.flags, avail.off.idx, avail.off.ring],
      );
      assert.equal(usedEventOffset(qs), avail.off.used_event);
      assert.equal(availRingBytes(qs), avail.size);
      assert.deepEqual(
        [UsedOffset.FLAGS, UsedOffset.IDX, UsedOffset.RING],
        [used.off.flags, used.off.idx, used.off.ring],
      );
      assert.equal(availEventOffset(qs), used.off.avail_event);
      assert.equal(usedRingBytes(qs), used.size);
      assert.equal(descTableBytes(qs), VIRTQ_DESC_BYTES * qs);
    });
  }
});

describe('split virtqueue layout: splitLayout places three aligned, disjoint areas', () => {
  for (const qs of SIZES) {
    it(`QS=${qs}: desc at 0 (align 16), avail after it (align 2), used at the next 4-byte boundary`, () => {
      const l = splitLayout(qs);
      assert.equal(l.size, qs);
      assert.deepEqual(VIRTQ_ALIGN, { desc: 16, avail: 2, used: 4 });
      assert.equal(l.desc, 0);
      assert.equal(l.desc % 16, 0);
      assert.equal(l.avail % 2, 0);
      assert.equal(l.used % 4, 0);
      const descEnd = l.desc + 16 * qs;
      const availEnd = l.avail + 6 + 2 * qs;
      assert.ok(l.avail >= descEnd, 'avail starts after the descriptor table');
      assert.ok(l.used >= availEnd && l.used < availEnd + 4, 'used is the first 4-aligned offset after avail');
      assert.equal(l.bytes, l.used + 6 + 8 * qs);
    });
  }

  it('a block encoded byte by byte with DataView reads back through the offset tables', () => {
    for (const qs of [1, 2, 256]) {
      const l = splitLayout(qs);
      const sab = new SharedArrayBuffer(l.bytes + 2);
      const dv = new DataView(sab);
      // Writer: the spec's structs, little-endian, at offsets derived independently.
      const d = structLayout(VIRTQ_DESC).off;
      const a = structLayout(virtqAvail(qs)).off;
      const u = structLayout(virtqUsed(qs)).off;
      for (let i = 0; i < qs; i++) {
        const at = l.desc + 16 * i;
        dv.setBigUint64(at + d.addr, 0x1234_5678_9abc_0000n + BigInt(i), true);
        dv.setUint32(at + d.len, 0x8000_0000 + i, true);
        dv.setUint16(at + d.flags, (i % 7) + 1, true);
        dv.setUint16(at + d.next, (i + 1) % qs, true);
        dv.setUint16(l.avail + a.ring + 2 * i, qs - 1 - i, true);
        dv.setUint32(l.used + u.ring + 8 * i, 0x1000 + i, true);
        dv.setUint32(l.used + u.ring + 8 * i + 4, 0x2000 + i, true);
      }
      dv.setUint16(l.avail + a.flags, 1, true);
      dv.setUint16(l.avail + a.idx, 0xfffe, true);
      dv.setUint16(l.avail + a.used_event, 0xbeef, true);
      dv.setUint16(l.used + u.flags, 1, true);
      dv.setUint16(l.used + u.idx, 0x7001, true);
      dv.setUint16(l.used + u.avail_event, 0xcafe, true);
      // Reader: typed-array views at the SplitRing.ts offsets, as the drivers read them.
      const u16 = new Uint16Array(sab);
      const u32 = new Uint32Array(sab, 0, sab.byteLength >> 2);
      for (let i = 0; i < qs; i++) {
        const at = l.desc + 16 * i;
        const lo = u32[(at + DescOffset.ADDR) >> 2];
        const hi = u32[((at + DescOffset.ADDR) >> 2) + 1];
        assert.equal(BigInt(hi) * 2n ** 32n + BigInt(lo), 0x1234_5678_9abc_0000n + BigInt(i));
        assert.equal(u32[(at + DescOffset.LEN) >> 2], 0x8000_0000 + i);
        assert.equal(u16[(at + DescOffset.FLAGS) >> 1], (i % 7) + 1);
        assert.equal(u16[(at + DescOffset.NEXT) >> 1], (i + 1) % qs);
        assert.equal(u16[(l.avail + AvailOffset.RING + 2 * i) >> 1], qs - 1 - i);
        const e = l.used + UsedOffset.RING + VIRTQ_USED_ELEM_BYTES * i;
        assert.equal(u32[(e + UsedElemOffset.ID) >> 2], 0x1000 + i);
        assert.equal(u32[(e + UsedElemOffset.LEN) >> 2], 0x2000 + i);
      }
      assert.equal(Atomics.load(u16, (l.avail + AvailOffset.FLAGS) >> 1), 1);
      assert.equal(Atomics.load(u16, (l.avail + AvailOffset.IDX) >> 1), 0xfffe);
      assert.equal(Atomics.load(u16, (l.avail + usedEventOffset(qs)) >> 1), 0xbeef);
      assert.equal(Atomics.load(u16, (l.used + UsedOffset.FLAGS) >> 1), 1);
      assert.equal(Atomics.load(u16, (l.used + UsedOffset.IDX) >> 1), 0x7001);
      assert.equal(Atomics.load(u16, (l.used + availEventOffset(qs)) >> 1), 0xcafe);
    }
  });
});

describe('split virtqueue layout: checkQueueSize', () => {
  it('accepts every power of two in [1, 32768]', () => {
    for (let qs = 1; qs <= VIRTQ_MAX_SIZE; qs *= 2) assert.doesNotThrow(() => checkQueueSize(qs));
    assert.equal(VIRTQ_MAX_SIZE, 32768);
  });

  for (const bad of [0, 3, 65536, 1.5, -1, 6, 32767, Number.NaN]) {
    it(`rejects ${bad} with PV_ERR_VIRTQ_LAYOUT (also through splitLayout)`, () => {
      assert.throws(() => checkQueueSize(bad), { code: 'PV_ERR_VIRTQ_LAYOUT' });
      assert.throws(() => splitLayout(bad), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    });
  }
});

describe('vring_need_event: notify iff event ∈ [old, new) modulo 2^16', () => {
  /** The reference: the set of indices one batch of publishes stepped over, walked one by one. */
  function crossed(oldIdx: number, count: number): Set<number> {
    const s = new Set<number>();
    for (let k = 0; k < count; k++) s.add((oldIdx + k) % 65536);
    return s;
  }

  it('agrees with the reference for every event, for small windows around 0 and around the 65535 → 0 wrap', () => {
    const olds = [0, 1, 2, 100, 32767, 32768, 65528, 65530, 65532, 65533, 65534, 65535];
    let checked = 0;
    for (const oldIdx of olds) {
      for (let count = 0; count <= 8; count++) {
        const newIdx = (oldIdx + count) % 65536;
        const ref = crossed(oldIdx, count);
        for (let event = 0; event < 65536; event++) {
          const got = vringNeedEvent(event, newIdx, oldIdx);
          if (got !== ref.has(event)) {
            assert.fail(`event ${event}, old ${oldIdx}, new ${newIdx}: got ${got}, expected ${ref.has(event)}`);
          }
          checked++;
        }
      }
    }
    assert.equal(checked, olds.length * 9 * 65536);
  });

  it('the wrap cases spelled out: old 65534 → new 1 covers 65534, 65535 and 0, not 1', () => {
    assert.equal(vringNeedEvent(65534, 1, 65534), true);
    assert.equal(vringNeedEvent(65535, 1, 65534), true);
    assert.equal(vringNeedEvent(0, 1, 65534), true);
    assert.equal(vringNeedEvent(1, 1, 65534), false);
    assert.equal(vringNeedEvent(65533, 1, 65534), false);
    assert.equal(vringNeedEvent(5, 5, 5), false, 'an empty batch never notifies');
  });
});
