/**
 * Shared memory segments through NTB windows (ClusterSegments.ts, SegmentPool.ts), on counts and
 * bytes only:
 *  - the pool table matches its offset table, and a lookup is bounded to one live segment;
 *  - export on A, map on B: B's window routes onto A's segment (1 NTB); the exporter's and the
 *    mapper's program views see each other's writes;
 *  - accel0@A lent to B DMAs into the segment through B's window (A → B → A: 2 NTBs) and A's view
 *    sees the bytes (also from a borrower's Worker thread); a segment on C reached the same way crosses A → B → C;
 *  - a DMA past the segment's end faults with an error status and the device keeps working;
 *  - unmap closes the windows (the next DMA faults); unexport is refused while mapped, forced it
 *    revokes every mapping; the end of the lease closes its device path;
 *  - a full pool or slot table refuses an export and leaves no residue.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { AccelDriver } from '../../../drivers/accel/AccelDriver.js';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { attachLentAccel } from '../../../hypervisor-sim/cluster/LentAccel.js';
import {
  createSegmentPool,
  SEG_SLOT0,
  SEG_TABLE_BYTES,
  SEG_TABLE_MAGIC,
  SegmentPool,
} from '../../../hypervisor-sim/cluster/SegmentPool.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { AccelDmaDir, AccelStatus } from '../../../protocol/accel/AccelRegs.js';

const MEM = 1 << 20;
const SEG = 64 << 10;
const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 13 + 5) & 0xff);

async function setup(): Promise<{ cluster: Cluster; h: LentHandle; drv: AccelDriver }> {
  const cluster = new Cluster({
    hosts: [{ name: 'A', accels: [{ name: 'accel0', memBytes: MEM }] }, { name: 'B' }, { name: 'C' }],
  });
  const h = await cluster.borrow(await cluster.lend('A', 'accel0'), 'B');
  const data = cluster.lending('B').data(h.name);
  if (data.kind !== 'accel') throw new Error('not an accelerator');
  // The device attached in this thread, as the owner's domain thread would.
  const drv = new AccelDriver(attachLentAccel(data, new MemoryDirectory()).pci);
  new Uint8Array(cluster.host('A').devices.accelData('accel0').state.mem).set(pattern, 0);
  return { cluster, h, drv };
}

describe('segment pool table', () => {
  it('matches its offset table and bounds a lookup to one live segment', () => {
    const data = createSegmentPool('A', 1 << 30, 1 << 20);
    assert.equal(SEG_TABLE_BYTES, 16 + 16 * 32);
    assert.equal(data.table.byteLength, SEG_TABLE_BYTES);
    assert.equal(data.base, (1 << 30) - (1 << 20));
    const t = new Int32Array(data.table);
    assert.deepEqual([t[0], t[2]], [SEG_TABLE_MAGIC, 32]);
    const pool = new SegmentPool(data);
    const slot = pool.publish(0x1_0000, 100, 7);
    const s = SEG_SLOT0 + 4 * slot;
    assert.deepEqual([...t.subarray(s, s + 4)], [1, 0x1_0000, 100, 7]);
    assert.equal(t[1], 2, 'generation bracketed the write');
    assert.equal(pool.lookup(data.base + 0x1_0000 + 96, 4), 0x1_0000 + 96);
    assert.equal(pool.lookup(data.base + 0x1_0000 + 97, 4), -1, 'past the end');
    assert.equal(pool.lookup(data.base, 4), -1, 'outside every segment');
    pool.withdraw(slot);
    assert.equal(pool.lookup(data.base + 0x1_0000, 4), -1);
  });
});

describe('shared memory segments through NTB windows', function () {
  this.timeout(60_000);

  it('map on B opens a window onto A’s segment; program views on A and B see each other’s writes', async () => {
    const { cluster } = await setup();
    try {
      const exp = cluster.exportSegment('A', 'seg', SEG);
      const w = cluster.mapSegment('seg', 'B');
      assert.equal(w.exporter, 'A');
      assert.equal(w.ntbCrossings, 1);
      const r = cluster.fabric.route({ host: 'B', node: 'rc' }, (w.windowAddr + 8) as never, 4);
      assert.deepEqual(r.target, { kind: 'ram', host: 'A', addr: exp.base + 8 });
      assert.throws(() => cluster.fabric.route({ host: 'B', node: 'rc' }, (w.windowAddr + SEG) as never, 4));
      exp.local.set([1, 2, 3], 10);
      assert.deepEqual([...w.mapping.read(10, 3)], [1, 2, 3]);
      w.mapping.write(100, Uint8Array.of(9, 8));
      assert.deepEqual([...exp.local.subarray(100, 102)], [9, 8]);
      assert.deepEqual(cluster.segments.lookup('seg').mappedBy, ['B']);
    } finally {
      await cluster.shutdown();
    }
  });

  it('a device lent to B DMAs through B’s window into A’s segment (2 NTBs), and reads it back', async () => {
    const { cluster, h, drv } = await setup();
    try {
      const exp = cluster.exportSegment('A', 'seg', SEG);
      const w = cluster.mapSegment('seg', 'B');
      const dw = cluster.mapSegmentForDevice(w, h);
      // accel0 → sw → ntb-B on A, the NTB, B's adapter turns it round (its own aperture), the NTB,
      // ntb-B → sw → rc on A: 2 crossings, 4 links.
      assert.deepEqual([dw.ntbCrossings, dw.linkHops], [2, 4]);
      const before = h.stats.snapshot();
      assert.equal(drv.dmaRaw(dw.addr + 4096, 0, 4096, AccelDmaDir.FROM_DEVICE), AccelStatus.OK);
      assert.deepEqual(exp.local.subarray(4096, 8192), pattern);
      assert.deepEqual(w.mapping.read(4096, 4096), pattern, 'the mapper’s program sees the device’s write');
      exp.local.fill(0x5a, 0, 64);
      assert.equal(drv.dmaRaw(dw.addr, 8192, 64, AccelDmaDir.TO_DEVICE), AccelStatus.OK);
      const mem = new Uint8Array(cluster.host('A').devices.accelData('accel0').state.mem);
      assert.ok(mem.subarray(8192, 8256).every((b) => b === 0x5a));
      const s = h.stats.snapshot();
      assert.deepEqual(
        [s.dmaWrites - before.dmaWrites, s.dmaReads - before.dmaReads, s.dmaNtbCrossings - before.dmaNtbCrossings],
        [1, 1, 4],
      );
      assert.equal(s.dmaBytes - before.dmaBytes, 4096 + 64);
    } finally {
      await cluster.shutdown();
    }
  });

  it('from a borrower thread: the device’s DMA lands in A’s segment and reads what A’s program wrote', async () => {
    const { cluster, h } = await setup();
    try {
      // The record (with every pool) is posted first; the segment is exported after, as a
      // long-running domain would see it.
      const data = cluster.lending('B').data(h.name);
      const exp = cluster.exportSegment('A', 'seg', SEG);
      const w = cluster.mapSegment('seg', 'B');
      const dw = cluster.mapSegmentForDevice(w, h);
      exp.local.set(
        pattern.map((b) => b ^ 0xff),
        4096,
      );
      const worker = new Worker(new URL('./programs/SegmentDmaWorker.js', import.meta.url), {
        workerData: { data, addr: dw.addr, len: 4096 },
      });
      const r = await new Promise<{ write: number; read: number }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      await worker.terminate();
      assert.deepEqual(r, { write: AccelStatus.OK, read: AccelStatus.OK });
      assert.deepEqual(exp.local.subarray(0, 4096), pattern, 'A’s program sees the device’s write');
      assert.deepEqual(w.mapping.read(0, 4096), pattern, 'so does B’s');
      const mem = new Uint8Array(cluster.host('A').devices.accelData('accel0').state.mem);
      assert.deepEqual(
        mem.subarray(4096, 8192),
        pattern.map((b) => b ^ 0xff),
      );
      const s = h.stats.snapshot();
      assert.deepEqual([s.dmaWrites, s.dmaReads, s.dmaNtbCrossings], [1, 1, 4]);
    } finally {
      await cluster.shutdown();
    }
  });

  it('a segment exported by C is reached by accel0@A through B’s window (A → B → C)', async () => {
    const { cluster, h, drv } = await setup();
    try {
      const exp = cluster.exportSegment('C', 'segC', SEG);
      const dw = cluster.mapSegmentForDevice(cluster.mapSegment('segC', 'B'), h);
      assert.deepEqual([dw.ntbCrossings, dw.linkHops], [2, 6]);
      const before = h.stats.snapshot().dmaNtbCrossings;
      assert.equal(drv.dmaRaw(dw.addr + 64, 0, 256, AccelDmaDir.FROM_DEVICE), AccelStatus.OK);
      assert.deepEqual(exp.local.subarray(64, 320), pattern.subarray(0, 256));
      assert.equal(h.stats.snapshot().dmaNtbCrossings - before, 2);
    } finally {
      await cluster.shutdown();
    }
  });

  it('a DMA past the segment’s end faults with an error status; the device keeps working', async () => {
    const { cluster, h, drv } = await setup();
    try {
      const exp = cluster.exportSegment('A', 'seg', 5000);
      const dw = cluster.mapSegmentForDevice(cluster.mapSegment('seg', 'B'), h);
      const faults = h.stats.snapshot().dmaFaults;
      assert.equal(drv.dmaRaw(dw.addr + 4096, 0, 4096, AccelDmaDir.FROM_DEVICE), AccelStatus.DMA_FAULT);
      assert.ok(h.stats.snapshot().dmaFaults > faults);
      assert.ok(
        exp.local.every((b) => b === 0),
        'nothing landed',
      );
      assert.equal(drv.dmaRaw(dw.addr + 4096, 0, 904, AccelDmaDir.FROM_DEVICE), AccelStatus.OK);
      assert.deepEqual(exp.local.subarray(4096, 5000), pattern.subarray(0, 904));
    } finally {
      await cluster.shutdown();
    }
  });

  it('unmap closes the windows: the next DMA faults and the mapping throws PV_ERR_LEND_NOT_HOLDER', async () => {
    const { cluster, h, drv } = await setup();
    try {
      cluster.exportSegment('A', 'seg', SEG);
      const [a0, b0] = [cluster.fabric.windows('A').length, cluster.fabric.windows('B').length];
      const w = cluster.mapSegment('seg', 'B');
      const dw = cluster.mapSegmentForDevice(w, h);
      assert.deepEqual([cluster.fabric.windows('A').length, cluster.fabric.windows('B').length], [a0 + 1, b0 + 1]);
      assert.equal(cluster.unmapSegment(w), true);
      assert.equal(cluster.unmapSegment(w), false);
      assert.deepEqual([cluster.fabric.windows('A').length, cluster.fabric.windows('B').length], [a0, b0]);
      assert.equal(drv.dmaRaw(dw.addr, 0, 64, AccelDmaDir.FROM_DEVICE), AccelStatus.DMA_FAULT);
      assert.throws(() => w.mapping.read(0, 4), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      assert.throws(() => cluster.mapSegmentForDevice(w, h), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      assert.equal(cluster.unexportSegment('seg', 'A'), 0, 'no mapping left');
    } finally {
      await cluster.shutdown();
    }
  });

  it('unexport is refused while mapped; forced, it revokes every mapping and the DMA path', async () => {
    const { cluster, h, drv } = await setup();
    try {
      cluster.exportSegment('A', 'seg', SEG);
      const w = cluster.mapSegment('seg', 'B');
      const onC = cluster.mapSegment('seg', 'C');
      const dw = cluster.mapSegmentForDevice(w, h);
      assert.throws(() => cluster.unexportSegment('seg', 'A'), { code: 'PV_ERR_LEND_IN_USE' });
      assert.throws(() => cluster.unexportSegment('seg', 'B', { force: true }), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      assert.equal(drv.dmaRaw(dw.addr, 0, 64, AccelDmaDir.FROM_DEVICE), AccelStatus.OK, 'still live');
      assert.equal(cluster.unexportSegment('seg', 'A', { force: true }), 2);
      assert.throws(() => w.mapping.read(0, 4), { code: 'PV_ERR_LEND_REVOKED' });
      assert.throws(() => onC.mapping.read(0, 4), { code: 'PV_ERR_LEND_REVOKED' });
      assert.equal(drv.dmaRaw(dw.addr, 0, 64, AccelDmaDir.FROM_DEVICE), AccelStatus.DMA_FAULT);
      assert.throws(() => cluster.mapSegment('seg', 'B'), { code: 'PV_ERR_LEND_NOT_FOUND' });
      // The pool range is reused, scrubbed.
      const again = cluster.exportSegment('A', 'seg2', SEG);
      assert.ok(again.local.every((b) => b === 0));
    } finally {
      await cluster.shutdown();
    }
  });

  it('a full pool or table refuses an export with PV_ERR_LIMIT and leaves nothing behind', async () => {
    const cluster = new Cluster({
      hosts: [
        { name: 'A', segmentBytes: 40 << 16 },
        { name: 'B', segmentBytes: 0 },
      ],
    });
    try {
      assert.throws(() => cluster.exportSegment('B', 'x', 16), { code: 'PV_ERR_CONFIG' });
      assert.throws(() => cluster.exportSegment('A', 'big', 41 << 16), { code: 'PV_ERR_LIMIT' });
      for (let i = 0; i < 32; i++) cluster.exportSegment('A', `s${i}`, 16);
      assert.throws(() => cluster.exportSegment('A', 's32', 16), { code: 'PV_ERR_LIMIT' });
      assert.throws(() => cluster.exportSegment('A', 's0', 16), { code: 'PV_ERR_INVALID_ARG' });
      assert.equal(cluster.segments.list().length, 32);
      cluster.unexportSegment('s5', 'A');
      assert.equal(cluster.exportSegment('A', 's32', 16).size, 16);
      // A segment exported into the registry directly has no pool route: not mappable through the fabric.
      cluster.segments.export({ name: 'raw', host: 'A', size: 64 });
      assert.throws(() => cluster.mapSegment('raw', 'B'), { code: 'PV_ERR_LEND_NOT_FOUND' });
    } finally {
      await cluster.shutdown();
    }
  });

  it('the end of the lease closes its device path; the host mapping stays', async () => {
    const { cluster, h } = await setup();
    try {
      cluster.exportSegment('A', 'seg', SEG);
      const w = cluster.mapSegment('seg', 'B');
      const a0 = cluster.fabric.windows('A').length;
      const dw = cluster.mapSegmentForDevice(w, h);
      await cluster.giveBack(h);
      assert.equal(cluster.fabric.windows('A').length, a0 - 1, 'the lease’s own DMA window and the path closed');
      assert.equal(cluster.unmapSegmentForDevice(dw), false);
      w.mapping.write(0, Uint8Array.of(1));
      assert.equal(cluster.unmapSegment(w), true);
    } finally {
      await cluster.shutdown();
    }
  });
});
