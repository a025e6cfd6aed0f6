import assert from 'node:assert/strict';
import {
  GNTTAB_NR_RESERVED_ENTRIES,
  GRANT_ENTRY_LAYOUT,
  GRANT_ENTRY_SIZE,
  GRANT_ENTRY_WORDS,
  GrantTableSpace,
  GrantWord,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_writing,
} from '../../../hypervisor-sim/grant/GrantTableSpace.js';

/** Asserts that `fn` throws a pvio error with `code`. */
function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => (err as { code?: string }).code === code);
}

describe('GrantTableSpace', () => {
  describe('entry layout table (style anchors §3.4)', () => {
    it('fields do not overlap and cover the entry exactly', () => {
      const sorted = [...GRANT_ENTRY_LAYOUT].sort((a, b) => a.offset - b.offset);
      let end = 0;
      for (const f of sorted) {
        assert.equal(f.offset, end, `${f.field} starts at ${f.offset}, previous field ends at ${end}`);
        assert.ok(f.size > 0, `${f.field} has a size`);
        end = f.offset + f.size;
      }
      assert.equal(end, GRANT_ENTRY_SIZE);
    });

    it('every field lies in one Int32 word and 4-byte fields are Int32 aligned (Atomics)', () => {
      assert.equal(GRANT_ENTRY_SIZE % 4, 0);
      assert.equal(GRANT_ENTRY_SIZE, GRANT_ENTRY_WORDS * 4);
      for (const f of GRANT_ENTRY_LAYOUT) {
        assert.equal(Math.floor(f.offset / 4), Math.floor((f.offset + f.size - 1) / 4), `${f.field} straddles a word`);
        if (f.size === 4) assert.equal(f.offset % 4, 0, `${f.field} misaligned`);
      }
    });

    it('GrantWord indices match the byte offsets of the table', () => {
      const offsetOf = (name: string) => GRANT_ENTRY_LAYOUT.find((f) => f.field === name)?.offset;
      assert.equal(offsetOf('flags'), GrantWord.FLAGS_DOMID * 4);
      assert.equal(offsetOf('domid'), GrantWord.FLAGS_DOMID * 4 + 2);
      assert.equal(offsetOf('frame'), GrantWord.FRAME * 4);
      assert.equal(offsetOf('readPins'), GrantWord.READ_PINS * 4);
      assert.equal(offsetOf('writePins'), GrantWord.WRITE_PINS * 4);
      assert.equal(offsetOf('lock'), GrantWord.LOCK * 4);
    });

    it('the Xen flag bits are the v1 values', () => {
      assert.deepEqual(
        [GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing, GNTTAB_NR_RESERVED_ENTRIES],
        [1, 4, 8, 16, 8],
      );
    });

    it('bytes 0–7 of an entry are Xen grant_entry_v1: u16 flags, u16 domid, u32 frame (little-endian)', () => {
      const space = GrantTableSpace.create({ maxDomains: 2, entriesPerDomain: 16 });
      const base = space.entryBase(1, 9);
      space.words[base + GrantWord.FLAGS_DOMID] = GTF_permit_access | GTF_readonly | (0x1234 << 16);
      space.words[base + GrantWord.FRAME] = 0x0abcdef0;
      const dv = new DataView(space.buffer, base * 4, GRANT_ENTRY_SIZE);
      assert.equal(dv.getUint16(0, true), GTF_permit_access | GTF_readonly);
      assert.equal(dv.getUint16(2, true), 0x1234);
      assert.equal(dv.getUint32(4, true), 0x0abcdef0);
      const snap = space.snapshot(1, 9);
      assert.deepEqual([snap.flags, snap.domid, snap.frame], [GTF_permit_access | GTF_readonly, 0x1234, 0x0abcdef0]);
    });
  });

  describe('space size and addressing', () => {
    it('total size = maxDomains × entriesPerDomain × entry size', () => {
      const cfg = { maxDomains: 3, entriesPerDomain: 40 };
      const space = GrantTableSpace.create(cfg);
      assert.equal(GrantTableSpace.bytesFor(cfg), 3 * 40 * GRANT_ENTRY_SIZE);
      assert.equal(space.buffer.byteLength, 3 * 40 * GRANT_ENTRY_SIZE);
      assert.equal(space.entryBase(2, 39) + GRANT_ENTRY_WORDS, space.words.length);
    });

    it('domain tables are adjacent and disjoint', () => {
      const space = GrantTableSpace.create({ maxDomains: 3, entriesPerDomain: 40 });
      assert.equal(space.entryBase(0, 0), 0);
      assert.equal(space.entryBase(0, 39) + GRANT_ENTRY_WORDS, space.entryBase(1, 0));
      assert.equal(space.entryBase(1, 39) + GRANT_ENTRY_WORDS, space.entryBase(2, 0));
    });

    it('entryBase refuses a domain without a table and a ref outside it', () => {
      const space = GrantTableSpace.create({ maxDomains: 2, entriesPerDomain: 16 });
      for (const d of [-1, 2, 1.5, Number.NaN]) throwsCode(() => space.entryBase(d, 8), 'PV_ERR_GRANT_BAD_DOMAIN');
      for (const r of [-1, 16, 2 ** 32, 0.5, Number.NaN])
        throwsCode(() => space.entryBase(0, r), 'PV_ERR_GRANT_BAD_REF');
    });

    it('refuses bad configurations and a buffer of the wrong size', () => {
      for (const cfg of [
        { maxDomains: 0, entriesPerDomain: 16 },
        { maxDomains: 1.5, entriesPerDomain: 16 },
        { maxDomains: 2, entriesPerDomain: GNTTAB_NR_RESERVED_ENTRIES },
        { maxDomains: 2, entriesPerDomain: 2 ** 30 },
      ]) {
        throwsCode(() => GrantTableSpace.create(cfg), 'PV_ERR_CONFIG');
      }
      const cfg = { maxDomains: 2, entriesPerDomain: 16 };
      throwsCode(() => new GrantTableSpace(new SharedArrayBuffer(GRANT_ENTRY_SIZE), cfg), 'PV_ERR_CONFIG');
    });

    it('an attached space sees the same entries', () => {
      const cfg = { maxDomains: 2, entriesPerDomain: 16 };
      const a = GrantTableSpace.create(cfg);
      const b = new GrantTableSpace(a.buffer, a.config);
      a.words[a.entryBase(1, 8) + GrantWord.FRAME] = 77;
      assert.equal(b.snapshot(1, 8).frame, 77);
    });
  });
});
