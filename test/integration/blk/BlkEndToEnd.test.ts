/**
 * The block split driver across real Workers: a guest domain connects its vbd through xenbus to
 * dom0's blkback program, which serves it from a FileBlockDevice over a temp file. The guest
 * writes patterns with direct and indirect requests (and 64 at once), flushes, reads them back,
 * then attacks the ring; the test checks the BACKING FILE holds the data at sector × 512, every
 * hostile request got an error status with zero padding, and blkback ends with no mapping.
 *
 * The vbd is plugged with `host.addDevice({ type: 'vbd', … })` on a Host built here (the
 * scenario runner only starts the RDMA backend, so dom0 runs the blkback program directly).
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { BlkifStatus } from '../../../protocol/blkif/BlkifConstants.js';
import { patternByte, REGIONS, SCATTER, SCATTER_BASE, SEED } from './programs/BlkGuest.js';

const BACKEND = new URL('../../../backend/blk/BlkBackendProgram.js', import.meta.url);
const GUEST = new URL('./programs/BlkGuest.js', import.meta.url);
const DISK_BYTES = 16 << 20;

interface GuestResult {
  mismatches: number;
  notes: string[];
  statuses: Record<string, number>;
  paddingNonZero: number;
  racedStatuses: number[];
  badResponses: number;
  info: { sectors: number; sectorSize: number; maxIndirectSegments: number; flush: boolean };
}

interface BackendResult {
  connects: number;
  disconnects: number;
  halted: number;
  okay: number;
  errors: number;
  eopnotsupp: number;
  indirect: number;
  flushes: number;
  refusals: Record<string, number>;
  liveMappings: number;
  liveMappingsAtShutdown: number;
  watcherErrors: string[];
}

describe('integration: guest blkfront ↔ dom0 blkback over a file, real Workers', function () {
  this.timeout(120_000);

  it('patterns land in the backing file at sector × 512; hostile requests get errors; nothing stays mapped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvio-blk-it-'));
    const path = join(dir, 'disk.img');
    const host = new Host({ name: 'blk-host' });
    try {
      const dom0 = host.createDomain({ name: 'dom0', program: BACKEND, args: { path, sizeBytes: DISK_BYTES } });
      const guest = host.createDomain({ name: 'guest1', program: GUEST, memoryBytes: 16 << 20 });
      await host.addDevice({ type: 'vbd', devid: 0, frontDomid: guest.domid, backDomid: dom0.domid });
      const g = (await guest.result).value as GuestResult;
      const b = (await host.shutdownDomain(dom0.domid)).value as BackendResult;

      assert.deepEqual(g.info, {
        ...g.info,
        sectors: DISK_BYTES / 512,
        sectorSize: 512,
        maxIndirectSegments: 256,
        flush: true,
      });
      assert.equal(g.mismatches, 0, g.notes.join('; '));
      assert.equal(g.badResponses, 0);

      // The backing file, read by the test itself.
      const file = readFileSync(path);
      assert.equal(file.length, DISK_BYTES);
      for (const [sector, count] of REGIONS) {
        for (let i = 0; i < count * 512; i++) {
          const a = sector * 512 + i;
          if (file[a] !== patternByte(a, SEED))
            assert.fail(`file byte ${a} (sector ${sector} + ${i >> 9}) is ${file[a]}`);
        }
      }
      for (let i = 0; i < SCATTER; i++) {
        const a = (SCATTER_BASE + i * 3) * 512;
        for (let j = 0; j < 512; j++) if (file[a + j] !== patternByte(a + j, SEED)) assert.fail(`scatter sector ${i}`);
        for (let j = 512; j < 1024; j++)
          assert.equal(file[a + j], 0, 'the sectors between scattered writes stay holes');
      }

      // Hostile requests: an error status each, with zero padding.
      const expected: Record<string, number> = {
        'bad op': BlkifStatus.EOPNOTSUPP,
        'nseg 0': BlkifStatus.ERROR,
        'nseg 12': BlkifStatus.ERROR,
        'nseg 257': BlkifStatus.ERROR,
        'first > last': BlkifStatus.ERROR,
        'last 8': BlkifStatus.ERROR,
        'past the end': BlkifStatus.ERROR,
        'near 2^64': BlkifStatus.ERROR,
        'forged gref': BlkifStatus.ERROR,
        'foreign gref': BlkifStatus.ERROR,
      };
      assert.deepEqual(g.statuses, expected);
      assert.equal(g.paddingNonZero, 0);
      assert.equal(g.racedStatuses.length, 50);
      for (const s of g.racedStatuses)
        assert.ok(s === BlkifStatus.OKAY || s === BlkifStatus.ERROR || s === BlkifStatus.EOPNOTSUPP);

      // The backend's side: typed refusals, flushes done, no ring halted, nothing mapped.
      assert.equal(b.connects, 1);
      assert.equal(b.disconnects, 1);
      assert.equal(b.halted, 0);
      assert.ok(b.flushes >= 1);
      assert.ok(b.indirect >= 4 + 3);
      assert.equal(
        b.refusals.PV_ERR_BAD_OP ?? 0,
        1 + g.racedStatuses.filter((s) => s === BlkifStatus.EOPNOTSUPP).length,
      );
      assert.ok((b.refusals.PV_ERR_BLK_BAD_SEGMENT ?? 0) >= 5);
      assert.ok((b.refusals.PV_ERR_BLK_BAD_SECTOR ?? 0) >= 2);
      const grantRefusals = Object.entries(b.refusals).filter(([c]) => c.startsWith('PV_ERR_GRANT_'));
      assert.ok(grantRefusals.reduce((n, [, v]) => n + v, 0) >= 2, JSON.stringify(b.refusals));
      assert.equal(b.liveMappingsAtShutdown, 0);
      assert.equal(b.liveMappings, 0);
      assert.deepEqual(b.watcherErrors, []);
    } finally {
      await host.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
