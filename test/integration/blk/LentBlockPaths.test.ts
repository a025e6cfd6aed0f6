/**
 * Block conformance across paths, the lent one included (issue 5, Tests): data written through
 * each of six paths — local paravirt, passthrough and native on the SSD's own host, and lent
 * native, passthrough and paravirt (B's dom0 blkback) on `nvme0@A` through the NTB — reads back
 * through every other path, and lies in the backing file at sector × 512 after each run.
 *
 * One backing file serves every run: the local runs' host nvme0 and the cluster's A nvme0 are the
 * same file, as a disk image outlives the machines that used it. The plan is two passes over one
 * order: the first pass writes every path's region, each run reading all regions written before
 * it; the second pass lets each path read the regions of the paths after it in the first pass, so
 * every (writer, reader) pair of distinct paths is exercised (the plan is checked for that).
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BlockPath,
  LENT_PATHS,
  LOCAL_PATHS,
  type PathRun,
  type PathStep,
  runPathStep,
  transportOf,
} from './BlockPathRuns.js';
import { pathByte, type Region } from './programs/BlockPathsGuest.js';

const DISK = 16 << 20;
const SECTORS = DISK / 512;

/** Each path's region: multi-segment, indirect (600 sectors = 75 pages), PRP-list sizes, the disk's end. */
const REGION: Record<BlockPath, Region> = {
  paravirt: { sector: 1000, count: 600, seed: 1 },
  passthrough: { sector: 5003, count: 77, seed: 2 },
  native: { sector: 20000, count: 1030, seed: 3 },
  'lent-native': { sector: 9001, count: 1030, seed: 4 },
  // The last 77 sectors: the far end of the media through the NTB window.
  'lent-passthrough': { sector: SECTORS - 77, count: 77, seed: 5 },
  'lent-paravirt': { sector: 26000, count: 600, seed: 6 },
};

/** Lent and local alternate, so each lent run reads local writes and the next local run reads it. */
const ORDER: readonly BlockPath[] = [
  'lent-native',
  'paravirt',
  'lent-passthrough',
  'native',
  'lent-paravirt',
  'passthrough',
];

function plan(): PathStep[] {
  const first = ORDER.map((p, i) => ({ path: p, expect: ORDER.slice(0, i).map((q) => REGION[q]), write: REGION[p] }));
  // The last path of the first pass already read everyone; the others rewrite their own region
  // (same pattern) and read the paths that came after them.
  const second = ORDER.slice(0, -1).map((p, i) => ({
    path: p,
    expect: ORDER.slice(i + 1).map((q) => REGION[q]),
    write: REGION[p],
  }));
  return [...first, ...second];
}

/** Ordered (writer → reader) pairs the plan exercises, `reader` reading after `writer` ran. */
function pairsOf(steps: readonly PathStep[]): Set<string> {
  const pairs = new Set<string>();
  for (const s of steps) {
    for (const r of s.expect) {
      const writer = ORDER.find((p) => REGION[p] === r);
      pairs.add(`${writer} → ${s.path}`);
    }
  }
  return pairs;
}

function fileMismatches(file: Buffer, r: Region): number {
  let bad = 0;
  for (let i = 0; i < r.count * 512; i++) if (file[r.sector * 512 + i] !== pathByte(r.sector * 512 + i, r.seed)) bad++;
  return bad;
}

/** What every step must show, whichever path ran. */
function checkStep(at: string, s: PathStep, r: PathRun, file: string): void {
  const lent = s.path.startsWith('lent-');
  const g = r.guest;
  assert.equal(g.transport, transportOf(s.path), at);
  assert.equal(g.device, lent ? 'nvme0@A' : 'nvme0', at);
  assert.equal(g.sectorSize, 512, at);
  assert.equal(g.sectors, SECTORS, at);
  assert.deepEqual(
    g.expectMismatches,
    s.expect.map(() => 0),
    `${at}: reads what the other paths wrote`,
  );
  assert.equal(g.ownMismatches, 0, `${at}: reads back its own write`);
  assert.equal(r.backingFile, file, `${at}: the SSD is the shared file`);
  assert.ok(r.nvme.flushes >= 1, `${at}: FLUSH reached the controller`);
  assert.ok(r.nvme.fsyncs >= 1, `${at}: and the media (fsync)`);
  // The controller (A's, for a lent path) moved at least what the guest read and wrote.
  const read = (s.expect.reduce((n, e) => n + e.count, 0) + s.write.count) * 512;
  assert.ok(r.nvme.bytesWritten >= s.write.count * 512 && r.nvme.bytesRead >= read, `${at}: the SSD did the I/O`);
  assert.equal(r.nvme.errors, 0, at);
  assert.equal(r.nvme.dmaFaults, 0, `${at}: no DMA outside what the IOMMU allows`);
  if (lent) {
    const l = r.lease;
    assert.ok(l !== undefined, `${at}: a lease record`);
    // Every byte the guest moved went through the lender's DMA window (PRP lists add more).
    const moved = read + s.write.count * 512;
    assert.ok(l.dmaBytes >= moved, `${at}: ${l.dmaBytes} DMA bytes through the NTB < ${moved} moved`);
    assert.ok(l.dmaNtbCrossings > 0 && l.mmioNtbCrossings > 0, `${at}: doorbells and data crossed the NTB`);
    assert.equal(l.dmaFaults, 0, at);
    assert.equal(l.mmioRefused, 0, at);
    assert.equal(l.revoked, false, at);
  } else {
    assert.equal(r.lease, undefined, at);
  }
  if (transportOf(s.path) === 'paravirt') {
    const blk = (r.backend as { blk: Record<string, unknown> }).blk;
    const ssd = (blk.ssds as Array<Record<string, unknown>>)[0];
    assert.equal(ssd.name, lent ? 'nvme0@A' : 'nvme0', `${at}: blkback served the vbd from this SSD`);
    assert.ok((ssd.dmaCommands as number) > 0, `${at}: blkback hands the SSD device addresses of guest pages`);
    assert.equal(ssd.bounceCommands, 0, `${at}: blkback never bounces data through dom0`);
    assert.ok((ssd.flushes as number) >= 1, `${at}: the guest's flush became an NVMe FLUSH`);
    assert.ok((blk.indirect as number) >= 1, `${at}: the 75-page write used indirect segments`);
    assert.equal((r.backend as { liveMappings: number }).liveMappings, 0, `${at}: nothing stays mapped`);
  }
}

describe('block conformance with the lent path: six paths read what every other wrote, over one backing file', function () {
  this.timeout(120_000);

  it('the plan makes every path read every other path’s region', () => {
    const all = [...LOCAL_PATHS, ...LENT_PATHS];
    assert.deepEqual([...ORDER].sort(), [...all].sort());
    const want = all.flatMap((w) => all.filter((r) => r !== w).map((r) => `${w} → ${r}`));
    assert.deepEqual([...pairsOf(plan())].sort(), want.sort());
    for (const [i, p] of all.entries()) {
      for (const q of all.slice(i + 1)) {
        const [a, b] = [REGION[p], REGION[q]];
        assert.ok(a.sector + a.count <= b.sector || b.sector + b.count <= a.sector, `${p} and ${q} overlap`);
      }
    }
  });

  it('lent native/passthrough/paravirt and local paravirt/passthrough/native, interleaved, twice', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvio-lentpaths-'));
    const path = join(dir, 'nvme0.img');
    try {
      const steps = plan();
      const written: Region[] = [];
      for (const [k, s] of steps.entries()) {
        const r = await runPathStep(path, DISK, s);
        const at = `step ${k} (${s.path})`;
        checkStep(at, s, r, path);
        // The file, read by the test itself, holds every region written so far, lent or local.
        if (!written.includes(s.write)) written.push(s.write);
        const file = readFileSync(path);
        for (const w of written) {
          const who = ORDER.find((p) => REGION[p] === w);
          assert.equal(fileMismatches(file, w), 0, `${at}: region of ${who} in the file`);
        }
      }
      assert.equal(written.length, ORDER.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
