/**
 * Worker side of the cross-thread grant tests: attaches to the host's GrantTableSpace and to the
 * granter's memory as domain `mapper`, then
 *  - 'once': maps `ref` writable, writes `pattern` at `offset` of the view, reports, and unmaps
 *    only when the test posts 'unmap';
 *  - 'stress': maps and unmaps whatever ref the test publishes in `ctl[CTL_REF]` until
 *    `ctl[CTL_STOP]` is set, raising `ctl[CTL_MAPPED]` while it holds a mapping, so the test can
 *    check that an end access never succeeds while the mapping is live;
 *  - 'lock': increments a plain (non-atomic) counter `rounds` times under an entry lock, so the
 *    test can check mutual exclusion.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  type GrantSpaceConfig,
  GrantTableSpace,
  GrantWord,
  GTF_reading,
  GTF_writing,
} from '../../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../../hypervisor-sim/grant/SimGrantOps.js';
import { MemoryDirectory } from '../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { toWireError, type WireError } from '../../../../protocol/errors.js';
import type { DomId, GrantRef } from '../../../../protocol/Types.js';

/** `ctl` word: the ref the test currently grants (stress). */
export const CTL_REF = 0;
/** `ctl` word: 1 while the worker holds a mapping (stress). */
export const CTL_MAPPED = 1;
/** `ctl` word: the test sets it to stop the worker (stress). */
export const CTL_STOP = 2;
/** `ctl` word: successful maps so far (stress). */
export const CTL_MAPS = 3;
/** `ctl` word: the plain counter incremented under the lock (lock). */
export const CTL_COUNTER = 4;
/** `ctl` word nobody writes: the test sleeps on it. */
export const CTL_IDLE = 5;
/** Words in `ctl`. */
export const CTL_WORDS = 8;

/** What the test passes in `workerData`. */
export interface GrantMapperData {
  readonly mode: 'once' | 'stress' | 'lock';
  readonly grantBuffer: SharedArrayBuffer;
  readonly grantConfig: GrantSpaceConfig;
  readonly granter: number;
  readonly granterMemory: SharedArrayBuffer;
  readonly mapper: number;
  readonly mapperMemory: SharedArrayBuffer;
  readonly ref: number;
  readonly offset: number;
  readonly pattern: readonly number[];
  readonly ctl: SharedArrayBuffer;
  readonly rounds: number;
}

/** Messages the worker posts. */
export type GrantMapperReport =
  | { readonly type: 'ready' }
  | { readonly type: 'mapped'; readonly viewLength: number; readonly liveMappings: number }
  | { readonly type: 'unmapped'; readonly liveMappings: number }
  | { readonly type: 'done'; readonly maps: number; readonly refused: number; readonly unflagged: number }
  | { readonly type: 'error'; readonly error: WireError };

function main(data: GrantMapperData, post: (m: GrantMapperReport) => void): void {
  const space = new GrantTableSpace(data.grantBuffer, data.grantConfig);
  const ctl = new Int32Array(data.ctl);
  const mapper = data.mapper as DomId;
  const granter = data.granter as DomId;
  if (data.mode === 'lock') {
    const base = space.entryBase(granter, data.ref);
    post({ type: 'ready' });
    for (let i = 0; i < data.rounds; i++) {
      space.lock(base, mapper + 1);
      ctl[CTL_COUNTER] = ctl[CTL_COUNTER] + 1;
      space.unlock(base);
    }
    post({ type: 'done', maps: 0, refused: 0, unflagged: 0 });
    return;
  }
  const memories = new MemoryDirectory();
  memories.add(granter, data.granterMemory);
  memories.add(mapper, data.mapperMemory);
  const ops = new SimGrantOps(mapper, space, memories);
  if (data.mode === 'once') {
    const mapping = ops.mapGrants(granter, [data.ref as GrantRef], true);
    mapping.view.set(data.pattern, data.offset);
    post({ type: 'mapped', viewLength: mapping.view.length, liveMappings: ops.liveMappings() });
    parentPort?.once('message', (msg: string) => {
      if (msg !== 'unmap') return;
      try {
        ops.unmapGrant(mapping.handle);
        post({ type: 'unmapped', liveMappings: ops.liveMappings() });
      } catch (err) {
        post({ type: 'error', error: toWireError(err) });
      }
    });
    return;
  }
  post({ type: 'ready' });
  let maps = 0;
  let refused = 0;
  let unflagged = 0;
  // ORDERING: seq-cst loads of the test's control words.
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const ref = Atomics.load(ctl, CTL_REF) as GrantRef;
    let handle: ReturnType<SimGrantOps['mapGrants']>['handle'];
    try {
      handle = ops.mapGrants(granter, [ref], true).handle;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'PV_ERR_GRANT_BAD_REF') throw err;
      refused++;
      continue;
    }
    // ORDERING: raised after the map returned, lowered before the unmap starts.
    Atomics.store(ctl, CTL_MAPPED, 1);
    const word0 = Atomics.load(space.words, space.entryBase(granter, ref) + GrantWord.FLAGS_DOMID);
    if ((word0 & (GTF_reading | GTF_writing)) !== (GTF_reading | GTF_writing)) unflagged++;
    // ORDERING: see above.
    Atomics.store(ctl, CTL_MAPPED, 0);
    ops.unmapGrant(handle);
    maps++;
    // ORDERING: progress counter for the test's loop bound.
    Atomics.store(ctl, CTL_MAPS, maps);
  }
  post({ type: 'done', maps, refused, unflagged });
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const post = (m: GrantMapperReport) => port.postMessage(m);
  try {
    main(workerData as GrantMapperData, post);
  } catch (err) {
    post({ type: 'error', error: toWireError(err) });
  }
}
