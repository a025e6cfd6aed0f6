/**
 * blkfront: buffers split into page segments (direct up to 11, indirect beyond), requests queue
 * past the ring size, arguments are checked before anything is granted, and a response is only
 * believed when its id names a request in flight (index, generation, operation); a backend that
 * publishes more responses than requests kills the ring.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BlkFront } from '../../../frontend/blk/BlkFront.js';
import { BlkifOp, BlkifStatus } from '../../../protocol/blkif/BlkifConstants.js';
import { encodeBlkifResponse } from '../../../protocol/blkif/BlkifSlot.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { DOM0, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { BlkWorld } from '../../backend/blk/helpers/BlkWorld.js';

const code = (err: unknown) => (err as { code?: string }).code;

describe('frontend/blk BlkFront over the real blkback (one thread)', () => {
  let world: BlkWorld;
  beforeEach(async () => {
    world = await BlkWorld.create({ diskBytes: 8 << 20 });
  });
  afterEach(async () => {
    await world.close();
  });

  it('segments: a mid-page buffer, 11 direct segments, then indirect; data round-trips and lands in the file', async () => {
    const g = world.guests[0];
    const blk = await world.open(g);
    const f = blk.front;
    const h = world.backend.handler(g.domid, 0);
    assert.ok(h);
    const buf = g.mem.allocPages(80);
    const mem = g.mem.view(buf, 80 * PAGE_SIZE);
    for (let i = 0; i < mem.length; i++) mem[i] = (i * 13 + (i >> 12)) & 0xff;
    // 5 sectors from byte 3 × 512 of a page: segments 3..7 of page 0 → 1 direct request, 1 segment.
    await f.wait(f.write(10, 5, (buf + 1536) as GuestPhysAddr));
    assert.deepEqual([h.stats.writes, h.stats.indirect], [1, 0]);
    await f.wait(f.write(200, 88, buf)); // 11 segments: still direct
    assert.deepEqual([h.stats.writes, h.stats.indirect], [2, 0]);
    await f.wait(f.write(1000, 600, buf)); // 75 segments: one indirect request
    assert.deepEqual([h.stats.writes, h.stats.indirect], [3, 1]);
    const file = readFileSync(world.disk.path);
    assert.deepEqual(file.subarray(10 * 512, 15 * 512), Buffer.from(mem.subarray(1536, 1536 + 2560)));
    assert.deepEqual(file.subarray(1000 * 512, 1600 * 512), Buffer.from(mem.subarray(0, 600 * 512)));
    const back = g.mem.allocPages(80);
    await f.wait(f.read(1000, 600, (back + 512) as GuestPhysAddr));
    assert.deepEqual(g.mem.view((back + 512) as GuestPhysAddr, 600 * 512), mem.subarray(0, 600 * 512));
    assert.equal(world.dom0.grant.liveMappings(), 1);
  });

  it('without indirect requests a large buffer becomes ⌈segments / 11⌉ direct requests', async () => {
    const g = world.guests[0];
    const blk = await world.open(g, 0, 0);
    const h = world.backend.handler(g.domid, 0);
    assert.ok(h);
    const buf = g.mem.allocPages(40);
    await blk.front.wait(blk.front.read(0, 40 * 8, buf));
    assert.deepEqual([h.stats.reads, h.stats.indirect], [4, 0]);
  });

  it('queue depth: 100 writes at once (ring of 32) all complete, then a flush', async () => {
    const g = world.guests[0];
    const blk = await world.open(g);
    const f = blk.front;
    const buf = g.mem.allocPages(13);
    const mem = g.mem.view(buf, 13 * PAGE_SIZE);
    for (let i = 0; i < 100; i++) mem.fill(i + 1, i * 512, (i + 1) * 512);
    const all = Array.from({ length: 100 }, (_, i) => f.write(5000 + 2 * i, 1, (buf + i * 512) as GuestPhysAddr));
    assert.equal(f.outstanding(), 100);
    assert.ok(f.ring.freeRequests() === 0, 'the ring filled up and the rest queued');
    await f.wait(Promise.all(all));
    await f.wait(f.flush());
    assert.equal(f.outstanding(), 0);
    const file = readFileSync(world.disk.path);
    for (let i = 0; i < 100; i++) assert.equal(file[(5000 + 2 * i) * 512 + 100], i + 1);
    assert.equal(world.backend.handler(g.domid, 0)?.stats.flushes, 1);
  });

  it('arguments: unaligned buffer, past the end, zero count, outside guest memory → refused before any grant', async () => {
    const g = world.guests[0];
    const blk = await world.open(g);
    const f = blk.front;
    const buf = g.mem.allocPages(1);
    const n = blk.info.sectors;
    await assert.rejects(f.read(0, 1, (buf + 100) as GuestPhysAddr), (e) => code(e) === 'PV_ERR_BAD_ALIGNMENT');
    await assert.rejects(f.read(n - 1, 2, buf), (e) => code(e) === 'PV_ERR_BLK_BAD_SECTOR');
    await assert.rejects(f.write(0, 0, buf), (e) => code(e) === 'PV_ERR_INVALID_ARG');
    await assert.rejects(f.read(0, 8, (g.mem.size - 512) as GuestPhysAddr), (e) => code(e) === 'PV_ERR_OUT_OF_BOUNDS');
    assert.equal(f.outstanding(), 0);
    assert.equal(world.backend.handler(g.domid, 0)?.stats.requests, 0);
  });
});

describe('frontend/blk BlkFront against a hostile backend', () => {
  it('a response with an unknown id, a stale generation or the wrong operation is dropped; statuses map to codes; an overflow kills the ring', async () => {
    const world = await BlkWorld.create();
    try {
      const g = world.guests[0];
      const f = new BlkFront(g.hc, DOM0);
      f.info = { sectors: 1 << 20, sectorSize: 512, readOnly: false, flush: true, maxIndirectSegments: 0 };
      const buf = g.mem.allocPages(1);
      const outcome = (p: Promise<void>) =>
        p.then(
          () => 'ok',
          (e) => code(e),
        );
      // Ids (index, generation): a (0,1) read, b (1,1) write, c (2,1) flush, d (3,1), e (4,1) reads.
      const [a, b, c, d, e] = [
        outcome(f.read(0, 8, buf)),
        outcome(f.write(8, 8, buf)),
        outcome(f.flush()),
        outcome(f.read(16, 1, buf)),
        outcome(f.read(17, 1, buf)),
      ];
      // Play the backend by hand.
      const w = f.ring.words;
      const respond = (slot: number, idLo: number, idHi: number, op: number, status: number) =>
        encodeBlkifResponse(w, RingWord.SLOTS + slot * 28, { idLo, idHi, op, status });
      respond(0, 9, 1, BlkifOp.READ, BlkifStatus.OKAY); // no such index
      respond(1, 0, 2, BlkifOp.READ, BlkifStatus.OKAY); // stale generation
      respond(2, 3, 1, BlkifOp.WRITE, BlkifStatus.OKAY); // request 3 was a READ
      respond(3, 1, 1, BlkifOp.WRITE, BlkifStatus.ERROR);
      respond(4, 2, 1, BlkifOp.FLUSH_DISKCACHE, BlkifStatus.EOPNOTSUPP);
      Atomics.store(w, RingWord.RSP_PROD, 5);
      assert.equal(f.poll(), 5);
      assert.equal(f.badResponses, 3);
      assert.equal(await b, 'PV_ERR_BLK_IO');
      assert.equal(await c, 'PV_ERR_NOT_SUPPORTED');
      assert.equal(f.outstanding(), 3, 'forged responses settled nothing');
      // One response more than requests published: RING_RESPONSE_PROD_OVERFLOW kills the ring.
      Atomics.store(w, RingWord.RSP_PROD, 6);
      assert.equal(f.poll(), 0);
      assert.equal(code(f.dead), 'PV_ERR_RING_RSP_OVERFLOW');
      assert.deepEqual(await Promise.all([a, d, e]), Array(3).fill('PV_ERR_RING_RSP_OVERFLOW'));
      assert.equal(await outcome(f.read(0, 1, buf)), 'PV_ERR_RING_RSP_OVERFLOW');
    } finally {
      await world.close();
    }
  });
});
