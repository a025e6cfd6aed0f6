/**
 * FileBlockDevice: a real file at `sector × sectorSize`, sparse by default (holes read as
 * zeros), range checks that cannot overflow, read-only images, an existing image kept intact,
 * and a temp image removed on close.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBlockDevice } from '../../../backend/blk/FileBlockDevice.js';

const code = (err: unknown) => (err as { code?: string }).code;

describe('backend/blk FileBlockDevice: a real file behind the BlockDevice interface', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pvio-fbd-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a temp image is sparse, reads zeros, lands writes at sector × 512 and is deleted on close', () => {
    const d = new FileBlockDevice({ sizeBytes: 1 << 20 });
    assert.equal(d.sectors, 2048);
    assert.equal(statSync(d.path).size, 1 << 20);
    const z = new Uint8Array(1024).fill(9);
    d.read(100, 2, z);
    assert.ok(z.every((b) => b === 0));
    const w = new Uint8Array(1024).map((_, i) => i & 0xff);
    d.write(2046, 2, w);
    d.flush();
    const file = readFileSync(d.path);
    assert.deepEqual(file.subarray(2046 * 512), Buffer.from(w));
    const back = new Uint8Array(1024);
    d.read(2046, 2, back);
    assert.deepEqual(back, w);
    assert.deepEqual(d.stats, { reads: 2, writes: 1, flushes: 1, bytesRead: 2048, bytesWritten: 1024 });
    const path = d.path;
    d.close();
    assert.equal(existsSync(path), false);
  });

  it('range: past the end, straddling it, negative, unsafe and a wrong buffer size are PV_ERR_BLK_BAD_SECTOR', () => {
    const d = new FileBlockDevice({ path: join(dir, 'a.img'), sizeBytes: 8192 });
    try {
      const b = new Uint8Array(512);
      for (const [s, c, buf] of [
        [16, 1, b],
        [15, 2, new Uint8Array(1024)],
        [-1, 1, b],
        [2 ** 53, 1, b],
        [0, 2 ** 60, b],
        [0, 2, b],
      ] as const) {
        assert.throws(
          () => d.read(s, c, buf),
          (e) => code(e) === 'PV_ERR_BLK_BAD_SECTOR',
          `${s}+${c}`,
        );
        assert.throws(
          () => d.write(s, c, buf),
          (e) => code(e) === 'PV_ERR_BLK_BAD_SECTOR',
          `${s}+${c}`,
        );
      }
    } finally {
      d.close();
    }
  });

  it('an existing image keeps its data; a read-only one refuses writes; sizes must be whole sectors', () => {
    const path = join(dir, 'b.img');
    writeFileSync(path, Buffer.alloc(4096, 7));
    const ro = new FileBlockDevice({ path, readOnly: true });
    assert.equal(ro.sectors, 8);
    const b = new Uint8Array(512);
    ro.read(3, 1, b);
    assert.ok(b.every((x) => x === 7));
    assert.throws(
      () => ro.write(0, 1, b),
      (e) => code(e) === 'PV_ERR_BAD_REQUEST',
    );
    ro.close();
    const grown = new FileBlockDevice({ path, sizeBytes: 8192 });
    assert.equal(grown.sectors, 16);
    grown.read(7, 1, b);
    assert.ok(
      b.every((x) => x === 7),
      'extending keeps the old data',
    );
    grown.close();
    assert.throws(
      () => new FileBlockDevice({ path: join(dir, 'c.img'), sizeBytes: 1000 }),
      (e) => code(e) === 'PV_ERR_CONFIG',
    );
    assert.throws(
      () => new FileBlockDevice({ sectorSize: 1000 }),
      (e) => code(e) === 'PV_ERR_CONFIG',
    );
  });

  it('4 KiB sectors: sector numbers count 4096-byte blocks', () => {
    const d = new FileBlockDevice({ path: join(dir, 'd.img'), sizeBytes: 64 * 1024, sectorSize: 4096 });
    try {
      assert.equal(d.sectors, 16);
      d.write(3, 1, new Uint8Array(4096).fill(5));
      assert.equal(readFileSync(d.path)[3 * 4096], 5);
      assert.equal(readFileSync(d.path)[3 * 4096 - 1], 0);
    } finally {
      d.close();
    }
  });
});
