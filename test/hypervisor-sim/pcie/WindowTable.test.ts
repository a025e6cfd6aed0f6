import assert from 'node:assert/strict';
import {
  SlotState,
  SlotWord,
  slotBase,
  WINDOW_MAGIC,
  WindowTable,
  WinWord,
  windowTableBytes,
} from '../../../hypervisor-sim/pcie/WindowTable.js';
import { PvError } from '../../../protocol/errors.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PvError);
    return e.code;
  }
  return 'no error';
}

describe('pcie window table layout: the offset table at the definition', () => {
  it('header words sit where the table says, inside the 64-byte header', () => {
    assert.deepEqual(
      [WinWord.MAGIC, WinWord.SEQ, WinWord.GENERATION, WinWord.MAX_WINDOWS, WinWord.LIVE],
      [0, 1, 2, 3, 4],
    );
    assert.equal(WinWord.HEADER * 4, 64);
  });

  it('a slot is 32 bytes: STATE, PORT, then three lo/hi pairs on consecutive words', () => {
    assert.equal(SlotWord.STRIDE * 4, 32);
    const fields = [
      SlotWord.STATE,
      SlotWord.PORT,
      SlotWord.BASE_LO,
      SlotWord.BASE_HI,
      SlotWord.SIZE_LO,
      SlotWord.SIZE_HI,
      SlotWord.PEER_LO,
      SlotWord.PEER_HI,
    ];
    assert.deepEqual(fields, [0, 1, 2, 3, 4, 5, 6, 7], 'no overlap, no gap, all Int32-aligned');
    assert.equal(slotBase(0), WinWord.HEADER);
    assert.equal(slotBase(3) - slotBase(2), SlotWord.STRIDE);
  });

  for (const n of [1, 7, 64]) {
    it(`total = 64 + ${n} · 32 bytes and the last slot ends at the buffer end (${n} windows)`, () => {
      assert.equal(windowTableBytes(n), 64 + n * 32);
      const t = WindowTable.create(n);
      assert.equal(t.buffer.byteLength, windowTableBytes(n));
      assert.equal((slotBase(n - 1) + SlotWord.STRIDE) * 4, t.buffer.byteLength);
      const w = new Int32Array(t.buffer);
      assert.equal(w[WinWord.MAGIC], WINDOW_MAGIC);
      assert.equal(w[WinWord.MAX_WINDOWS], n);
    });
  }

  it('set writes the fields where the table says, 64-bit values as lo/hi u32', () => {
    const t = WindowTable.create(4);
    const w = new Int32Array(t.buffer);
    const slot = t.set(2, 0x1_2345_6000, 0x2000, 0x7_fedc_b000);
    assert.equal(slot, 0);
    const b = slotBase(slot);
    assert.equal(w[b + SlotWord.STATE], SlotState.LIVE);
    assert.equal(w[b + SlotWord.PORT], 2);
    assert.deepEqual([w[b + SlotWord.BASE_LO] >>> 0, w[b + SlotWord.BASE_HI]], [0x2345_6000, 1]);
    assert.deepEqual([w[b + SlotWord.SIZE_LO], w[b + SlotWord.SIZE_HI]], [0x2000, 0]);
    assert.deepEqual([w[b + SlotWord.PEER_LO] >>> 0, w[b + SlotWord.PEER_HI]], [0xfedc_b000, 7]);
    assert.equal(w[WinWord.LIVE], 1);
    assert.equal(w[WinWord.SEQ] % 2, 0, 'SEQ is even outside a write');
  });
});

describe('pcie window table: set, lookup, clear', () => {
  it('lookup finds the window holding an address, with every field, above 2^32 too', () => {
    const t = WindowTable.create(4);
    t.set(0, 0x9000_0000, 0x1000, 0x1_0000_0000);
    const s = t.set(1, 0x2_0000_0000, 0x10_0000, 0x3000);
    assert.deepEqual(t.lookup(0x2_0000_0fff), {
      slot: s,
      port: 1,
      base: 0x2_0000_0000,
      size: 0x10_0000,
      peerBase: 0x3000,
    });
    assert.equal(t.lookup(0x9000_1000), null, 'the end is exclusive');
    assert.equal(t.list().length, 2);
  });

  it('clear zeroes the slot, bumps the generation, and frees the slot for reuse', () => {
    const t = WindowTable.create(2);
    const g = t.generation();
    const s = t.set(0, 0x1000, 0x1000, 0);
    assert.equal(t.clear(s), true);
    assert.equal(t.generation(), g + 2);
    const w = new Int32Array(t.buffer);
    assert.deepEqual([...w.subarray(slotBase(s), slotBase(s) + SlotWord.STRIDE)], new Array(8).fill(0));
    assert.equal(t.lookup(0x1000), null);
    assert.equal(t.set(0, 0x5000, 0x1000, 0), s, 'lowest free slot');
    assert.equal(t.clear(99), false);
  });

  it('overlap, bad numbers and a full table are refused without changing the table', () => {
    const t = WindowTable.create(2);
    t.set(0, 0x1000, 0x1000, 0);
    const g = t.generation();
    assert.equal(
      code(() => t.set(0, 0x1800, 0x1000, 0)),
      'PV_ERR_INVALID_ARG',
    );
    assert.equal(
      code(() => t.set(0, 0x3000, 0, 0)),
      'PV_ERR_INVALID_ARG',
    );
    assert.equal(
      code(() => t.set(0, Number.MAX_SAFE_INTEGER, 2, 0)),
      'PV_ERR_INVALID_ARG',
    );
    t.set(0, 0x3000, 0x1000, 0);
    assert.equal(
      code(() => t.set(0, 0x5000, 0x1000, 0)),
      'PV_ERR_LIMIT',
    );
    assert.equal(t.generation(), g + 1, 'only the successful set changed it');
    assert.equal(new Int32Array(t.buffer)[WinWord.SEQ] % 2, 0, 'a refused set released the lock');
  });

  it('attaching to a buffer that is no window table fails loudly', () => {
    assert.equal(
      code(() => new WindowTable(new SharedArrayBuffer(256))),
      'PV_ERR_INVALID_ARG',
    );
    const t = WindowTable.create(3);
    const again = new WindowTable(t.buffer);
    t.set(0, 0x1000, 0x1000, 0x42000);
    assert.equal(again.lookup(0x1010)?.peerBase, 0x42000, 'two attachments share the slots');
  });
});

describe('pcie window table: a writer that died inside its critical section', () => {
  it('a reader gives up with PV_ERR_TIMEOUT instead of spinning forever', function () {
    this.timeout(10_000);
    const t = WindowTable.create(4);
    const w = new Int32Array(t.buffer);
    // A writer thread terminated between _lock and _unlock leaves SEQ odd.
    Atomics.store(w, WinWord.SEQ, 1);
    assert.throws(
      () => t.lookup(0x1000),
      (e: unknown) => e instanceof PvError && e.code === 'PV_ERR_TIMEOUT',
    );
  });
});
