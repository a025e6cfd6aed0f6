import assert from 'node:assert/strict';
import {
  checkHeader,
  FRAME_HEADER_BYTES,
  FrameFlag,
  type FrameHeader,
  FrameKind,
  FrameOffset,
  LINK_MAGIC,
  LINK_VERSION,
  MAX_BULK_CHUNK,
  MAX_CONTROL,
  writeHeader,
} from '../../../protocol/link/LinkFrame.js';

/** The documented header table (LinkFrame.ts), stated independently: offset, size. */
const TABLE: Record<string, [number, number]> = {
  MAGIC: [0, 4],
  VERSION: [4, 1],
  KIND: [5, 1],
  FLAGS: [6, 2],
  STREAM: [8, 4],
  LENGTH: [12, 4],
};

function header(h: FrameHeader, at = 0, size = FRAME_HEADER_BYTES): Uint8Array {
  const buf = new Uint8Array(size);
  writeHeader(buf, at, h);
  return buf;
}

/** A valid header with one field overwritten (big-endian) at its documented offset. */
function patched(field: keyof typeof TABLE, value: number, h: FrameHeader): Uint8Array {
  const buf = header(h);
  const v = new DataView(buf.buffer);
  const [off, size] = TABLE[field];
  if (size === 4) v.setUint32(off, value);
  else if (size === 2) v.setUint16(off, value);
  else v.setUint8(off, value);
  return buf;
}

const CONTROL: FrameHeader = { kind: FrameKind.CONTROL, flags: 0, stream: 7, length: 100 };
const BULK: FrameHeader = { kind: FrameKind.BULK, flags: FrameFlag.LAST, stream: 7, length: 4096 };

describe('link frame header: the offset table', () => {
  it('FrameOffset matches the documented table and the fields tile the 16-byte header', () => {
    const offsets: Record<string, number> = {
      MAGIC: FrameOffset.MAGIC,
      VERSION: FrameOffset.VERSION,
      KIND: FrameOffset.KIND,
      FLAGS: FrameOffset.FLAGS,
      STREAM: FrameOffset.STREAM,
      LENGTH: FrameOffset.LENGTH,
    };
    let end = 0;
    for (const [name, [off, size]] of Object.entries(TABLE)) {
      assert.equal(offsets[name], off, name);
      assert.equal(off, end, `${name} starts where the previous field ends`);
      assert.equal(off % size, 0, `${name} is aligned to its size`);
      end = off + size;
    }
    assert.equal(end, FRAME_HEADER_BYTES);
  });

  it('writeHeader puts each field, big-endian, at its documented offset (and nothing outside the header)', () => {
    const buf = header({ kind: FrameKind.BULK, flags: FrameFlag.LAST, stream: 0x01020304, length: 0x00030201 }, 4, 24);
    const v = new DataView(buf.buffer, 4);
    assert.equal(v.getUint32(TABLE.MAGIC[0]), LINK_MAGIC);
    assert.deepEqual([...buf.subarray(4, 8)], [0x50, 0x56, 0x4c, 0x4b], "'PVLK' on the wire");
    assert.equal(v.getUint8(TABLE.VERSION[0]), LINK_VERSION);
    assert.equal(v.getUint8(TABLE.KIND[0]), FrameKind.BULK);
    assert.equal(v.getUint16(TABLE.FLAGS[0]), FrameFlag.LAST);
    assert.deepEqual([...buf.subarray(4 + 8, 4 + 12)], [1, 2, 3, 4], 'stream is big-endian');
    assert.deepEqual([...buf.subarray(4 + 12, 4 + 16)], [0, 3, 2, 1], 'length is big-endian');
    assert.deepEqual([...buf.subarray(0, 4)], [0, 0, 0, 0]);
    assert.deepEqual([...buf.subarray(20)], [0, 0, 0, 0]);
  });

  it('checkHeader reads back what writeHeader wrote, at any offset, and wraps the stream to u32', () => {
    const buf = header({ ...CONTROL, stream: 2 ** 32 + 5 }, 3, 19);
    assert.deepEqual(checkHeader(buf, 3), { ...CONTROL, stream: 5 });
    assert.deepEqual(checkHeader(header(BULK), 0), BULK);
  });
});

describe('link frame header: checkHeader rejects every malformed field', () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['bad magic', patched('MAGIC', 0xdeadbeef, CONTROL), /bad magic 0xdeadbeef/],
    ['other version', patched('VERSION', LINK_VERSION + 1, CONTROL), /unsupported version/],
    ['kind 0', patched('KIND', 0, CONTROL), /unknown frame kind 0/],
    ['kind 3', patched('KIND', 3, CONTROL), /unknown frame kind 3/],
    ['control with LAST', patched('FLAGS', FrameFlag.LAST, CONTROL), /control frame with flags/],
    ['bulk with an unknown flag', patched('FLAGS', 0x8001, BULK), /bulk frame with unknown flags/],
    ['empty control', patched('LENGTH', 0, CONTROL), /control frame length 0/],
    ['control over MAX_CONTROL', patched('LENGTH', MAX_CONTROL + 1, CONTROL), /control frame length/],
    ['empty bulk', patched('LENGTH', 0, BULK), /bulk frame length 0/],
    ['bulk over MAX_BULK_CHUNK', patched('LENGTH', MAX_BULK_CHUNK + 1, BULK), /bulk frame length/],
    ['length 0xffffffff', patched('LENGTH', 0xffffffff, BULK), /bulk frame length 4294967295/],
  ];
  for (const [name, buf, why] of cases) {
    it(`${name} → a reason string`, () => {
      const r = checkHeader(buf, 0);
      assert.equal(typeof r, 'string');
      assert.match(r as string, why);
    });
  }

  it('the limits themselves are accepted', () => {
    assert.equal(typeof checkHeader(patched('LENGTH', MAX_CONTROL, CONTROL), 0), 'object');
    assert.equal(typeof checkHeader(patched('LENGTH', MAX_BULK_CHUNK, BULK), 0), 'object');
    assert.equal(typeof checkHeader(patched('FLAGS', 0, BULK), 0), 'object');
  });
});
