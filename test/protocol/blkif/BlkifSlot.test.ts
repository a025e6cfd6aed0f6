/**
 * The blkif x86_64 layouts in BlkifSlot.ts: every field at the byte offset of its table (read
 * back through a DataView, as a C peer would see them), padding zero even over a dirty slot,
 * the response confined to its 16 bytes, 32 slots per page, and decode round-trips.
 */

import assert from 'node:assert/strict';
import {
  BLKIF_MAX_INDIRECT_SEGMENTS,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_SEGS_PER_INDIRECT_FRAME,
  BlkifOp,
  BlkifStatus,
} from '../../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_RSP_SIZE,
  BLKIF_SEG_SIZE,
  BLKIF_SLOT_SIZE,
  BLKIF_SLOT_WORDS,
  decodeBlkifRequest,
  decodeBlkifResponse,
  emptyBlkifRequest,
  encodeBlkifRequest,
  encodeBlkifResponse,
  segFirst,
  segGref,
  segLast,
} from '../../../protocol/blkif/BlkifSlot.js';
import { ringBytes, ringSlots } from '../../../protocol/ring/Layout.js';

/** A slot full of 0xAA bytes (stale data the encoders must overwrite), and a byte view of it. */
function dirtySlot(): { words: Int32Array; dv: DataView } {
  const words = new Int32Array(BLKIF_SLOT_WORDS).fill(0xaaaaaaaa | 0);
  return { words, dv: new DataView(words.buffer) };
}

const u64 = (dv: DataView, off: number) => dv.getBigUint64(off, true);

describe('protocol/blkif layout: the x86_64 blkif offsets', () => {
  it('sizes: 112-byte request slot, 16-byte response, 8-byte segment; 32 slots per page, 512 at order 4', () => {
    assert.equal(BLKIF_SLOT_SIZE, 112);
    assert.equal(BLKIF_RSP_SIZE, 16);
    assert.equal(BLKIF_SEG_SIZE, 8);
    assert.equal(24 + BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SEG_SIZE, BLKIF_SLOT_SIZE);
    assert.equal(ringSlots(ringBytes(0), BLKIF_SLOT_SIZE), 32);
    assert.equal(ringSlots(ringBytes(4), BLKIF_SLOT_SIZE), 512);
    assert.equal(BLKIF_SEGS_PER_INDIRECT_FRAME * BLKIF_SEG_SIZE, 4096);
    assert.equal(BLKIF_MAX_INDIRECT_SEGMENTS, 256);
  });

  it('direct request: operation 0, nr_segments 1, handle 2, pad 4, id 8, sector 16, seg i at 24 + 8i', () => {
    const { words, dv } = dirtySlot();
    const segs = Array.from({ length: 11 }, (_, i) => ({ gref: 0x1000 + i, first: i % 8, last: 7 }));
    encodeBlkifRequest(words, 0, {
      op: BlkifOp.WRITE,
      idLo: 0x89abcdef,
      idHi: 0x01234567,
      sectorLo: 0xdeadbeef,
      sectorHi: 0x0badcafe,
      handle: 0xca01,
      segs,
    });
    assert.equal(dv.getUint8(0), BlkifOp.WRITE);
    assert.equal(dv.getUint8(1), 11);
    assert.equal(dv.getUint16(2, true), 0xca01);
    assert.equal(dv.getUint32(4, true), 0, 'pad');
    assert.equal(u64(dv, 8), 0x0123456789abcdefn);
    assert.equal(u64(dv, 16), 0x0badcafedeadbeefn);
    for (let i = 0; i < 11; i++) {
      const o = 24 + 8 * i;
      assert.equal(dv.getUint32(o, true), 0x1000 + i, `seg ${i} gref`);
      assert.equal(dv.getUint8(o + 4), i % 8, `seg ${i} first_sect`);
      assert.equal(dv.getUint8(o + 5), 7, `seg ${i} last_sect`);
      assert.equal(dv.getUint16(o + 6, true), 0, `seg ${i} pad`);
    }
    // Fewer segments: the unused descriptors are zeroed.
    encodeBlkifRequest(words, 0, {
      op: 0,
      idLo: 1,
      idHi: 0,
      sectorLo: 0,
      sectorHi: 0,
      handle: 0,
      segs: segs.slice(0, 2),
    });
    assert.equal(dv.getUint8(1), 2);
    for (let o = 40; o < 112; o++) assert.equal(dv.getUint8(o), 0, `byte ${o}`);
  });

  it('indirect request: indirect_op 1, nr_segments u16 at 2, handle 24, grefs at 28 + 4i, pad 60, rest zero', () => {
    const { words, dv } = dirtySlot();
    encodeBlkifRequest(words, 0, {
      op: BlkifOp.INDIRECT,
      indirectOp: BlkifOp.READ,
      nseg: 0x1ff,
      idLo: 5,
      idHi: 6,
      sectorLo: 7,
      sectorHi: 8,
      handle: 0xbeef,
      indirectGrefs: [11, 12, 13, 14, 15, 16, 17, 18],
    });
    assert.equal(dv.getUint8(0), BlkifOp.INDIRECT);
    assert.equal(dv.getUint8(1), BlkifOp.READ);
    assert.equal(dv.getUint16(2, true), 0x1ff);
    assert.equal(dv.getUint32(4, true), 0);
    assert.equal(u64(dv, 8), (6n << 32n) | 5n);
    assert.equal(u64(dv, 16), (8n << 32n) | 7n);
    assert.equal(dv.getUint16(24, true), 0xbeef);
    assert.equal(dv.getUint16(26, true), 0);
    for (let i = 0; i < 8; i++) assert.equal(dv.getUint32(28 + 4 * i, true), 11 + i);
    for (let o = 60; o < 112; o++) assert.equal(dv.getUint8(o), 0, `byte ${o}`);
    const r = decodeBlkifRequest(words, 0, emptyBlkifRequest());
    assert.deepEqual(
      [r.op, r.indirectOp, r.nseg, r.handle, r.idLo, r.idHi, r.sectorLo, r.sectorHi],
      [6, 0, 0x1ff, 0xbeef, 5, 6, 7, 8],
    );
    assert.deepEqual([...r.indirectGrefs], [11, 12, 13, 14, 15, 16, 17, 18]);
  });

  it('response: id 0, operation 8, pad 9, status i16 at 10, pad 12; bytes 16+ untouched', () => {
    const { words, dv } = dirtySlot();
    encodeBlkifResponse(words, 0, {
      idLo: 0xffffffff,
      idHi: 0x7fffffff,
      op: BlkifOp.INDIRECT,
      status: BlkifStatus.EOPNOTSUPP,
    });
    assert.equal(u64(dv, 0), 0x7fffffffffffffffn);
    assert.equal(dv.getUint8(8), BlkifOp.INDIRECT);
    assert.equal(dv.getUint8(9), 0, 'pad (XSA-216)');
    assert.equal(dv.getInt16(10, true), -2);
    assert.equal(dv.getUint32(12, true), 0, 'pad (XSA-216)');
    for (let o = 16; o < 112; o++) assert.equal(dv.getUint8(o), 0xaa, `byte ${o} belongs to the request`);
    const r = decodeBlkifResponse(words, 0, { idLo: 0, idHi: 0, op: 0, status: 0 });
    assert.deepEqual(r, { idLo: 0xffffffff, idHi: 0x7fffffff, op: 6, status: -2 });
    encodeBlkifResponse(words, 0, { idLo: 1, idHi: 0, op: 0, status: BlkifStatus.ERROR });
    assert.equal(decodeBlkifResponse(words, 0, r).status, -1, 'status sign-extends');
  });

  it('decode of a direct request copies at most 11 descriptors whatever nr_segments claims', () => {
    const words = new Int32Array(BLKIF_SLOT_WORDS + 4).fill(-1);
    encodeBlkifRequest(words, 0, {
      op: BlkifOp.READ,
      nseg: 255,
      idLo: 0,
      idHi: 0,
      sectorLo: 0,
      sectorHi: 0,
      handle: 0,
      segs: [{ gref: 42, first: 1, last: 6 }],
    });
    const r = decodeBlkifRequest(words, 0, emptyBlkifRequest());
    assert.equal(r.nseg, 255);
    assert.equal(r.segWords.length, 22);
    assert.deepEqual([segGref(r.segWords, 0), segFirst(r.segWords, 0), segLast(r.segWords, 0)], [42, 1, 6]);
  });
});
