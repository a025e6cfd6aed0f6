/**
 * `pvio blk_lat --placement lent`: the fio-like guest on host B against host A's nvme0 lent over
 * an NTB — natively, passed through, and paravirt (B's dom0 serving a vbd from nvme0@A) — prints
 * fio's block with the lease's fabric counters, and its JSON carries them (whole run and timed
 * phase). Structure and counts only, never timings.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { blkFigures } from '../../../bench/blk/BlkJob.js';
import { formatBlkJob } from '../../../bench/blk/BlkReport.js';
import { counterDelta, countersOfWords, type LentBlkCounters } from '../../../bench/blk/LentBlkJob.js';
import { LentBig, LentStats, LentWord } from '../../../hypervisor-sim/cluster/LentStats.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));

/** A lease record's words after `mmioReads` MMIO reads of which each crossed the NTB once. */
function words(mmioReads: number, fabricNs: number): number[] {
  const s = new LentStats(LentStats.create());
  s.add(LentWord.MMIO_READS, mmioReads);
  s.add(LentWord.MMIO_NTB_CROSSINGS, mmioReads);
  s.addBig(LentBig.FABRIC_NS, fabricNs);
  return Array.from(s.words);
}

interface JobJson {
  mode: string;
  placement: string;
  ios: number;
  lent?: LentBlkCounters;
}

describe('bench/blk: the fio-like job on a lent SSD (--placement lent)', () => {
  it('timed counters are the difference of two copies of the lease record, 32-bit counters modulo 2^32', () => {
    const d = counterDelta(countersOfWords(words(3, 100)), countersOfWords(words(10, 350)));
    assert.equal(d.mmioReads, 7);
    assert.equal(d.mmioNtbCrossings, 7);
    assert.equal(d.fabricNs, 250);
    assert.equal(d.dmaReads, 0);
    const wrapped = counterDelta(countersOfWords(words(0xffff_fffe, 0)), countersOfWords(words(3, 0)));
    assert.equal(wrapped.mmioReads, 5, '0xfffffffe → 3 is 5 reads');
    assert.throws(() => countersOfWords([1, 2, 3]), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('a lent job is named lent-<mode> and ends with the fabric lines', () => {
    const timed = countersOfWords(words(20, 4000));
    const lent: LentBlkCounters = {
      device: 'nvme0@A',
      lender: 'A',
      borrower: 'B',
      profile: 'pcie3-x8-ntb',
      run: timed,
      timed,
      perIo: { ntbCrossings: 2, fabricNs: 400, dmaBytes: 4096 },
    };
    const r = blkFigures(
      { mode: 'native', placement: 'lent', rw: 'randread', bs: 4096, iodepth: 1, sizeBytes: 1 << 20 },
      {
        transport: 'native',
        clatUs: [1, 2],
        ios: 10,
        bytes: 40960,
        seconds: 0.1,
        sectorSize: 512,
        deviceBytes: 1 << 20,
      },
      0,
      0,
      1,
    );
    const text = formatBlkJob({ ...r, lent });
    assert.match(text, /^lent-native: \(g=0\): rw=randread, .*ioengine=pvio-lent-native, iodepth=1/m);
    assert.match(
      text,
      /^ {2}fabric \(nvme0@A lent by A to B, pcie3-x8-ntb\): per timed I\/O 2\.00 NTB crossings \(mmio 2\.00, dma 0\.00\),$/m,
    );
    assert.match(
      text,
      /^ {4}0\.40us modelled, 4\.0KiB DMA; whole run 20 crossings, 0\.00ms modelled, 0 faults, 0 refused$/m,
    );
    assert.doesNotMatch(formatBlkJob(r), /fabric \(/, 'a local job has no fabric lines');
  });

  it('pvio blk_lat --placement lent runs natively and passed through on B and prints each fio block with its counters', function () {
    this.timeout(60_000);
    const r = spawnSync(
      process.execPath,
      [PVIO, 'blk_lat', '-n', '50', '--mode', 'native,passthrough', '--size', '1m', '--placement', 'lent'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.match(/^lent-\w+: \(g=0\): rw=randread/gm)?.length, 2, r.stdout);
    assert.match(r.stdout, /^lent-native: .*ioengine=pvio-lent-native/m);
    assert.match(r.stdout, /^lent-passthrough: .*ioengine=pvio-lent-passthrough/m);
    assert.match(r.stdout, /clat percentiles \(usec\):/);
    const fabric = r.stdout.match(
      /^ {2}fabric \(nvme0@A lent by A to B, ideal\): per timed I\/O [\d.]+ NTB crossings/gm,
    );
    assert.equal(fabric?.length, 2, r.stdout);
    // ideal: the NTB was crossed but costs nothing; nothing faulted.
    assert.equal(
      r.stdout.match(/^ {4}0\.00us modelled, [\d.]+KiB DMA; .* 0 faults, 0 refused$/gm)?.length,
      2,
      r.stdout,
    );
  });

  it('--json: every job carries the lease counters, timed within the run; paravirt is served by B’s dom0 from nvme0@A', function () {
    this.timeout(60_000);
    const r = spawnSync(
      process.execPath,
      [
        PVIO,
        'blk_lat',
        '-n',
        '50',
        '--mode',
        'passthrough,paravirt',
        '--size',
        '1m',
        '--placement',
        'lent',
        '--fabric',
        'pcie3-x8-ntb',
        '--json',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { command: string; jobs: JobJson[] };
    assert.equal(doc.command, 'pvio blk_lat');
    assert.deepEqual(
      doc.jobs.map((j) => [j.mode, j.placement, j.ios]),
      [
        ['passthrough', 'lent', 50],
        ['paravirt', 'lent', 50],
      ],
    );
    for (const j of doc.jobs) {
      const l = j.lent;
      assert.ok(l, `${j.mode}: lent counters`);
      assert.deepEqual([l.device, l.lender, l.borrower, l.profile], ['nvme0@A', 'A', 'B', 'pcie3-x8-ntb']);
      const t = l.timed;
      // Each 4 KiB read rings a doorbell across the NTB and its data comes back through it.
      assert.ok(t.mmioNtbCrossings >= 50 && t.dmaNtbCrossings >= 2 * 50, JSON.stringify(t));
      assert.ok(t.dmaBytes >= 50 * 4096, 'the data crossed the DMA window');
      assert.equal(t.dmaFaults + t.mmioRefused, 0);
      assert.ok(t.fabricNs > 0, 'pcie3-x8-ntb charges the NTB route');
      assert.equal(l.perIo.ntbCrossings, (t.mmioNtbCrossings + t.dmaNtbCrossings) / 50);
      assert.equal(l.perIo.fabricNs, t.fabricNs / 50);
      // The whole run (bring-up, prefill, warm-up) holds the timed phase.
      assert.ok(l.run.mmioNtbCrossings + l.run.dmaNtbCrossings > t.mmioNtbCrossings + t.dmaNtbCrossings);
      assert.ok(l.run.fabricNs > t.fabricNs && l.run.dmaBytes > t.dmaBytes);
    }
  });
});
