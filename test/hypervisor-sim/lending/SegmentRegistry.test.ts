import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { SegmentRegistry } from '../../../hypervisor-sim/lending/SegmentRegistry.js';

describe('shared memory segments: export, map, unexport', () => {
  it('a mapping reaches the exporter memory itself and carries the exporter identity and base', () => {
    const segs = new SegmentRegistry();
    const mem = segs.export({ name: 'ring', host: 'A', size: 8192, base: 0x10_0000 });
    const m = segs.map('ring', 'B');
    assert.deepEqual([m.segment, m.exporter, m.base, m.size, m.mapper], ['ring', 'A', 0x10_0000, 8192, 'B']);
    m.write(100, Uint8Array.of(1, 2, 3));
    assert.deepEqual([...new Uint8Array(mem, 100, 3)], [1, 2, 3], 'the exporter sees the mapper write');
    new Uint8Array(mem)[8191] = 9;
    assert.equal(m.read(8191, 1)[0], 9, 'the mapper sees the exporter write');
    assert.deepEqual(segs.lookup('ring'), { name: 'ring', host: 'A', size: 8192, base: 0x10_0000, mappedBy: ['B'] });
  });

  it('a given buffer backs the segment; accesses outside the segment are OUT_OF_BOUNDS', () => {
    const segs = new SegmentRegistry();
    const backing = new SharedArrayBuffer(4096);
    assert.equal(segs.export({ name: 's', host: 'A', size: 1024, buffer: backing }), backing);
    const m = segs.map('s', 'B');
    assert.equal(m.view().length, 1024);
    assert.throws(() => m.read(1020, 8), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => m.write(-1, Uint8Array.of(1)), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => m.view(1.5, 1), { code: 'PV_ERR_OUT_OF_BOUNDS' });
  });

  it('unexport is IN_USE while mapped, NOT_HOLDER for another host, NOT_FOUND when unknown; after unmap it succeeds', () => {
    const segs = new SegmentRegistry();
    segs.export({ name: 's', host: 'A', size: 4096 });
    const b = segs.map('s', 'B');
    const c = segs.map('s', 'C');
    assert.throws(() => segs.unexport('s', 'A'), { code: 'PV_ERR_LEND_IN_USE', message: /mapped by B, C/ });
    assert.throws(() => segs.unexport('s', 'B'), { code: 'PV_ERR_LEND_NOT_HOLDER', message: /exported by A/ });
    assert.throws(() => segs.unexport('t', 'A'), { code: 'PV_ERR_LEND_NOT_FOUND' });
    assert.throws(() => segs.map('t', 'B'), { code: 'PV_ERR_LEND_NOT_FOUND' });
    b.unmap();
    b.unmap(); // idempotent
    assert.throws(() => b.read(0, 1), { code: 'PV_ERR_LEND_NOT_HOLDER' });
    assert.deepEqual(segs.lookup('s').mappedBy, ['C']);
    c.unmap();
    assert.equal(segs.unexport('s', 'A'), 0);
    assert.throws(() => segs.lookup('s'), { code: 'PV_ERR_LEND_NOT_FOUND' });
    assert.deepEqual(segs.list(), []);
  });

  it('a forced unexport revokes every mapping: each is told, and later accesses throw REVOKED', () => {
    const segs = new SegmentRegistry();
    segs.export({ name: 's', host: 'A', size: 4096 });
    const told: string[] = [];
    const b = segs.map('s', 'B', { onRevoke: (e) => told.push(`B:${e.code}`) });
    const c = segs.map('s', 'C', {
      onRevoke: () => {
        throw new Error('broken callback');
      },
    });
    const d = segs.map('s', 'D', { onRevoke: (e) => told.push(`D:${e.code}`) });
    assert.throws(() => segs.unexport('s', 'A', { force: true }), /broken callback/);
    assert.deepEqual(
      told,
      ['B:PV_ERR_LEND_REVOKED', 'D:PV_ERR_LEND_REVOKED'],
      'a throwing callback does not stop the rest',
    );
    for (const m of [b, c, d]) {
      assert.equal(m.ended, true);
      assert.throws(() => m.view(), { code: 'PV_ERR_LEND_REVOKED', message: /unexported by A/ });
    }
    // The name is free again.
    segs.export({ name: 's', host: 'E', size: 16 });
    assert.equal(segs.lookup('s').host, 'E');
  });

  it('export rejects a taken name, a bad size or base, and a buffer too small', () => {
    const segs = new SegmentRegistry();
    segs.export({ name: 's', host: 'A', size: 16 });
    for (const spec of [
      { name: 's', host: 'B', size: 16 },
      { name: 'x', host: 'A', size: 0 },
      { name: 'x', host: 'A', size: 2.5 },
      { name: 'x', host: 'A', size: 16, base: -4096 },
      { name: 'x', host: 'A', size: 64, buffer: new SharedArrayBuffer(32) },
      { name: 'x', host: '', size: 16 },
      { name: '', host: 'A', size: 16 },
    ]) {
      assert.throws(() => segs.export(spec), { code: 'PV_ERR_INVALID_ARG' }, JSON.stringify(spec));
    }
  });

  it('a mapping is shared memory: a Worker writing through the segment buffer is seen by the mapper', async () => {
    const segs = new SegmentRegistry();
    const mem = segs.export({ name: 'w', host: 'A', size: 64 });
    const m = segs.map('w', 'B');
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads');
       const words = new Int32Array(workerData);
       words[1] = 0x5eed;
       Atomics.store(words, 0, 1);
       Atomics.notify(words, 0);`,
      { eval: true, workerData: mem },
    );
    await new Promise<void>((resolve, reject) => {
      worker.once('exit', () => resolve());
      worker.once('error', reject);
    });
    const words = new Int32Array(m.view().buffer, 0, 2);
    // ORDERING: seq-cst load of the flag the worker stored after its data word.
    assert.equal(Atomics.load(words, 0), 1);
    assert.equal(words[1], 0x5eed);
  });
});
