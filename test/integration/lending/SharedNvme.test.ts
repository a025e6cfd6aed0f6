/**
 * Shared use of one NVMe SSD (SmartIO): A lends nvme0 shareable; B and C each borrow one queue
 * (registry queue k → I/O queue id k + 1), get their own SQ/CQ pair created by A's queue manager
 * (the admin queue stays with A), and run I/O at the same time on disjoint LBA ranges. Neither can
 * touch the other's queues, the admin queue or the controller registers.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { MAILBOX_BYTES, MailboxWord } from '../../../hypervisor-sim/cluster/SharedNvme.js';
import { NvmeStatus } from '../../../protocol/nvme/NvmeCommand.js';

const PROBE = new URL('./programs/LentNvmeProbe.js', import.meta.url);
const SIZE = 8 << 20;

interface SharedOut {
  qid: number;
  created: number;
  same: boolean;
  ok: boolean;
  otherSqDoorbell: string;
  otherCqDoorbell: string;
  adminDoorbell: string;
  ccWrite: string;
  capRead: string;
  deleted: number;
  outsideWindow: number;
}

function patternInFile(file: Buffer, lba: number, blocks: number, seed: number): boolean {
  for (let b = lba; b < lba + blocks; b++) {
    const want = (b * 7 + seed) & 0xff;
    for (let i = b * 512; i < (b + 1) * 512; i++) if (file[i] !== want) return false;
  }
  return true;
}

describe('mailbox layout (SharedNvme.ts offset table)', () => {
  it('the word indices of the file comment hold: byte = word · 4, 64 bytes', () => {
    assert.equal(MAILBOX_BYTES, 64);
    const bytes: Record<string, number> = {
      MAGIC: MailboxWord.MAGIC * 4,
      REQ_SEQ: MailboxWord.REQ_SEQ * 4,
      DONE_SEQ: MailboxWord.DONE_SEQ * 4,
      OP: MailboxWord.OP * 4,
      ENTRIES: MailboxWord.ENTRIES * 4,
      SQ_LO: MailboxWord.SQ_LO * 4,
      SQ_HI: MailboxWord.SQ_HI * 4,
      CQ_LO: MailboxWord.CQ_LO * 4,
      CQ_HI: MailboxWord.CQ_HI * 4,
      STATUS: MailboxWord.STATUS * 4,
      QID: MailboxWord.QID * 4,
    };
    assert.deepEqual(bytes, {
      MAGIC: 0,
      REQ_SEQ: 4,
      DONE_SEQ: 8,
      OP: 12,
      ENTRIES: 16,
      SQ_LO: 20,
      SQ_HI: 24,
      CQ_LO: 28,
      CQ_HI: 32,
      STATUS: 36,
      QID: 40,
    });
  });
});

describe('one NVMe shared by B and C, each with its own queue pair (SmartIO)', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const handles: Record<string, LentHandle> = {};
  const out: Record<string, SharedOut> = {};
  const ranges = { B: { lba: 0, blocks: 512, seed: 11 }, C: { lba: 4096, blocks: 512, seed: 29 } };

  before(async () => {
    cluster = new Cluster({
      hosts: [{ name: 'A', nvmes: [{ name: 'nvme0', sizeBytes: SIZE, maxIoQueues: 4 }] }, { name: 'B' }, { name: 'C' }],
    });
    await cluster.lend('A', 'nvme0', { shareable: true });
    handles.B = await cluster.borrow('nvme0@A', 'B', { mode: 'shared' });
    handles.C = await cluster.borrow('nvme0@A', 'C', { mode: 'shared' });
    const doms = (['B', 'C'] as const).map((h) =>
      cluster.host(h).createDomain({
        name: `io-${h}`,
        domid: 1,
        program: PROBE,
        memoryBytes: 16 << 20,
        pci: [{ device: 'nvme0@A', iommu: h === 'B' ? 'bypass' : 'translate' }],
        // Each tries the OTHER host's queue id.
        args: { mode: 'shared', ...ranges[h], otherQid: h === 'B' ? 2 : 1 },
      }),
    );
    const results = await Promise.all(doms.map((d) => d.result));
    out.B = results[0].value as SharedOut;
    out.C = results[1].value as SharedOut;
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('the registry hands out queue 0 and 1: B uses I/O queue 1, C I/O queue 2', () => {
    assert.equal(handles.B.qid, 1);
    assert.equal(handles.C.qid, 2);
    assert.equal(out.B.qid, 1);
    assert.equal(out.C.qid, 2);
  });

  it('both hosts wrote and read back their ranges at the same time, and both are in A’s file', () => {
    for (const h of ['B', 'C'] as const) {
      assert.equal(out[h].created, 0, `${h}: queue pair created by the lender`);
      assert.equal(out[h].ok, true, `${h}: every command succeeded`);
      assert.equal(out[h].same, true, `${h}: read back what it wrote`);
    }
    const file = readFileSync(cluster.host('A').devices.backingFile('nvme0'));
    for (const h of ['B', 'C'] as const) {
      const r = ranges[h];
      assert.equal(patternInFile(file, r.lba, r.blocks, r.seed), true, `${h}'s blocks in the file`);
    }
  });

  it("a host cannot ring the other host's doorbells, the admin queue's, or write CC; it can read registers", () => {
    for (const h of ['B', 'C'] as const) {
      assert.equal(out[h].otherSqDoorbell, 'PV_ERR_LEND_NOT_HOLDER');
      assert.equal(out[h].otherCqDoorbell, 'PV_ERR_LEND_NOT_HOLDER');
      assert.equal(out[h].adminDoorbell, 'PV_ERR_LEND_NOT_HOLDER');
      assert.equal(out[h].ccWrite, 'PV_ERR_LEND_NOT_HOLDER');
      assert.equal(out[h].capRead, 'ok');
      assert.ok(handles[h].stats.snapshot().mmioRefused >= 4);
    }
  });

  it('a queue pair outside the host’s own DMA window is refused by the lender’s queue check', () => {
    for (const h of ['B', 'C'] as const) {
      assert.equal(out[h].deleted, 0);
      assert.equal(out[h].outsideWindow, NvmeStatus.DATA_TRANSFER_ERROR);
    }
  });

  it('each host’s DMA crossed the NTB to its own memory only (no fault on the data path)', () => {
    for (const h of ['B', 'C'] as const) {
      const s = handles[h].stats.snapshot();
      assert.ok(s.dmaBytes >= 2 * 512 * 512, `${h}: ${JSON.stringify(s)}`);
      assert.equal(s.dmaNtbCrossings, s.dmaReads + s.dmaWrites);
    }
  });

  it('each lease returns on its own: C keeps its queue pair while B gives its back', async () => {
    for (const h of ['B', 'C'] as const) {
      await until(() => cluster.lending(h).owner('nvme0@A') === undefined, `${h}'s owner to go`);
    }
    assert.equal(cluster.inUse(handles.B), 0);
    await cluster.giveBack(handles.B);
    assert.equal(handles.B.stats.revoked, true);
    assert.equal(handles.C.stats.revoked, false, 'C keeps its lease');
    await cluster.giveBack(handles.C);
  });

  it('once every shared lease is back, B borrows it exclusively and the unchanged driver brings it up', async () => {
    const h = await cluster.borrow('nvme0@A', 'B');
    const d = cluster.host('B').createDomain({
      name: 'excl',
      domid: 2,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: [{ device: 'nvme0@A', iommu: 'bypass' }],
      args: { mode: 'exclusive', lba: 8192, blocks: 64, seed: 41 },
    });
    assert.equal(((await d.result).value as { same: boolean }).same, true);
    const file = readFileSync(cluster.host('A').devices.backingFile('nvme0'));
    assert.equal(patternInFile(file, 8192, 64, 41), true);
    assert.equal(patternInFile(file, 0, 512, 11), true, "B's shared-era blocks are still there");
    assert.equal(h.kind, 'nvme');
  });
});

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
