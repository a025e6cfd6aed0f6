import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { createMailbox } from '../../../hypervisor-sim/link/Mailbox.js';
import { serveDmaMailbox } from '../../../hypervisor-sim/ntb/RemoteDma.js';
import { pvError } from '../../../protocol/errors.js';
import { DEAD_FROM, type ProbeResult, pat, REFUSED_FROM } from './programs/RemoteDmaProbe.js';

const BOUND_MS = 20_000;
const MEM = 64 << 10;

/** One request as the fake borrower saw it. */
interface Seen {
  readonly write: boolean;
  readonly iova: number;
  readonly length: number;
}

describe('ntb RemoteDma: the lent device DMA fetched into staging and written back in order', () => {
  it('fetch, changed-bytes write-back in resolve order, chunking, early flush, overlap, faults and a latched link failure', async () => {
    const mem = new Uint8Array(MEM);
    for (let a = 0; a < MEM; a++) mem[a] = pat(a);
    const log: Seen[] = [];
    // 1 KiB chunks and 4 KiB of staging, so the probe's ranges split and overflow.
    const mailbox = createMailbox(1024);
    const server = serveDmaMailbox(mailbox, 'lease-9', async (req, bulk) => {
      assert.equal(req.lease, 'lease-9');
      if (req.iova >= DEAD_FROM) throw pvError('PV_ERR_PCIE_LINK_DOWN', 'host link to hostB is down');
      if (req.iova >= REFUSED_FROM) throw pvError('PV_ERR_OUT_OF_BOUNDS', 'not mapped');
      log.push({ write: req.write, iova: req.iova, length: req.length });
      if (!req.write) return { bulk: mem.slice(req.iova, req.iova + req.length) };
      assert.equal(bulk?.length, req.length);
      mem.set(bulk as Uint8Array, req.iova);
      return {};
    });
    const worker = new Worker(new URL('./programs/RemoteDmaProbe.js', import.meta.url), {
      workerData: { mailbox, stagingBytes: 4096 },
    });
    try {
      const result = await new Promise<ProbeResult>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('probe did not finish')), BOUND_MS);
        worker.on('message', (m: { result?: ProbeResult }) => {
          if (m.result) {
            clearTimeout(timer);
            resolve(m.result);
          }
        });
        worker.once('error', reject);
      });
      assert.deepEqual(result, {
        readBack: true,
        readAligned: true,
        overlapSawWrite: true,
        refused: true,
        tooBig: true,
        faultsBeforeDeath: 2,
        deadFetch: true,
        afterDeath: true,
        flushCode: 'PV_ERR_PCIE_LINK_DOWN',
      });
      const writes = (below: number): Seen[] => log.filter((e) => e.write && e.iova < below);
      // Step 1: the 3000-byte read came in 1 KiB chunks.
      assert.deepEqual(
        log.slice(0, 3).map((e) => e.length),
        [1024, 1024, 952],
      );
      // Step 2: only the changed word of the first range, then all of the second (chunked), in
      // resolve order; the validated range never travels back.
      assert.deepEqual(writes(10_000), [
        { write: true, iova: 5008, length: 4 },
        { write: true, iova: 6000, length: 1024 },
        { write: true, iova: 7024, length: 976 },
      ]);
      for (let a = 5000; a < 5016; a++) assert.equal(mem[a], a >= 5008 && a < 5012 ? pat(a) ^ 0xff : pat(a));
      for (let a = 6000; a < 8000; a++) assert.equal(mem[a], pat(a) ^ 0xff);
      // Step 3: the early flush stored [10000, 12000) before fetching [20000, 23000).
      const stored = log.findIndex((e) => e.write && e.iova === 10_000);
      const fetched = log.findIndex((e) => !e.write && e.iova === 20_000);
      assert.ok(stored >= 0 && fetched > stored, JSON.stringify(log));
      for (let a = 10_000; a < 12_000; a++) assert.equal(mem[a], 0x5a ^ pat(a));
      // Step 4: the overlapping write reached memory, as one word.
      assert.ok(log.some((e) => e.write && e.iova === 13_012 && e.length === 4));
      assert.equal(mem[13_015], pat(13_015) ^ 0xff);
    } finally {
      await worker.terminate();
      await server.stop();
    }
  });
});
