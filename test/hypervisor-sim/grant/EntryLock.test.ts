import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { breakLocksOf, LOCK_CONTENDED, lockEntry, unlockEntry } from '../../../hypervisor-sim/grant/EntryLock.js';
import { GrantTableSpace } from '../../../hypervisor-sim/grant/GrantTableSpace.js';
import type { DomId } from '../../../protocol/Types.js';
import { CTL_COUNTER, CTL_WORDS, type GrantMapperData, type GrantMapperReport } from './helpers/GrantMapperWorker.js';

describe('grant entry lock (Xen active-entry lock)', () => {
  it('records its owner, and unlock frees the word', () => {
    const words = new Int32Array(new SharedArrayBuffer(16));
    lockEntry(words, 1, 3);
    assert.equal(words[1], 3);
    unlockEntry(words, 1);
    assert.equal(words[1], 0);
  });

  it('breakLocksOf frees only the dead owner\u2019s locks, contended or not', () => {
    const words = new Int32Array(new SharedArrayBuffer(4 * 8));
    // 4 entries of 2 words, lock in word 1.
    words[1] = 3;
    words[3] = 4;
    words[5] = 3 | LOCK_CONTENDED;
    assert.equal(breakLocksOf(words, 1, 2, 4, 3), 2);
    assert.deepEqual([...words], [0, 0, 0, 4, 0, 0, 0, 0]);
  });

  it('mutual exclusion across threads: a plain counter incremented under the lock loses no update', async () => {
    const space = GrantTableSpace.create({ maxDomains: 2, entriesPerDomain: 16 });
    const ctl = new SharedArrayBuffer(CTL_WORDS * 4);
    const counter = new Int32Array(ctl);
    const rounds = 200_000;
    const ref = 9;
    const data: GrantMapperData = {
      mode: 'lock',
      grantBuffer: space.buffer,
      grantConfig: space.config,
      granter: 1,
      granterMemory: new SharedArrayBuffer(4096),
      mapper: 0,
      mapperMemory: new SharedArrayBuffer(4096),
      ref,
      offset: 0,
      pattern: [],
      ctl,
      rounds,
    };
    const worker = new Worker(new URL('./helpers/GrantMapperWorker.js', import.meta.url), { workerData: data });
    try {
      const ready = (await once(worker, 'message'))[0] as GrantMapperReport;
      assert.equal(ready.type, 'ready');
      const done = once(worker, 'message');
      const base = space.entryBase(1 as DomId, ref);
      for (let i = 0; i < rounds; i++) {
        space.lock(base, 2);
        counter[CTL_COUNTER] = counter[CTL_COUNTER] + 1;
        space.unlock(base);
      }
      const report = (await done)[0] as GrantMapperReport;
      assert.equal(report.type, 'done');
      assert.equal(counter[CTL_COUNTER], 2 * rounds);
      assert.equal(space.snapshot(1, ref).lock, 0);
    } finally {
      await worker.terminate();
    }
  });
});
