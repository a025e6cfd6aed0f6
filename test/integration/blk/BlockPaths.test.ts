/**
 * Block conformance across paths (issue 5, Tests): data written through each path — paravirt
 * (blkfront → dom0's blkback over nvme0, zero copy), passthrough (the guest owns nvme0, IOMMU
 * translating) and native (IOMMU bypass) — reads back through every other path, lies in the
 * backing file at sector × 512, and FLUSH reaches the media on each path. The runs are
 * sequential scenarios sharing one backing file given by path, as a disk image outlives VMs.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runScenario, type ScenarioResult } from '../../../hypervisor-sim/scenario/Scenario.js';
import type { Transport } from '../../../protocol/Pci.js';
import { type PathsReport, pathByte, type Region } from './programs/BlockPathsGuest.js';

const GUEST = new URL('./programs/BlockPathsGuest.js', import.meta.url);
const DISK = 16 << 20;

/** Region written by each path: sizes that need several segments, an indirect request, PRP lists. */
const REGION: Record<'paravirt' | 'passthrough' | 'native', Region> = {
  // 600 sectors = 75 pages: blkif indirect segments; 300 KiB from a mid-page buffer.
  paravirt: { sector: 1000, count: 600, seed: 1 },
  passthrough: { sector: 5003, count: 77, seed: 2 },
  native: { sector: 20000, count: 1030, seed: 3 },
};

async function run(path: string, transport: Transport, expect: Region[], write: Region): Promise<ScenarioResult> {
  return runScenario({
    host: { nics: 0, nvmes: [{ sizeBytes: DISK, backingFile: path }] },
    guests: [
      { name: 'g', program: GUEST, memoryMiB: 16, args: { expect, write }, devices: [{ device: 'nvme0', transport }] },
    ],
  });
}

function fileMismatches(file: Buffer, r: Region): number {
  let bad = 0;
  for (let i = 0; i < r.count * 512; i++) if (file[r.sector * 512 + i] !== pathByte(r.sector * 512 + i, r.seed)) bad++;
  return bad;
}

describe('block conformance: every path reads what every other path wrote, and it is in the backing file', function () {
  this.timeout(120_000);

  it('paravirt → passthrough → native → paravirt → passthrough over one backing file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvio-blkpaths-'));
    const path = join(dir, 'nvme0.img');
    try {
      const steps: Array<{ t: Transport; expect: Region[]; write: Region }> = [
        { t: 'paravirt', expect: [], write: REGION.paravirt },
        { t: 'passthrough', expect: [REGION.paravirt], write: REGION.passthrough },
        { t: 'native', expect: [REGION.paravirt, REGION.passthrough], write: REGION.native },
        // Rewrites its own region with the same pattern; the point is reading the other two.
        { t: 'paravirt', expect: [REGION.passthrough, REGION.native], write: REGION.paravirt },
        { t: 'passthrough', expect: [REGION.native], write: REGION.passthrough },
      ];
      for (const [k, s] of steps.entries()) {
        const r = await run(path, s.t, s.expect, s.write);
        const g = r.guests.g.value as PathsReport;
        const at = `step ${k} (${s.t})`;
        assert.equal(g.transport, s.t, at);
        assert.equal(g.sectorSize, 512, at);
        assert.equal(g.sectors, DISK / 512, at);
        assert.deepEqual(
          g.expectMismatches,
          s.expect.map(() => 0),
          `${at}: reads what the earlier paths wrote`,
        );
        assert.equal(g.ownMismatches, 0, `${at}: reads back its own write`);
        const m = r.counters.nvmes.nvme0;
        assert.ok(m.flushes >= 1, `${at}: FLUSH reached the controller`);
        assert.ok(m.fsyncs >= 1, `${at}: and the media (fsync)`);
        assert.equal(m.errors, 0, at);
        assert.equal(m.dmaFaults, 0, `${at}: no DMA outside what the IOMMU allows`);
        assert.equal(r.backingFiles.nvme0, path);
        const b = r.backend.value as Record<string, unknown> | undefined;
        if (s.t === 'paravirt') {
          const blk = (b as { blk: Record<string, unknown> }).blk;
          const ssd = (blk.ssds as Array<Record<string, number>>)[0];
          assert.ok(ssd.dmaCommands > 0, `${at}: blkback hands the SSD device addresses of guest pages`);
          assert.equal(ssd.bounceCommands, 0, `${at}: blkback never bounces data through dom0`);
          assert.ok(ssd.flushes >= 1, `${at}: the guest's flush became an NVMe FLUSH`);
          assert.ok((blk.indirect as number) >= 1, `${at}: the 75-page write used indirect segments`);
          assert.equal((b as { liveMappings: number }).liveMappings, 0, `${at}: nothing stays mapped`);
        }
        // The file, read by the test itself, holds every region written so far.
        const file = readFileSync(path);
        for (const done of steps.slice(0, k + 1)) {
          assert.equal(fileMismatches(file, done.write), 0, `${at}: region of ${done.t} in the file`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a guest asking for an SSD the host lacks, or through tcp, is refused naming the field', async () => {
    const g = { name: 'g', program: GUEST };
    await assert.rejects(runScenario({ guests: [{ ...g, devices: [{ device: 'nvme0', transport: 'paravirt' }] }] }), {
      code: 'PV_ERR_CONFIG',
      message: /^guests\[0\]\.devices\[0\]\.device: unknown device 'nvme0'/,
    });
    await assert.rejects(
      runScenario({ host: { nvmes: [{}] }, guests: [{ ...g, devices: [{ device: 'nvme0', transport: 'tcp' }] }] }),
      { code: 'PV_ERR_CONFIG', message: /^guests\[0\]\.devices\[0\]\.transport: an NVMe SSD is reached by/ },
    );
    await assert.rejects(runScenario({ host: { nvmes: [{ sizeBytes: 1000 }] }, guests: [g] }), {
      code: 'PV_ERR_CONFIG',
      message: /^host\.nvmes\[0\]\.sizeBytes: must be a positive multiple of 512/,
    });
  });
});
