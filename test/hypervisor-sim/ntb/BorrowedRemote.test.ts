import assert from 'node:assert/strict';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { BorrowedRemote } from '../../../hypervisor-sim/ntb/BorrowedRemote.js';
import { MAX_MESSAGE_BULK } from '../../../protocol/link/LinkFrame.js';
import type { DmaReqMsg } from '../../../protocol/link/LinkSchema.js';
import { domId } from '../../../protocol/Types.js';

const LEASE = 'lease-3';

function rig(mode: 'translate' | 'bypass' = 'translate'): { mem: SharedArrayGuestMemory; borrowed: BorrowedRemote } {
  const mem = SharedArrayGuestMemory.create(domId(1), 1 << 20);
  const dir = new MemoryDirectory();
  dir.addMemory(mem);
  const iommu = IommuContext.attach(IommuContext.create({ device: 'nvme0@hostA' }), dir);
  iommu.assign(domId(1), mem.size, mode);
  return { mem, borrowed: new BorrowedRemote({ lease: LEASE, resolver: iommu, lender: 'hostA' }) };
}

const read = (iova: number, length: number): DmaReqMsg => ({ lease: LEASE, iova, length, write: false });
const write = (iova: number, length: number): DmaReqMsg => ({ lease: LEASE, iova, length, write: true });

describe('ntb BorrowedRemote: the borrower applies the lender device DMA through its own IOMMU', () => {
  it('a read returns a copy of the mapped bytes; a write lands exactly in the range', async () => {
    for (const mode of ['translate', 'bypass'] as const) {
      const { mem, borrowed } = rig(mode);
      mem.bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 4096);
      const r = await borrowed.dma(read(4096, 8));
      assert.deepEqual([...(r.bulk ?? [])], [1, 2, 3, 4, 5, 6, 7, 8]);
      mem.bytes[4096] = 9;
      assert.equal(r.bulk?.[0], 1, 'a copy, not a view');
      await borrowed.dma(write(8193, 9), Uint8Array.from([10, 11, 12, 13, 14, 15, 16, 17, 18]));
      assert.deepEqual([...mem.bytes.subarray(8192, 8203)], [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 0]);
      assert.equal(borrowed.stats.reads, 1);
      assert.equal(borrowed.stats.writes, 1);
    }
  });

  it('a write ending on a word stores that last word atomically and wakes a sleeper on it', async () => {
    const { mem, borrowed } = rig();
    const words = new Int32Array(mem.buffer);
    const cqe = Uint8Array.from([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0x11, 0x22, 0x01, 0x00]);
    const sleeper = (
      Atomics as unknown as {
        waitAsync: (
          a: Int32Array,
          i: number,
          v: number,
          t: number,
        ) => { async: boolean; value: Promise<string> | string };
      }
    ).waitAsync(words, (16384 + 12) / 4, 0, 10_000);
    await borrowed.dma(write(16384, 16), cqe);
    assert.equal(sleeper.async, true);
    assert.equal(await sleeper.value, 'ok', 'the sleeper was notified, not timed out');
    assert.equal(Atomics.load(words, (16384 + 12) / 4), 0x0001_2211);
    assert.deepEqual([...mem.bytes.subarray(16384, 16400)], [...cqe]);
  });

  it('hostile requests are refused with typed errors and touch nothing', async () => {
    const { mem, borrowed } = rig();
    const cases: Array<[DmaReqMsg, Uint8Array | undefined, string]> = [
      [read(0, 0), undefined, 'PV_ERR_BAD_LENGTH'],
      [read(0, -4), undefined, 'PV_ERR_BAD_LENGTH'],
      [read(0, 1.5), undefined, 'PV_ERR_BAD_LENGTH'],
      [read(0, MAX_MESSAGE_BULK + 1), undefined, 'PV_ERR_BAD_LENGTH'],
      [read(-4096, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [read(2 ** 53, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [read(Number.NaN, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [read(Number.MAX_SAFE_INTEGER - 2, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [read(mem.size, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [read(mem.size - 4, 8), undefined, 'PV_ERR_OUT_OF_BOUNDS'],
      [write(mem.size + 4096, 4), new Uint8Array(4), 'PV_ERR_OUT_OF_BOUNDS'],
      [write(0, 8), new Uint8Array(4), 'PV_ERR_BAD_LENGTH'],
      [write(0, 8), undefined, 'PV_ERR_BAD_LENGTH'],
      [read(0, 8), new Uint8Array(8), 'PV_ERR_BAD_LENGTH'],
      [{ ...read(0, 8), lease: 'lease-other' }, undefined, 'PV_ERR_BAD_REQUEST'],
    ];
    for (const [req, bulk, code] of cases) {
      await assert.rejects(borrowed.dma(req, bulk), { code }, JSON.stringify(req));
    }
    assert.equal(borrowed.stats.refused, cases.length);
    assert.equal(borrowed.stats.bytes, 0);
    assert.ok(
      mem.bytes.every((b) => b === 0),
      'memory untouched',
    );
    const ok = await borrowed.dma(read(0, 8));
    assert.equal(ok.bulk?.length, 8, 'still serving after hostile requests');
  });

  it('after revoke every request is refused with PV_ERR_LEND_REVOKED', async () => {
    const { borrowed } = rig();
    borrowed.revoke('returned by the borrower');
    assert.equal(borrowed.revoked, true);
    await assert.rejects(borrowed.dma(read(0, 8)), {
      code: 'PV_ERR_LEND_REVOKED',
      message: /returned by the borrower/,
    });
    await assert.rejects(borrowed.dma(write(0, 4), new Uint8Array(4)), { code: 'PV_ERR_LEND_REVOKED' });
  });
});
