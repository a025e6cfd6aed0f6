/**
 * One test per known backend-bug class (protocol.md §6.4), on blkback end to end: the real
 * blkfront connects through XenStore, and a hostile guest then writes its ring, its indirect
 * pages and its grants directly (BlkWorld: every piece real, one thread; the XSA-155 test adds a
 * real second thread). Older unit tests of the same rules are named in each test's comment;
 * these exercise the whole class on the backend as it serves a ring.
 */

import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { BlkifOp, BlkifStatus, VBD_DEVICE_TYPE } from '../../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_SLOT_WORDS,
  type BlkifRequestIn,
  BlkRspWord,
  decodeBlkifResponse,
  encodeBlkifRequest,
  encodeBlkifSegment,
} from '../../../protocol/blkif/BlkifSlot.js';
import type { FrontRing } from '../../../protocol/ring/FrontRing.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { DOM0, type GrantRef, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../../protocol/Types.js';
import { backendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { diffWords, SlotMutator } from '../SlotMutator.js';
import { BlkWorld, type Dom, rawRequest } from './helpers/BlkWorld.js';

const settle = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** Lets watches run (without serving rings) until `pred`; fails after 5 s. */
async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle(1);
  }
}

const rsp0 = () => ({ idLo: 0, idHi: 0, op: 0, status: 0 });
const status = (words: Int32Array): number => decodeBlkifResponse(words, 0, rsp0()).status;

/** A page of `dom` filled with `byte`, granted to dom0. */
function page(dom: Dom, byte: number, readonly = false): { addr: GuestPhysAddr; ref: GrantRef; bytes: Uint8Array } {
  const addr = dom.mem.allocPages(1);
  const bytes = dom.mem.view(addr, PAGE_SIZE);
  bytes.fill(byte);
  return { addr, ref: dom.grant.grantAccess(DOM0, gfnOf(addr), readonly), bytes };
}

const req = (r: Partial<BlkifRequestIn> & { op: number }): BlkifRequestIn => ({
  idLo: 1,
  idHi: 0,
  sectorLo: 0,
  sectorHi: 0,
  handle: 0,
  ...r,
});

describe('blkback bug classes (protocol.md §6.4), one test each', () => {
  let world: BlkWorld;
  afterEach(async () => world.close());

  it('XSA-155 double read: a second thread rewrites the slot while blkback copies it; only the honest version is ever done', async () => {
    // Older: Hostile.test.ts 'blkback XSA-155' rewrites the slot once, from the device call.
    world = await BlkWorld.create();
    const g = world.guests[0];
    const blk = await world.open(g);
    const ring = blk.front.ring;
    const data = page(g, 0, true);
    for (let i = 0; i < PAGE_SIZE; i++) data.bytes[i] = (i * 13 + 1) & 0xff;
    const n = world.disk.sectors;
    const honest = new Int32Array(BLKIF_SLOT_WORDS);
    encodeBlkifRequest(
      honest,
      0,
      req({ op: BlkifOp.WRITE, sectorLo: 40, segs: [{ gref: data.ref, first: 0, last: 7 }] }),
    );
    const hostile = new Int32Array(BLKIF_SLOT_WORDS);
    // Every word differs: sector straddling the end with a huge high word, a forged gref, reversed sectors.
    encodeBlkifRequest(
      hostile,
      0,
      req({ op: BlkifOp.WRITE, sectorLo: n - 4, sectorHi: 0x7fffffff, segs: [{ gref: 3999, first: 9, last: 3 }] }),
    );
    const versions = diffWords(honest, hostile, 4);
    assert.equal(versions.idx.length, 4, 'sector lo/hi, gref and sectors are rewritten');
    const m = new SlotMutator(ring.words, versions);
    const N = 200;
    let okay = 0;
    try {
      for (let i = 0; i < N; i++) {
        const w = ring.nextRequestSlot();
        ring.words.set(honest, w);
        ring.words[w + 2] = 0x1000 + i;
        ring.commitRequest();
        m.arm(w);
        ring.pushRequests();
        world.serve();
        m.disarm();
        assert.equal(ring.unconsumedResponses(), 1, `request ${i} answered exactly once`);
        const r = decodeBlkifResponse(ring.words, ring.responseSlot(), rsp0());
        ring.consumeResponse();
        assert.equal(r.idLo, 0x1000 + i, 'the id is echoed from the copy');
        assert.equal(r.op, BlkifOp.WRITE);
        assert.ok(r.status === BlkifStatus.OKAY || r.status === BlkifStatus.ERROR, `status ${r.status}`);
        if (r.status === BlkifStatus.OKAY) okay++;
      }
    } finally {
      await m.close();
    }
    const h = world.backend.handler(g.domid, 0);
    assert.ok(h);
    assert.equal(h.stats.requests, N);
    assert.equal(h.stats.okay, okay);
    assert.equal(h.stats.okay + h.stats.errors, N);
    for (const code of Object.keys(h.refusals)) assert.match(code, /^PV_ERR_(BLK_BAD_SECTOR|BLK_BAD_SEGMENT|GRANT_)/);
    assert.equal(world.backend.events.halted, 0);
    assert.equal(world.dom0.grant.liveMappings(), 1, 'only the ring stays mapped');
    // Only the honest version's sectors were ever written, and nothing past the end.
    assert.equal(statSync(world.disk.path).size, 4 << 20);
    const file = readFileSync(world.disk.path);
    const lo = 40 * 512;
    const hi = 48 * 512;
    assert.ok(file.subarray(0, lo).every((b) => b === 0) && file.subarray(hi).every((b) => b === 0));
    if (okay > 0) assert.deepEqual(file.subarray(lo, hi), Buffer.from(data.bytes));
  });

  it('XSA-39 producer index overflow: a full ring is legal; size+1 or a req_prod behind req_cons halts that ring only, and its teardown leaves nothing', async () => {
    // Older: Hostile.test.ts 'a producer index beyond the ring' (+33 only), RingServer.test.ts.
    world = await BlkWorld.create({ guests: 3 });
    const [a, b, c] = world.guests;
    const base = world.dom0.grant.liveMappings();
    const ba = await world.open(a);
    const fa = ba.front;
    const buf = a.mem.allocPages(fa.ring.size);
    // Exactly `size` requests published at once (req_prod − rsp_prod = size): all served.
    const reads = Array.from({ length: fa.ring.size }, (_, i) =>
      fa.read(i * 8, 8, (buf + i * PAGE_SIZE) as GuestPhysAddr),
    );
    assert.equal(fa.ring.isFull(), true);
    world.serve();
    await fa.wait(Promise.all(reads));
    assert.equal(world.backend.events.halted, 0, 'a full ring is not an overflow');

    // size + 1: halted.
    Atomics.store(
      fa.ring.words,
      RingWord.REQ_PROD,
      (Atomics.load(fa.ring.words, RingWord.RSP_PROD) + fa.ring.size + 1) | 0,
    );
    world.serve(2);
    assert.equal(world.backend.events.halted, 1);
    // A req_prod moved backwards (behind req_cons) on another guest: halted too.
    const bc = await world.open(c);
    const page1 = c.mem.allocPages(1);
    await bc.front.wait(bc.front.read(0, 8, page1));
    Atomics.store(
      bc.front.ring.words,
      RingWord.REQ_PROD,
      (Atomics.load(bc.front.ring.words, RingWord.RSP_PROD) - 1) | 0,
    );
    world.serve(2);
    assert.equal(world.backend.events.halted, 2);
    assert.match(world.log.join('\n'), /dom1 vbd 0 halted: PV_ERR_RING_PROD_OVERFLOW/);
    assert.match(world.log.join('\n'), /dom3 vbd 0 halted: PV_ERR_RING_PROD_OVERFLOW/);

    // The neighbour is served.
    const bb = await world.open(b);
    const pb = b.mem.allocPages(1);
    await bb.front.wait(bb.front.write(100, 8, pb));
    // The halted guests die: their rings are unmapped and ports closed; only b's ring stays.
    await world.toolstack.rm(backendDir(DOM0, VBD_DEVICE_TYPE, a.domid, 0));
    await world.toolstack.rm(backendDir(DOM0, VBD_DEVICE_TYPE, c.domid, 0));
    await until(() => world.backend.connections === 1, 'both halted vbds to disconnect');
    assert.equal(world.dom0.grant.liveMappings(), base + 1);
    assert.equal(world.server.size, 1);
    for (const ref of [...fa.ringRefs, ...bc.front.ringRefs]) {
      assert.equal((ref === fa.ringRefs[0] ? a : c).grant.isGrantInUse(ref), false, 'ring grant released');
    }
    assert.notEqual(a.evtchn.status(fa.port).state, 'interdomain', "the backend closed its end of a's port");
    await bb.close();
    assert.equal(world.dom0.grant.liveMappings(), base);
  });

  it('XSA-432/423/448 length and count arithmetic: counts at their field limits, sectors near 2^32 and 2^64 refused before any grant is touched; empty requests answered without grants', async () => {
    // Older: Hostile.test.ts 'segment counts' and 'device range' (statuses only).
    world = await BlkWorld.create();
    const g = world.guests[0];
    const blk = await world.open(g);
    const h = world.backend.handler(g.domid, 0);
    assert.ok(h);
    const p = page(g, 0);
    const n = world.disk.sectors;
    const send = (r: BlkifRequestIn): number =>
      status(rawRequest(world, blk.front.ring, (w, at) => encodeBlkifRequest(w, at, r)));
    /** Sends `r`, expects `st`, and checks how many grant maps it cost. */
    const expect = (r: BlkifRequestIn, st: BlkifStatus, maps: number, what: string): void => {
      const before = h.stats.maps;
      assert.equal(send(r), st, what);
      assert.equal(h.stats.maps - before, maps, `${what}: grant maps`);
      assert.equal(world.dom0.grant.liveMappings(), 1, `${what}: nothing left mapped`);
    };
    const seg = { gref: p.ref, first: 0, last: 7 };
    const eleven = Array.from({ length: 11 }, () => seg);
    // Counts at the field limits: u8 direct nr_segments, u16 indirect nr_segments.
    const direct255 = req({ op: BlkifOp.READ, segs: [seg] });
    assert.equal(
      status(
        rawRequest(world, blk.front.ring, (w, at) => {
          encodeBlkifRequest(w, at, direct255);
          w[at] = (w[at] & ~0xff00) | (255 << 8);
        }),
      ),
      BlkifStatus.ERROR,
      'direct nr_segments 255',
    );
    for (const nseg of [0, 257, 512, 0xffff]) {
      const ind = req({ op: BlkifOp.INDIRECT, indirectOp: BlkifOp.READ, nseg, indirectGrefs: [p.ref, p.ref] });
      expect(ind, BlkifStatus.ERROR, 0, `indirect nr_segments ${nseg}: refused before any indirect page is mapped`);
    }
    // Sectors near 2^32 and 2^64, and sums that would wrap: refused before mapping.
    const at = (lo: number, hi: number, segs = [seg]) => req({ op: BlkifOp.READ, sectorLo: lo, sectorHi: hi, segs });
    expect(at(0xffffffff, 0), BlkifStatus.ERROR, 0, 'sector 2^32 − 1');
    expect(at(0xfffffff8, 0xffffffff), BlkifStatus.ERROR, 0, 'sector 2^64 − 8 (+8 wraps to 0)');
    expect(at(0xfffffff8, 0x1fffff), BlkifStatus.ERROR, 0, 'sector 2^53 − 8 (+8 is not a safe integer)');
    expect(at(n - 87, 0, eleven), BlkifStatus.ERROR, 0, '11 × 8 sectors one past the end');
    // The exact end is fine: 11 × 8 = 88 sectors ending at the last one, 11 maps.
    expect(at(n - 88, 0, eleven), BlkifStatus.OKAY, 11, '88 sectors ending at the device end');
    // Empty requests: a flush with no segment is answered OKAY, a READ/WRITE with none ERROR — no grant touched.
    expect(req({ op: BlkifOp.FLUSH_DISKCACHE }), BlkifStatus.OKAY, 0, 'flush, 0 segments');
    expect(req({ op: BlkifOp.READ, segs: [] }), BlkifStatus.ERROR, 0, 'read, 0 segments');
    expect(req({ op: BlkifOp.WRITE, segs: [] }), BlkifStatus.ERROR, 0, 'write, 0 segments');
    // A one-sector segment (first = last, the smallest there is) is one map and one sector.
    const before = h.stats.sectorsRead;
    expect(at(8, 0, [{ gref: p.ref, first: 7, last: 7 }]), BlkifStatus.OKAY, 1, 'one-sector segment');
    assert.equal(h.stats.sectorsRead - before, 1);
    assert.equal(world.backend.events.halted, 0);
  });

  it('XSA-216/403 uninitialised bytes: every response byte that is not a field is zero although the slot held garbage; reads write only the asked-for bytes', async () => {
    // Older: BlkifSlot.test.ts (encoder pads), Hostile.test.ts (refused requests' padding).
    world = await BlkWorld.create();
    const g = world.guests[0];
    const blk = await world.open(g);
    const p = page(g, 0x11);
    const ind = g.mem.allocPages(1);
    const iv = g.mem.view(ind, PAGE_SIZE);
    iv.fill(0xff);
    encodeBlkifSegment(new Int32Array(iv.buffer, iv.byteOffset, 2), 0, { gref: p.ref, first: 0, last: 7 });
    const iref = g.grant.grantAccess(DOM0, gfnOf(ind), true);
    const kinds: Array<[string, BlkifRequestIn, BlkifStatus]> = [
      ['read', req({ op: BlkifOp.READ, segs: [{ gref: p.ref, first: 0, last: 7 }] }), BlkifStatus.OKAY],
      ['write', req({ op: BlkifOp.WRITE, sectorLo: 16, segs: [{ gref: p.ref, first: 0, last: 7 }] }), BlkifStatus.OKAY],
      [
        'indirect',
        req({ op: BlkifOp.INDIRECT, indirectOp: BlkifOp.READ, nseg: 1, indirectGrefs: [iref] }),
        BlkifStatus.OKAY,
      ],
      ['flush', req({ op: BlkifOp.FLUSH_DISKCACHE }), BlkifStatus.OKAY],
      ['unknown op', req({ op: 0x7f, segs: [] }), BlkifStatus.EOPNOTSUPP],
      ['forged gref', req({ op: BlkifOp.READ, segs: [{ gref: 3999, first: 0, last: 7 }] }), BlkifStatus.ERROR],
    ];
    let id = 0x77000000;
    for (const [what, r, st] of kinds) {
      const myId = id++;
      const words = rawRequest(world, blk.front.ring, (w, at) => {
        // The guest's slot is full of garbage (all ones) under and around the request fields.
        w.fill(-1, at, at + BLKIF_SLOT_WORDS);
        encodeBlkifRequest(w, at, { ...r, idLo: myId, idHi: -1 >>> 0 });
        if (r.op !== BlkifOp.INDIRECT && (r.segs?.length ?? 0) < 11)
          w.fill(-1, at + 6 + 2 * (r.segs?.length ?? 0), at + 28);
      });
      const d = decodeBlkifResponse(words, 0, rsp0());
      assert.equal(d.status, st, what);
      assert.equal(d.idLo, myId, `${what}: id`);
      assert.equal(d.idHi, 0xffffffff, `${what}: id high word`);
      assert.equal(d.op, r.op, `${what}: op echoed`);
      assert.equal((words[BlkRspWord.OP_STATUS] >>> 8) & 0xff, 0, `${what}: response byte 9 (pad) is zero`);
      assert.equal(words[BlkRspWord.PAD], 0, `${what}: response bytes 12-15 (pad) are zero`);
    }
    // XSA-403 on data pages: a read of sectors 2..3 writes bytes 1024..2047 of the page and nothing else.
    const q = page(g, 0xaa);
    const part = rawRequest(world, blk.front.ring, (w, at) =>
      encodeBlkifRequest(w, at, req({ op: BlkifOp.READ, sectorLo: 200, segs: [{ gref: q.ref, first: 2, last: 3 }] })),
    );
    assert.equal(status(part), BlkifStatus.OKAY);
    assert.ok(
      q.bytes.subarray(0, 1024).every((x) => x === 0xaa),
      'bytes before the segment untouched',
    );
    assert.ok(
      q.bytes.subarray(1024, 2048).every((x) => x === 0),
      'the never-written sectors read as zero',
    );
    assert.ok(
      q.bytes.subarray(2048).every((x) => x === 0xaa),
      'bytes after the segment untouched',
    );
    // A refused read (past the end) leaves the guest's page exactly as it was.
    q.bytes.fill(0xbb);
    const bad = rawRequest(world, blk.front.ring, (w, at) =>
      encodeBlkifRequest(
        w,
        at,
        req({ op: BlkifOp.READ, sectorLo: world.disk.sectors, segs: [{ gref: q.ref, first: 0, last: 7 }] }),
      ),
    );
    assert.equal(status(bad), BlkifStatus.ERROR);
    assert.ok(
      q.bytes.every((x) => x === 0xbb),
      'a refused read writes nothing into the page',
    );
  });

  it('XSA-396 revoking a grant still mapped: the guest cannot end a segment or ring grant blkback has mapped; it can the moment blkback unmapped it', async () => {
    // Older: ParavirtProvider.test.ts (frontend side), SimGrantOps tests (XSA-218/224).
    const tries: Array<{ ref: GrantRef; code: string | undefined; inUse: boolean }> = [];
    let during: (() => void) | undefined;
    world = await BlkWorld.create({
      wrap: (d) => ({
        sectors: d.sectors,
        sectorSize: d.sectorSize,
        readOnly: d.readOnly,
        read: (s, c, b) => {
          during?.();
          d.read(s, c, b);
        },
        write: (s, c, b) => {
          during?.();
          d.write(s, c, b);
        },
        flush: () => d.flush(),
      }),
    });
    const g = world.guests[0];
    const blk = await world.open(g);
    const revoke = (ref: GrantRef) => () => {
      let code: string | undefined;
      try {
        g.grant.endAccess(ref);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      tries.push({ ref, code, inUse: g.grant.isGrantInUse(ref) });
    };
    for (const op of [BlkifOp.READ, BlkifOp.WRITE]) {
      const p = page(g, 0x5c, op === BlkifOp.WRITE);
      during = revoke(p.ref);
      const words = rawRequest(world, blk.front.ring, (w, at) =>
        encodeBlkifRequest(w, at, req({ op, sectorLo: 64, segs: [{ gref: p.ref, first: 0, last: 7 }] })),
      );
      during = undefined;
      assert.equal(status(words), BlkifStatus.OKAY, 'the I/O completed on the pinned page');
      const t = tries.at(-1);
      assert.deepEqual(t, { ref: p.ref, code: 'PV_ERR_GRANT_IN_USE', inUse: true }, `${op}: end refused while mapped`);
      // After the response blkback holds no mapping: the guest may end the grant and free the page.
      assert.equal(g.grant.isGrantInUse(p.ref), false);
      g.grant.endAccess(p.ref);
      g.mem.freePages(p.addr, 1);
    }
    // The ring page is mapped for the whole connection: ending it fails until the backend unmaps it.
    const ringRef = blk.front.ringRefs[0];
    assert.throws(() => g.grant.endAccess(ringRef), { code: 'PV_ERR_GRANT_IN_USE' });
    await blk.close(); // blkfront's close waits for the backend to unmap, then ends its grants
    assert.equal(g.grant.isGrantInUse(ringRef), false);
    assert.equal(world.dom0.grant.liveMappings(), 0);
  });

  it('XSA-331/350/371 teardown with requests in flight: a guest dies with its ring full; nothing of it is served after, every grant is released, counters return to base', async () => {
    // Older: Hostile.test.ts checks unmapping after an orderly close only.
    world = await BlkWorld.create({ guests: 2 });
    const [a, b] = world.guests;
    const base = { maps: world.dom0.grant.liveMappings(), rings: world.server.size };
    const bb = await world.open(b);
    const ba = await world.open(a);
    const ring = ba.front.ring;
    const p = page(a, 0x3d, true);
    const ind = a.mem.allocPages(1);
    const iv = new Int32Array(a.mem.view(ind, PAGE_SIZE).buffer, a.mem.view(ind, PAGE_SIZE).byteOffset, 1024);
    for (let i = 0; i < 8; i++) encodeBlkifSegment(iv, 2 * i, { gref: p.ref, first: 0, last: 7 });
    const iref = a.grant.grantAccess(DOM0, gfnOf(ind), true);
    // The ring full of writes (direct and indirect) at sectors 1024+, published, not yet served.
    for (let i = 0; !ring.isFull(); i++) {
      const w = ring.nextRequestSlot();
      ring.words.fill(0, w, w + BLKIF_SLOT_WORDS);
      const r =
        i % 2 === 0
          ? req({ op: BlkifOp.WRITE, idLo: i, sectorLo: 1024 + 64 * i, segs: [{ gref: p.ref, first: 0, last: 7 }] })
          : req({
              op: BlkifOp.INDIRECT,
              indirectOp: BlkifOp.WRITE,
              nseg: 8,
              idLo: i,
              sectorLo: 1024 + 64 * i,
              indirectGrefs: [iref],
            });
      encodeBlkifRequest(ring.words, w, r);
      ring.commitRequest();
    }
    ba.front.push();
    // The guest dies: the toolstack removes its backend directory. Watches run; rings are not served.
    await world.toolstack.rm(backendDir(DOM0, VBD_DEVICE_TYPE, a.domid, 0));
    await until(() => world.backend.connections === 1, 'the dead guest to be disconnected');
    const ringCopy = ring.words.slice();
    // Rounds after the teardown: the neighbour is served, nothing of the dead guest is.
    const pb = b.mem.allocPages(1);
    await bb.front.wait(bb.front.read(0, 8, pb));
    world.serve(10);
    assert.deepEqual(ring.words, ringCopy, 'no late response is written into the dead ring');
    const file = readFileSync(world.disk.path);
    assert.ok(
      file.subarray(1024 * 512, (1024 + 64 * 32) * 512).every((x) => x === 0),
      'no write of the dead guest ran',
    );
    assert.equal(world.dom0.grant.liveMappings(), base.maps + 1, "only the neighbour's ring is mapped");
    assert.equal(world.server.size, base.rings + 1);
    for (const ref of [p.ref, iref, ...ba.front.ringRefs]) assert.equal(a.grant.isGrantInUse(ref), false);
    // The guest's own pages are free to end (its ring grants its frontend ended by itself).
    for (const ref of [p.ref, iref]) a.grant.endAccess(ref);
    assert.notEqual(a.evtchn.status(ba.front.port).state, 'interdomain');
    assert.equal(world.backend.events.disconnects, 1);

    // A teardown requested during a request's I/O runs after that request completed: its
    // response is written before the ring is unmapped, never after (the watch runs between rounds).
    let fired = false;
    const hookWorld = world;
    const bh = hookWorld.backend.handler(b.domid, 0);
    assert.ok(bh);
    const q = page(b, 0x42, true);
    const w = rawRequest(world, bb.front.ring, (x, at) => {
      encodeBlkifRequest(x, at, req({ op: BlkifOp.WRITE, sectorLo: 8, segs: [{ gref: q.ref, first: 0, last: 7 }] }));
      void hookWorld.toolstack.rm(backendDir(DOM0, VBD_DEVICE_TYPE, b.domid, 0)).then(() => {
        fired = true;
      });
    });
    assert.equal(status(w), BlkifStatus.OKAY, 'the in-flight request completed');
    await until(() => fired && world.backend.connections === 0, 'the neighbour to be disconnected');
    assert.equal(world.dom0.grant.liveMappings(), base.maps);
    assert.equal(world.server.size, base.rings);
    assert.equal(b.grant.isGrantInUse(q.ref), false);
  });

  it('XSA-332/391/392 event and request flooding: a guest keeping its ring full and kicking in a loop does not starve a neighbour, and blkback holds nothing beyond the rings', async () => {
    // Older: RingServer.test.ts (batchLimit per round, with fake rings).
    world = await BlkWorld.create({ guests: 2 });
    const [a, b] = world.guests;
    const fa = (await world.open(a)).front;
    const bb = await world.open(b);
    const ha = world.backend.handler(a.domid, 0);
    assert.ok(ha);
    const pa = page(a, 0, false);
    const pb = page(b, 0, false);
    const base = world.dom0.grant.liveMappings();
    const served0 = world.server.stats.requests;
    const okay0 = ha.stats.okay;
    const ROUNDS = 200;
    let flooded = 0;
    let mine = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // The flooder takes its responses and refills its whole ring, then kicks 100 times.
      while (fa.ring.unconsumedResponses() > 0) fa.ring.consumeResponse();
      while (!fa.ring.isFull()) {
        const w = fa.ring.nextRequestSlot();
        ring0(fa.ring.words, w);
        encodeBlkifRequest(
          fa.ring.words,
          w,
          req({ op: BlkifOp.READ, idLo: flooded++, segs: [{ gref: pa.ref, first: 0, last: 7 }] }),
        );
        fa.ring.commitRequest();
      }
      fa.ring.pushRequests();
      for (let k = 0; k < 100; k++) a.evtchn.notify(fa.port);
      // The neighbour's one request is answered in this very round.
      const before = ha.stats.requests;
      const words = rawRequestOnce(
        world,
        bb.front.ring,
        req({ op: BlkifOp.READ, idLo: round, segs: [{ gref: pb.ref, first: 0, last: 7 }] }),
      );
      assert.ok(words, `round ${round}: the neighbour was served in the same round`);
      assert.equal(status(words), BlkifStatus.OKAY);
      mine++;
      // Bounded work per ring per round: at most the ring (≤ batchLimit) of the flooder's requests.
      assert.ok(ha.stats.requests - before <= fa.ring.size, 'the flooder got at most one ring per round');
      assert.equal(ha.liveMaps, 0, 'no mapping outlives a round');
      assert.equal(world.dom0.grant.liveMappings(), base, 'dom0 holds the two rings only');
    }
    assert.equal(mine, ROUNDS);
    assert.equal(ha.stats.okay - okay0, ROUNDS * fa.ring.size, 'the flooder is served too: one ring per round');
    // 20 000 kicks made no work of their own: every request served was a published one.
    assert.equal(world.server.stats.requests - served0, ROUNDS * fa.ring.size + ROUNDS);
    assert.equal(world.backend.events.halted, 0);
  });

  it('XSA-332/391/392 flooding, mid-round: a request landing on a quiet ring while a full ring is served waits behind one pass, and is answered and notified at once', async () => {
    // The RingServer's passes (quantum 1): without them the neighbour would wait for the whole batch.
    let reads = 0;
    let hook: (() => void) | undefined;
    world = await BlkWorld.create({
      guests: 2,
      wrap: (d) => ({
        sectors: d.sectors,
        sectorSize: d.sectorSize,
        readOnly: d.readOnly,
        read: (s, c, b) => {
          reads++;
          hook?.();
          d.read(s, c, b);
        },
        write: (s, c, b) => d.write(s, c, b),
        flush: () => d.flush(),
      }),
    });
    const [a, b] = world.guests;
    const fa = (await world.open(a)).front;
    const fb = (await world.open(b)).front;
    const ha = world.backend.handler(a.domid, 0);
    assert.ok(ha);
    const pa = page(a, 0);
    const pb = page(b, 0);
    while (!fa.ring.isFull()) {
      const w = fa.ring.nextRequestSlot();
      ring0(fa.ring.words, w);
      encodeBlkifRequest(fa.ring.words, w, req({ op: BlkifOp.READ, segs: [{ gref: pa.ref, first: 0, last: 7 }] }));
      fa.ring.commitRequest();
    }
    fa.ring.pushRequests();
    const rsp0b = Atomics.load(fb.ring.words, RingWord.RSP_PROD);
    let published = -1;
    let answered = -1;
    let notified = false;
    hook = () => {
      if (published < 0 && reads === 3) {
        // The neighbour's request lands while the flooder's third request is on the device.
        const w = fb.ring.nextRequestSlot();
        ring0(fb.ring.words, w);
        encodeBlkifRequest(
          fb.ring.words,
          w,
          req({ op: BlkifOp.READ, idLo: 99, segs: [{ gref: pb.ref, first: 0, last: 7 }] }),
        );
        fb.ring.commitRequest();
        fb.ring.pushRequests();
        published = reads;
      } else if (answered < 0 && published >= 0 && Atomics.load(fb.ring.words, RingWord.RSP_PROD) !== rsp0b) {
        answered = reads;
        notified = b.evtchn.isPending(fb.port);
      }
    };
    world.serve(1);
    hook = undefined;
    assert.ok(answered > 0, "the neighbour's response was published while the flooder's batch was still being served");
    assert.ok(answered - published <= 2, `answered ${answered - published} device reads after it landed (≤ one pass)`);
    assert.equal(notified, true, 'and the neighbour was notified at once');
    assert.equal(ha.stats.requests, fa.ring.size, "the flooder's whole ring was still served in that round");
  });
});

/** Zeroes one slot. */
function ring0(words: Int32Array, w: number): void {
  words.fill(0, w, w + BLKIF_SLOT_WORDS);
}

/** Publishes `r` on `ring`, runs ONE serving round, returns the response words (or undefined). */
function rawRequestOnce(world: BlkWorld, ring: FrontRing, r: BlkifRequestIn): Int32Array | undefined {
  const w = ring.nextRequestSlot();
  ring0(ring.words, w);
  encodeBlkifRequest(ring.words, w, r);
  ring.commitRequest();
  ring.pushRequests();
  world.serve();
  if (ring.unconsumedResponses() === 0) return undefined;
  const at = ring.responseSlot();
  const out = ring.words.slice(at, at + BLKIF_SLOT_WORDS);
  ring.consumeResponse();
  return out;
}
