import assert from 'node:assert/strict';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';

const DOM1 = 1 as DomId;
const gpa = (n: number) => n as GuestPhysAddr;

/** Asserts that `fn` throws a pvio error with `code`. */
function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => (err as { code?: string }).code === code);
}

describe('SharedArrayGuestMemory', () => {
  describe('create: whole pages, positive integer sizes only', () => {
    it('rounds the size up to whole pages', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, PAGE_SIZE + 1);
      assert.equal(mem.size, 2 * PAGE_SIZE);
      assert.equal(mem.buffer.byteLength, 2 * PAGE_SIZE);
      assert.equal(mem.bytes.length, 2 * PAGE_SIZE);
      assert.equal(mem.freePageCount(), 2);
    });

    for (const bad of [0, -4096, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      it(`refuses size ${bad}`, () => throwsCode(() => SharedArrayGuestMemory.create(DOM1, bad), 'PV_ERR_INVALID_ARG'));
    }

    it('refuses to attach to a buffer that is not whole pages', () => {
      throwsCode(() => new SharedArrayGuestMemory(DOM1, new SharedArrayBuffer(100)), 'PV_ERR_INVALID_ARG');
    });

    it('an attached instance sees the same bytes', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, PAGE_SIZE);
      const other = new SharedArrayGuestMemory(DOM1, mem.buffer);
      mem.write(gpa(10), Uint8Array.of(7, 8, 9));
      const out = new Uint8Array(3);
      other.read(gpa(10), out);
      assert.deepEqual([...out], [7, 8, 9]);
    });
  });

  describe('bounds: addr and len are untrusted', () => {
    const mem = SharedArrayGuestMemory.create(DOM1, 4 * PAGE_SIZE);
    const size = mem.size;

    it('accepts ranges that end exactly at the end, and empty ranges at the end', () => {
      mem.checkRange(gpa(0), size);
      mem.checkRange(gpa(size - 1), 1);
      mem.checkRange(gpa(size), 0);
    });

    const refused: Array<[string, number, number]> = [
      ['one byte past the end', size - 1, 2],
      ['start past the end', size + 1, 0],
      ['negative address', -1, 1],
      ['negative length', 0, -1],
      ['NaN address', Number.NaN, 1],
      ['NaN length', 0, Number.NaN],
      ['fractional address', 0.5, 1],
      ['fractional length', 0, 1.5],
      ['infinite length', 0, Number.POSITIVE_INFINITY],
      // addr + len would round to a small-looking or exact value in floating point.
      ['addr + len overflows near 2^53', Number.MAX_SAFE_INTEGER, 2],
      ['len near 2^53 from a valid addr', 1, Number.MAX_SAFE_INTEGER],
      ['addr beyond 2^53', 2 ** 53 + 2, 0],
      ['both huge', 2 ** 52, 2 ** 52],
    ];
    for (const [what, addr, len] of refused) {
      it(`refuses ${what}`, () => {
        throwsCode(() => mem.checkRange(gpa(addr), len), 'PV_ERR_OUT_OF_BOUNDS');
        throwsCode(() => mem.view(gpa(addr), len), 'PV_ERR_OUT_OF_BOUNDS');
      });
    }

    it('read and write refuse a range that runs off the end, and touch nothing', () => {
      const before = mem.bytes.slice(size - 4);
      throwsCode(() => mem.write(gpa(size - 4), new Uint8Array(5).fill(0xaa)), 'PV_ERR_OUT_OF_BOUNDS');
      throwsCode(() => mem.read(gpa(size - 4), new Uint8Array(5)), 'PV_ERR_OUT_OF_BOUNDS');
      assert.deepEqual(mem.bytes.slice(size - 4), before);
    });

    it('view is zero-copy and read/write move bytes both small and bulk', () => {
      const view = mem.view(gpa(PAGE_SIZE), 64);
      view[0] = 42;
      assert.equal(mem.bytes[PAGE_SIZE], 42);
      for (const len of [3, 16, 17, 3000]) {
        const src = Uint8Array.from({ length: len }, (_, i) => (i * 7 + len) & 0xff);
        const at = gpa(2 * PAGE_SIZE + 5);
        mem.write(at, src);
        const dst = new Uint8Array(len);
        mem.read(at, dst);
        assert.deepEqual(dst, src);
      }
    });
  });

  describe('page allocator', () => {
    it('hands out contiguous, page-aligned, zeroed pages', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, 8 * PAGE_SIZE);
      mem.bytes.fill(0xff);
      const a = mem.allocPages(3);
      assert.equal(a % PAGE_SIZE, 0);
      assert.ok(mem.bytes.subarray(a, a + 3 * PAGE_SIZE).every((b) => b === 0));
      // Bytes outside the run are untouched: only the allocated pages are zeroed.
      const after = a + 3 * PAGE_SIZE;
      if (after < mem.size) assert.equal(mem.bytes[after], 0xff);
      assert.equal(mem.freePageCount(), 5);
    });

    it('first fit skips a hole too small for the request', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, 8 * PAGE_SIZE);
      const p0 = mem.allocPages(1);
      const p1 = mem.allocPages(1);
      mem.allocPages(1);
      mem.freePages(p1, 1); // one-page hole at page 1
      const run = mem.allocPages(2);
      assert.equal(run, 3 * PAGE_SIZE);
      assert.equal(mem.allocPages(1), p1, 'the hole is reused by a request that fits');
      assert.equal(p0, 0);
    });

    it('exhaustion is PV_ERR_NO_MEMORY, also when free pages are not contiguous', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, 4 * PAGE_SIZE);
      throwsCode(() => mem.allocPages(5), 'PV_ERR_NO_MEMORY');
      const pages = [0, 1, 2, 3].map(() => mem.allocPages(1));
      throwsCode(() => mem.allocPages(1), 'PV_ERR_NO_MEMORY');
      mem.freePages(pages[0], 1);
      mem.freePages(pages[2], 1);
      assert.equal(mem.freePageCount(), 2);
      throwsCode(() => mem.allocPages(2), 'PV_ERR_NO_MEMORY');
      assert.equal(mem.freePageCount(), 2);
    });

    it('refuses a double free and pages never allocated, freeing nothing', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, 4 * PAGE_SIZE);
      const a = mem.allocPages(2);
      mem.freePages(a, 2);
      throwsCode(() => mem.freePages(a, 2), 'PV_ERR_INVALID_ARG');
      const b = mem.allocPages(1);
      // The range covers an allocated page and a free one: all-or-nothing.
      throwsCode(() => mem.freePages(b, 2), 'PV_ERR_INVALID_ARG');
      assert.equal(mem.freePageCount(), 3);
      mem.freePages(b, 1);
      assert.equal(mem.freePageCount(), 4);
    });

    it('refuses bad counts and misaligned or out-of-range frees', () => {
      const mem = SharedArrayGuestMemory.create(DOM1, 4 * PAGE_SIZE);
      for (const bad of [0, -1, 1.5, Number.NaN]) throwsCode(() => mem.allocPages(bad), 'PV_ERR_INVALID_ARG');
      const a = mem.allocPages(1);
      throwsCode(() => mem.freePages(gpa(a + 1), 1), 'PV_ERR_BAD_ALIGNMENT');
      throwsCode(() => mem.freePages(gpa(4 * PAGE_SIZE), 1), 'PV_ERR_OUT_OF_BOUNDS');
      throwsCode(() => mem.freePages(a, 0), 'PV_ERR_INVALID_ARG');
    });
  });
});
