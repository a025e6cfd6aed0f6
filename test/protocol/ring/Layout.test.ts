import assert from 'node:assert/strict';
import { PvError } from '../../../protocol/errors.js';
import {
  initSharedRing,
  MAX_RING_ORDER,
  needsNotify,
  RingHeader,
  RingWord,
  ringBytes,
  ringSlots,
  ringWords,
} from '../../../protocol/ring/Layout.js';
import { PAGE_SIZE } from '../../../protocol/Types.js';

/** The documented header table: [field, byte offset, size, word index]. */
const HEADER_FIELDS: ReadonlyArray<readonly [string, number, number, number | undefined]> = [
  ['req_prod', RingHeader.REQ_PROD, 4, RingWord.REQ_PROD],
  ['req_event', RingHeader.REQ_EVENT, 4, RingWord.REQ_EVENT],
  ['rsp_prod', RingHeader.RSP_PROD, 4, RingWord.RSP_PROD],
  ['rsp_event', RingHeader.RSP_EVENT, 4, RingWord.RSP_EVENT],
  ['pad', RingHeader.PAD, RingHeader.SIZE - RingHeader.PAD, undefined],
];

describe('ring §1.1: shared ring header layout', () => {
  it('fields do not overlap, cover the 64-byte header exactly, and index words are Int32-aligned', () => {
    const owner = new Array<string | undefined>(RingHeader.SIZE).fill(undefined);
    for (const [name, offset, size, word] of HEADER_FIELDS) {
      assert.ok(offset >= 0 && offset + size <= RingHeader.SIZE, `${name} lies inside the header`);
      for (let b = offset; b < offset + size; b++) {
        assert.equal(owner[b], undefined, `${name} overlaps ${owner[b]} at byte ${b}`);
        owner[b] = name;
      }
      if (word !== undefined) {
        assert.equal(offset % Int32Array.BYTES_PER_ELEMENT, 0, `${name} is aligned for Atomics on Int32`);
        assert.equal(word * 4, offset, `RingWord.${name} is its byte offset / 4`);
      }
    }
    assert.ok(
      owner.every((o) => o !== undefined),
      'every header byte belongs to a field',
    );
    assert.equal(RingHeader.SIZE, 64, 'header is 64 bytes (XR DEFINE_RING_TYPES)');
    assert.equal(RingWord.SLOTS * 4, RingHeader.SIZE, 'slots start right after the header, at byte 64');
  });
});

describe('ring §1.2: slots per ring are rounded down to a power of two (__CONST_RING_SIZE)', () => {
  // [slot bytes, order, expected slots]: reference §1.2 table.
  const TABLE: ReadonlyArray<readonly [number, number, number]> = [
    [8, 0, 256],
    [12, 0, 256],
    [64, 0, 32],
    [112, 0, 32],
    [8, 4, 4096],
    [12, 4, 4096],
    [64, 4, 512],
    [112, 4, 512],
  ];
  for (const [slotSize, order, expected] of TABLE) {
    it(`${slotSize}-byte slots at order ${order} → ${expected} slots, within 2^${order} pages`, () => {
      const bytes = ringBytes(order);
      assert.equal(bytes, PAGE_SIZE * 2 ** order);
      const n = ringSlots(bytes, slotSize);
      assert.equal(n, expected);
      assert.equal(n & (n - 1), 0, 'a power of two');
      assert.ok(RingHeader.SIZE + n * slotSize <= bytes, 'header + slots fit in the ring pages');
      assert.ok(RingHeader.SIZE + 2 * n * slotSize > bytes, 'the next power of two would not fit (rounded down)');
    });
  }

  it('rejects a slot size that is not a positive multiple of 4, an order out of range, and a ring with no slot', () => {
    for (const bad of [0, 2, 6, 13, -4, 4.5]) {
      assert.throws(() => ringSlots(PAGE_SIZE, bad), { code: 'PV_ERR_RING_LAYOUT' });
    }
    for (const bad of [-1, MAX_RING_ORDER + 1, 0.5]) {
      assert.throws(() => ringBytes(bad), { code: 'PV_ERR_RING_LAYOUT' });
    }
    assert.throws(() => ringSlots(RingHeader.SIZE + 60, 64), { code: 'PV_ERR_RING_LAYOUT' });
    assert.throws(
      () => ringWords(new Uint8Array(new SharedArrayBuffer(PAGE_SIZE + 4), 2, PAGE_SIZE)),
      (e: unknown) => e instanceof PvError && e.code === 'PV_ERR_RING_LAYOUT',
    );
  });
});

describe('ring §1.1: SHARED_RING_INIT', () => {
  for (const start of [0, 7, 0xffff_ffff, 0xffff_fff0]) {
    it(`start ${start}: producers = start, events = start + 1 (mod 2^32), pad zeroed, slots untouched`, () => {
      const view = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
      view.fill(0xff);
      initSharedRing(view, start);
      const words = ringWords(view);
      assert.equal(words[RingWord.REQ_PROD] >>> 0, start >>> 0);
      assert.equal(words[RingWord.RSP_PROD] >>> 0, start >>> 0);
      assert.equal(words[RingWord.REQ_EVENT] >>> 0, (start + 1) >>> 0);
      assert.equal(words[RingWord.RSP_EVENT] >>> 0, (start + 1) >>> 0);
      for (let b = RingHeader.PAD; b < RingHeader.SIZE; b++) assert.equal(view[b], 0, `pad byte ${b} is zero`);
      assert.equal(view[RingHeader.SIZE], 0xff, 'init only writes the header');
      // The very first push in each direction crosses the initial event, so it notifies.
      assert.equal(needsNotify((start + 1) >>> 0, start >>> 0, words[RingWord.REQ_EVENT] >>> 0), true);
    });
  }
});

describe('ring §1.3: the notify test (event in (old, new]) is u32 arithmetic', () => {
  it('notifies iff the event lies in (old, new], also across the 2^32 wrap', () => {
    const cases: ReadonlyArray<readonly [number, number, number, boolean]> = [
      // [old, new, event, notify]
      [0, 1, 1, true],
      [0, 5, 3, true],
      [0, 5, 5, true],
      [0, 5, 6, false],
      [0, 5, 0, false],
      [5, 5, 5, false],
      [0xffff_fffe, 2, 0xffff_ffff, true],
      [0xffff_fffe, 2, 0, true],
      [0xffff_fffe, 2, 2, true],
      [0xffff_fffe, 2, 3, false],
      [0xffff_fffe, 2, 0xffff_fffe, false],
    ];
    for (const [old, now, event, notify] of cases) {
      assert.equal(needsNotify(now, old, event), notify, `old ${old} new ${now} event ${event}`);
    }
  });
});
