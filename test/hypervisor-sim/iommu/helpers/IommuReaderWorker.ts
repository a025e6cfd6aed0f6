/**
 * Worker side of the cross-thread IOMMU test: attaches to the context and to the two target
 * memories, then resolves every window page with several lengths, for reads and writes, until
 * `ctl[CTL_STOP]` is set. Every successful resolution is checked against the page tags the test
 * wrote: a torn extent (the domain of one mapping with the frame, length or permission of
 * another) lands on an untagged page, on the wrong domain's tag, or writes a read-only mapping.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { emptyDmaRef } from '../../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext, type IommuDescriptor } from '../../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { domId, PAGE_SIZE } from '../../../../protocol/Types.js';

/** `ctl` word: the test sets it to stop the worker. */
export const CTL_STOP = 0;
/** `ctl` word: successful resolutions so far. */
export const CTL_HITS = 1;
/** `ctl` word: resolutions that broke an extent's invariants. */
export const CTL_VIOLATIONS = 2;
/** `ctl` word: rounds over the whole window. */
export const CTL_ROUNDS = 3;
/** Words in `ctl`. */
export const CTL_WORDS = 4;

/** The writable extent's target: domain, first frame, pages; each page tagged TAG_A + gfn. */
export const EXTENT_A = { domid: 1, gfn: 10, pages: 4 } as const;
/** The read-only extent's target; each page tagged TAG_B + gfn. */
export const EXTENT_B = { domid: 2, gfn: 20, pages: 2 } as const;
/** Tag base of A's pages. */
export const TAG_A = 0xa000;
/** Tag base of B's pages. */
export const TAG_B = 0xb000;

/** What the test passes in `workerData`. */
export interface IommuReaderData {
  readonly iommu: IommuDescriptor;
  readonly memories: ReadonlyArray<{ readonly domid: number; readonly buffer: SharedArrayBuffer }>;
  readonly windowBase: number;
  readonly windowPages: number;
  readonly ctl: SharedArrayBuffer;
}

/** Messages the worker posts. */
export type IommuReaderReport =
  | { readonly type: 'ready' }
  | { readonly type: 'done'; readonly firstViolation: string | null };

/** Tag expected in the first word of page `gfn` of `domid`, or -1 if that page is never mapped. */
export function expectedTag(domid: number, gfn: number): number {
  if (domid === EXTENT_A.domid && gfn >= EXTENT_A.gfn && gfn < EXTENT_A.gfn + EXTENT_A.pages) return TAG_A + gfn;
  if (domid === EXTENT_B.domid && gfn >= EXTENT_B.gfn && gfn < EXTENT_B.gfn + EXTENT_B.pages) return TAG_B + gfn;
  return -1;
}

function run(): void {
  const data = workerData as IommuReaderData;
  const port = parentPort;
  if (!port) return;
  const directory = new MemoryDirectory();
  for (const m of data.memories) directory.add(domId(m.domid), m.buffer);
  const ctx = IommuContext.attach(data.iommu, directory);
  const ctl = new Int32Array(data.ctl);
  const ref = emptyDmaRef();
  const lengths = [PAGE_SIZE, 2 * PAGE_SIZE, 4 * PAGE_SIZE, 3 * PAGE_SIZE - 8];
  let firstViolation: string | null = null;
  port.postMessage({ type: 'ready' } satisfies IommuReaderReport);
  // ORDERING: seq-cst load of the stop flag the test stores.
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    for (let p = 0; p < data.windowPages; p++) {
      const iova = (data.windowBase + p) * PAGE_SIZE;
      for (let k = 0; k < lengths.length * 2; k++) {
        const len = lengths[k >> 1];
        const write = (k & 1) === 1;
        if (!ctx.resolve(iova, len, write, ref)) continue;
        // ORDERING: counters read by the test after it stops us.
        Atomics.add(ctl, CTL_HITS, 1);
        const problem = check(ref.domid, ref.offset, len, write, ref.words);
        if (problem !== null) {
          Atomics.add(ctl, CTL_VIOLATIONS, 1);
          firstViolation ??= `iova page ${data.windowBase + p} len ${len} write ${write}: ${problem}`;
        }
      }
    }
    // ORDERING: progress counter the test waits on.
    Atomics.add(ctl, CTL_ROUNDS, 1);
  }
  port.postMessage({ type: 'done', firstViolation } satisfies IommuReaderReport);
}

function check(domid: number, offset: number, len: number, write: boolean, words: Int32Array): string | null {
  if (offset % PAGE_SIZE !== 0) return `offset ${offset} not page aligned`;
  if (write && domid === EXTENT_B.domid) return 'write resolved into the read-only extent';
  const gfn = offset / PAGE_SIZE;
  for (let i = 0; i * PAGE_SIZE < len; i++) {
    const want = expectedTag(domid, gfn + i);
    const got = words[(gfn + i) * (PAGE_SIZE / 4)];
    if (want < 0 || got !== want) return `domain ${domid} frame ${gfn + i} is not a mapped frame (tag ${got})`;
  }
  return null;
}

run();
