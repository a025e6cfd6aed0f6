import assert from 'node:assert/strict';
import { ERROR_CATALOGUE } from '../../../protocol/errors.js';
import {
  decodeIoRequest,
  decodeIoResponse,
  encodeIoRequest,
  encodeIoResponse,
  fnv1a,
  IO_SLOT_SIZE,
  IO_SLOT_WORDS,
  type IoRequest,
  IoReqWord,
  type IoResponse,
  IoRspWord,
} from '../../../protocol/ring/IoSlot.js';

/** Documented field table: [field, byte offset, size in bytes, all-ones value for that width]. */
type FieldRow<T> = readonly [keyof T, number, number, number];

const REQ_FIELDS: ReadonlyArray<FieldRow<IoRequest>> = [
  ['idLo', 0, 4, 0xffff_ffff],
  ['idHi', 4, 4, 0xffff_ffff],
  ['op', 8, 1, 0xff],
  ['nseg', 10, 2, 0xffff],
  ['gref', 12, 4, 0xffff_ffff],
  ['offset', 16, 4, 0xffff_ffff],
  ['length', 20, 4, 0xffff_ffff],
  ['checksum', 24, 4, 0xffff_ffff],
];

const RSP_FIELDS: ReadonlyArray<FieldRow<IoResponse>> = [
  ['idLo', 0, 4, 0xffff_ffff],
  ['idHi', 4, 4, 0xffff_ffff],
  ['op', 8, 1, 0xff],
  ['status', 10, 2, -1],
  ['length', 12, 4, 0xffff_ffff],
  ['checksum', 16, 4, 0xffff_ffff],
];

function zeroReq(): IoRequest {
  return { idLo: 0, idHi: 0, op: 0, nseg: 0, gref: 0, offset: 0, length: 0, checksum: 0 };
}

function zeroRsp(): IoResponse {
  return { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };
}

/** A 3-slot buffer; the slot under test is the middle one so writes outside it are caught. */
function slotBuffer(): { words: Int32Array; bytes: Uint8Array; w: number; base: number } {
  const sab = new SharedArrayBuffer(3 * IO_SLOT_SIZE);
  return { words: new Int32Array(sab), bytes: new Uint8Array(sab), w: IO_SLOT_WORDS, base: IO_SLOT_SIZE };
}

/** Checks, by encoding one field at a time, that each field lands exactly on its documented bytes. */
function checkLayout<T>(
  fields: ReadonlyArray<FieldRow<T>>,
  zero: () => T,
  encode: (dst: Int32Array, w: number, v: T) => void,
): Set<number> {
  const fieldBytes = new Set<number>();
  for (const [name, offset, size, ones] of fields) {
    assert.ok(offset + size <= IO_SLOT_SIZE, `${String(name)} fits in the slot`);
    const { words, bytes, w, base } = slotBuffer();
    encode(words, w, { ...zero(), [name]: ones });
    const touched: number[] = [];
    for (let b = 0; b < IO_SLOT_SIZE; b++) if (bytes[base + b] !== 0) touched.push(b);
    const expected = Array.from({ length: size }, (_, i) => offset + i);
    assert.deepEqual(touched, expected, `${String(name)} occupies bytes [${offset}, ${offset + size})`);
    for (const b of expected) {
      assert.ok(!fieldBytes.has(b), `${String(name)} overlaps another field at byte ${b}`);
      fieldBytes.add(b);
    }
  }
  return fieldBytes;
}

/** Fills the whole buffer with 0xFF, encodes into the middle slot, checks pad bytes are 0 and neighbours intact. */
function checkPadZeroed<T>(fieldBytes: Set<number>, value: T, encode: (dst: Int32Array, w: number, v: T) => void) {
  const { words, bytes, w, base } = slotBuffer();
  bytes.fill(0xff);
  encode(words, w, value);
  let pads = 0;
  for (let b = 0; b < IO_SLOT_SIZE; b++) {
    if (fieldBytes.has(b)) continue;
    pads++;
    assert.equal(bytes[base + b], 0, `pad byte ${b} is zeroed on write`);
  }
  assert.equal(pads, IO_SLOT_SIZE - fieldBytes.size);
  for (let b = 0; b < base; b++) assert.equal(bytes[b], 0xff, `byte ${b} before the slot is untouched`);
  for (let b = base + IO_SLOT_SIZE; b < bytes.length; b++) assert.equal(bytes[b], 0xff, `byte ${b} after is untouched`);
}

describe('io slot layout: 64-byte request and response slots (offset tables in IoSlot.ts)', () => {
  it('a slot is 64 bytes = 16 Int32 words; pad starts where the table says', () => {
    assert.equal(IO_SLOT_SIZE, 64);
    assert.equal(IO_SLOT_WORDS * 4, IO_SLOT_SIZE);
    assert.equal(IoReqWord.PAD * 4, 28);
    assert.equal(IoRspWord.PAD * 4, 20);
  });

  it('request: every field lands on its documented bytes and no two fields overlap', () => {
    const used = checkLayout(REQ_FIELDS, zeroReq, encodeIoRequest);
    assert.ok(!used.has(9), 'byte 9 (flags) is reserved');
    assert.equal(Math.max(...used), IoReqWord.PAD * 4 - 1, 'pad follows the last field');
  });

  it('response: every field lands on its documented bytes and no two fields overlap', () => {
    const used = checkLayout(RSP_FIELDS, zeroRsp, encodeIoResponse);
    assert.equal(Math.max(...used), IoRspWord.PAD * 4 - 1, 'pad follows the last field');
  });
});

describe('io slot §5 (XSA-216): padding is zeroed on every write', () => {
  it('request: a slot full of 0xFF has every pad byte 0 after encode, and nothing outside the slot changes', () => {
    const used = checkLayout(REQ_FIELDS, zeroReq, encodeIoRequest);
    const ones: IoRequest = {
      idLo: 0xffff_ffff,
      idHi: 0xffff_ffff,
      op: 0xff,
      nseg: 0xffff,
      gref: 0xffff_ffff,
      offset: 0xffff_ffff,
      length: 0xffff_ffff,
      checksum: 0xffff_ffff,
    };
    checkPadZeroed(used, ones, encodeIoRequest);
    checkPadZeroed(used, zeroReq(), encodeIoRequest);
  });

  it('response: a slot full of 0xFF has every pad byte 0 after encode, and nothing outside the slot changes', () => {
    const used = checkLayout(RSP_FIELDS, zeroRsp, encodeIoResponse);
    const ones: IoResponse = {
      idLo: 0xffff_ffff,
      idHi: 0xffff_ffff,
      op: 0xff,
      status: -1,
      length: 0xffff_ffff,
      checksum: 0xffff_ffff,
    };
    checkPadZeroed(used, ones, encodeIoResponse);
    checkPadZeroed(used, zeroRsp(), encodeIoResponse);
  });
});

describe('io slot: encode/decode round trip', () => {
  it('request fields survive a round trip (u32 fields at their extremes)', () => {
    const samples: IoRequest[] = [
      zeroReq(),
      {
        idLo: 0xffff_ffff,
        idHi: 0x8000_0000,
        op: 0xff,
        nseg: 0xffff,
        gref: 0xdead_beef,
        offset: 4095,
        length: 4096,
        checksum: 0x811c_9dc5,
      },
      { idLo: 1, idHi: 2, op: 2, nseg: 1, gref: 8, offset: 512, length: 1024, checksum: 0x7fff_ffff },
    ];
    const { words, w } = slotBuffer();
    for (const r of samples) {
      encodeIoRequest(words, w, r);
      assert.deepEqual(decodeIoRequest(words, w, zeroReq()), r);
    }
  });

  it('response status is a signed i16: negatives (every catalogue status, -32768) and 32767 round-trip', () => {
    const statuses = [0, 1, -1, -32768, 32767, ...Object.values(ERROR_CATALOGUE).map((s) => s.status)];
    const { words, w } = slotBuffer();
    for (const status of statuses) {
      const r: IoResponse = { idLo: 0xffff_fffe, idHi: 3, op: 0xff, status, length: 0xffff_ffff, checksum: 9 };
      encodeIoResponse(words, w, r);
      assert.deepEqual(decodeIoResponse(words, w, zeroRsp()), r, `status ${status}`);
    }
  });

  it('fnv1a matches the published FNV-1a 32-bit test vectors', () => {
    const enc = new TextEncoder();
    const vectors: ReadonlyArray<readonly [string, number]> = [
      ['', 0x811c_9dc5],
      ['a', 0xe40c_292c],
      ['foobar', 0xbf9c_f968],
    ];
    for (const [text, hash] of vectors) {
      const bytes = enc.encode(`xx${text}`);
      assert.equal(fnv1a(bytes, 2, bytes.length - 2), hash, `fnv1a("${text}")`);
    }
  });
});
