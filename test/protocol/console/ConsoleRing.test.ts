import assert from 'node:assert/strict';
import {
  CONSOLE_IN_SIZE,
  CONSOLE_OUT_SIZE,
  CONSOLE_PAGE_BYTES,
  ConsoleOffset,
  ConsoleReader,
  ConsoleWord,
  ConsoleWriter,
  initConsolePage,
  maskOut,
} from '../../../protocol/console/ConsoleRing.js';

/** Xen's struct xencons_interface plus pvio's words: [field, byte offset, size, word index]. */
const FIELDS: ReadonlyArray<readonly [string, number, number, number | undefined]> = [
  ['in', ConsoleOffset.IN, CONSOLE_IN_SIZE, undefined],
  ['out', ConsoleOffset.OUT, CONSOLE_OUT_SIZE, undefined],
  ['in_cons', ConsoleOffset.IN_CONS, 4, ConsoleWord.IN_CONS],
  ['in_prod', ConsoleOffset.IN_PROD, 4, ConsoleWord.IN_PROD],
  ['out_cons', ConsoleOffset.OUT_CONS, 4, ConsoleWord.OUT_CONS],
  ['out_prod', ConsoleOffset.OUT_PROD, 4, ConsoleWord.OUT_PROD],
  ['out_dropped', ConsoleOffset.OUT_DROPPED, 4, ConsoleWord.OUT_DROPPED],
  ['out_stalls', ConsoleOffset.OUT_STALLS, 4, ConsoleWord.OUT_STALLS],
];

const bytesOf = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe('console ring: the xencons_interface layout', () => {
  it("matches console.h's offsets (0, 1024, 3072, 3076, 3080, 3084), then pvio's words, in one page", () => {
    assert.deepEqual(
      FIELDS.slice(0, 6).map(([, off]) => off),
      [0, 1024, 3072, 3076, 3080, 3084],
    );
    assert.equal(CONSOLE_PAGE_BYTES, 4096);
    const owner = new Array<string | undefined>(CONSOLE_PAGE_BYTES).fill(undefined);
    for (const [name, offset, size, word] of FIELDS) {
      assert.ok(offset + size <= CONSOLE_PAGE_BYTES, `${name} lies inside the page`);
      for (let b = offset; b < offset + size; b++) {
        assert.equal(owner[b], undefined, `${name} overlaps ${owner[b]} at byte ${b}`);
        owner[b] = name;
      }
      if (word !== undefined) assert.equal(word * 4, offset, `ConsoleWord.${name} is its byte offset / 4`);
    }
  });

  it('MASK_XENCONS_IDX(idx, out) is idx & (sizeof(out) - 1), also for indices past 2^31', () => {
    assert.equal(maskOut(0), 0);
    assert.equal(maskOut(2047), 2047);
    assert.equal(maskOut(2048), 0);
    assert.equal(maskOut(0xffff_ffff | 0), 2047);
    assert.equal(maskOut(0x8000_0005 | 0), 5);
  });

  it('a page of the wrong size is PV_ERR_RING_LAYOUT', () => {
    assert.throws(() => new ConsoleReader(new SharedArrayBuffer(2048)), { code: 'PV_ERR_RING_LAYOUT' });
  });
});

describe('console ring: guest writer and host reader', () => {
  it('bytes written are read back in order and the indices land where the bytes went', () => {
    const page = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    const w = new ConsoleWriter(page);
    const r = new ConsoleReader(page);
    assert.equal(r.read().length, 0, 'an empty ring reads nothing');
    const data = bytesOf(100);
    assert.equal(w.write(data), 100);
    const words = new Int32Array(page);
    assert.equal(words[ConsoleWord.OUT_PROD], 100);
    assert.deepEqual(new Uint8Array(page, ConsoleOffset.OUT, 100), data, 'bytes sit at the start of out');
    assert.deepEqual(r.read(), data);
    assert.equal(words[ConsoleWord.OUT_CONS], 100);
  });

  it('free-running indices wrap past 2^32 without losing or reordering a byte', () => {
    const page = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    initConsolePage(page, 0xffff_ffff - 700);
    const w = new ConsoleWriter(page, { waitMs: 0 });
    const r = new ConsoleReader(page);
    const got: number[] = [];
    const sent: number[] = [];
    // 1500-byte writes cross both the 2048-byte ring edge and the 2^32 index wrap several times.
    for (let k = 0; k < 6; k++) {
      const data = bytesOf(1500, k);
      assert.equal(w.write(data), 1500, `write ${k} fits: the reader drained before it`);
      sent.push(...data);
      got.push(...r.read());
    }
    assert.deepEqual(got, sent);
    const words = new Int32Array(page);
    const prod = words[ConsoleWord.OUT_PROD] >>> 0;
    assert.ok(prod < 10_000, `out_prod wrapped past 2^32 (now ${prod})`);
    assert.equal(words[ConsoleWord.OUT_CONS], words[ConsoleWord.OUT_PROD]);
    assert.equal(w.dropped, 0);
  });

  it('a full ring with no reader: the writer waits its bound once, drops the rest and counts it', () => {
    const page = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    const w = new ConsoleWriter(page, { waitMs: 20, sliceMs: 2 });
    const r = new ConsoleReader(page);
    // No reader runs during this call: it must return (not block forever) with the ring full.
    assert.equal(w.write(bytesOf(5000)), CONSOLE_OUT_SIZE);
    assert.equal(w.dropped, 5000 - CONSOLE_OUT_SIZE);
    assert.equal(r.dropped, w.dropped, 'the host sees the count in the page');
    assert.equal(r.stalls, 1, 'the write that found the ring full waited once');
    // The reader has still not moved: the next write drops at once without waiting again.
    assert.equal(w.write(bytesOf(10)), 0);
    assert.equal(r.stalls, 1, 'no second wait while the reader is stuck');
    assert.equal(w.dropped, 5000 - CONSOLE_OUT_SIZE + 10);
    // What was kept is intact: the first 2048 bytes, in order.
    assert.deepEqual(r.read(), bytesOf(5000).subarray(0, CONSOLE_OUT_SIZE));
    // The reader made room: writing works again.
    assert.equal(w.write(bytesOf(10, 3)), 10);
    assert.deepEqual(r.read(), bytesOf(10, 3));
  });

  it('a guest that moves out_prod more than a ring ahead is refused (PV_ERR_RING_PROD_OVERFLOW)', () => {
    const page = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    const words = new Int32Array(page);
    Atomics.store(words, ConsoleWord.OUT_PROD, CONSOLE_OUT_SIZE + 1);
    assert.throws(() => new ConsoleReader(page).read(), { code: 'PV_ERR_RING_PROD_OVERFLOW' });
    assert.equal(words[ConsoleWord.OUT_CONS], 0, 'a refused read frees nothing');
  });
});
