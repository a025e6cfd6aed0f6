import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { IommuWord } from '../../../hypervisor-sim/iommu/IommuLayout.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, type Gfn, type Iova, PAGE_SIZE } from '../../../protocol/Types.js';
import {
  CTL_HITS,
  CTL_ROUNDS,
  CTL_STOP,
  CTL_VIOLATIONS,
  CTL_WORDS,
  EXTENT_A,
  EXTENT_B,
  expectedTag,
  type IommuReaderData,
  type IommuReaderReport,
} from './helpers/IommuReaderWorker.js';

/** Successful resolutions the reader must make while the tables change under it. */
const ENOUGH_HITS = 20_000;
/** Map/unmap rounds the writer runs at least (each races the reader's sweeps). */
const MIN_ROUNDS = 500_000;
/** Until the reader has its hits, every this many rounds both extents stay mapped for two sweeps. */
const DWELL_EVERY = 128;
/** Map/unmap rounds the writer may run before the test gives up (bounded, never hangs). */
const MAX_ROUNDS = 2_000_000;
const WINDOW_PAGES = 16;

/** Owner 0 and the two target domains; every target page tagged (see the worker). */
function memories() {
  const list = [0, EXTENT_A.domid, EXTENT_B.domid].map((d) =>
    SharedArrayGuestMemory.create(d as DomId, 64 * PAGE_SIZE),
  );
  for (const m of list.slice(1)) {
    const words = new Int32Array(m.buffer);
    for (let gfn = 0; gfn < m.pageCount; gfn++) words[gfn * (PAGE_SIZE / 4)] = expectedTag(m.domid, gfn);
  }
  const directory = new MemoryDirectory();
  for (const m of list) directory.addMemory(m);
  return { list, directory };
}

describe('iommu seqlock: a worker resolving while the main thread maps and unmaps never sees a torn extent', function () {
  this.timeout(120_000);

  it('every resolution lands on a frame of the extent it came from, with its permission', async () => {
    const { list, directory } = memories();
    const desc = IommuContext.create({ device: 'nic0', windowPages: WINDOW_PAGES, maxExtents: 4 });
    const ctx = IommuContext.attach(desc, directory);
    ctx.assign(0 as DomId, list[0].size, 'translate');
    const ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    const data: IommuReaderData = {
      iommu: desc,
      memories: list.map((m) => ({ domid: m.domid, buffer: m.buffer })),
      windowBase: new Int32Array(desc.buffer)[IommuWord.WINDOW_BASE],
      windowPages: WINDOW_PAGES,
      ctl: ctl.buffer as SharedArrayBuffer,
    };
    const worker = new Worker(new URL('./helpers/IommuReaderWorker.js', import.meta.url), { workerData: data });
    try {
      assert.deepEqual((await once(worker, 'message'))[0], { type: 'ready' });
      const mapA = (): Iova => ctx.mapForeign(EXTENT_A.domid as DomId, EXTENT_A.gfn as Gfn, EXTENT_A.pages, true);
      const mapB = (): Iova => ctx.mapForeign(EXTENT_B.domid as DomId, EXTENT_B.gfn as Gfn, EXTENT_B.pages, false);
      const unmap = (iova: Iova): void => {
        const g = ctx.generation();
        assert.equal(ctx.unmapForeign(iova), true);
        assert.equal(ctx.generation(), g + 1, 'every unmap bumps the generation');
      };
      const idle = new Int32Array(new SharedArrayBuffer(4));
      // Both extents stay mapped until the reader has swept the window twice (bounded), so hits
      // do not depend on how the scheduler interleaves the two threads.
      const dwell = (): void => {
        const a = mapA();
        const b = mapB();
        // ORDERING: seq-cst loads of the reader's sweep counter.
        const sweeps = Atomics.load(ctl, CTL_ROUNDS);
        for (let i = 0; i < 2000 && Atomics.load(ctl, CTL_ROUNDS) < sweeps + 2; i++) {
          // ORDERING: nobody notifies `idle`: a 1 ms sleep.
          Atomics.wait(idle, 0, 0, 1);
        }
        unmap(b);
        unmap(a);
      };
      let rounds = 0;
      // ORDERING: seq-cst load of the reader's counter.
      for (; rounds < MAX_ROUNDS && (rounds < MIN_ROUNDS || Atomics.load(ctl, CTL_HITS) < ENOUGH_HITS); rounds++) {
        if (rounds % DWELL_EVERY === DWELL_EVERY - 1 && Atomics.load(ctl, CTL_HITS) < ENOUGH_HITS) dwell();
        // Vary the order so a slot is reused for the other extent as soon as it is freed.
        if (rounds % 3 === 0) {
          unmap(mapA());
          unmap(mapB());
        } else if (rounds % 3 === 1) {
          const a = mapA();
          const b = mapB();
          unmap(a);
          unmap(b);
        } else {
          const b = mapB();
          const a = mapA();
          unmap(b);
          unmap(a);
        }
      }
      // ORDERING: seq-cst store; the worker polls it once per sweep.
      Atomics.store(ctl, CTL_STOP, 1);
      const done = (await once(worker, 'message'))[0] as IommuReaderReport;
      assert.equal(done.type, 'done');
      assert.equal(done.type === 'done' ? done.firstViolation : null, null);
      assert.equal(Atomics.load(ctl, CTL_VIOLATIONS), 0);
      assert.ok(
        Atomics.load(ctl, CTL_HITS) >= ENOUGH_HITS,
        `the reader resolved only ${Atomics.load(ctl, CTL_HITS)} times in ${rounds} writer rounds (${Atomics.load(ctl, CTL_ROUNDS)} sweeps)`,
      );
      assert.equal(ctx.liveExtents(), 0);
    } finally {
      Atomics.store(ctl, CTL_STOP, 1);
      await worker.terminate();
    }
  });
});
