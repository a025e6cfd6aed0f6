/**
 * protocol.md §6.2 on the blkif ring: every hostile request written straight into the ring gets
 * its blkif status (EOPNOTSUPP for operations not offered, ERROR otherwise) under a stable
 * refusal code, the response's padding is zero, the backend goes on serving honest requests,
 * and no grant stays mapped. Then the XSA-155 rule: a slot or an indirect page rewritten after
 * the backend took its copy changes nothing the backend does.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { BlkDevice } from '../../../frontend/blk/BlkConnect.js';
import { BlkifOp, BlkifStatus } from '../../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_SLOT_WORDS,
  type BlkifRequestIn,
  BlkRspWord,
  decodeBlkifResponse,
  encodeBlkifRequest,
  encodeBlkifSegment,
} from '../../../protocol/blkif/BlkifSlot.js';
import type { ErrorCode } from '../../../protocol/errors.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { DOM0, type DomId, type GrantRef, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../../protocol/Types.js';
import { BlkWorld, type Dom, rawRequest } from './helpers/BlkWorld.js';

const ID_HI = 0xfeedf00d;

describe('blkback §6.2: a hostile request gets an error status, and the ring goes on', () => {
  let world: BlkWorld;
  let guest: Dom;
  let blk: BlkDevice;
  let page: GuestPhysAddr;
  let rw: GrantRef;
  let seq = 0x5a5a0000;

  beforeEach(async () => {
    world = await BlkWorld.create({ guests: 2 });
    guest = world.guests[0];
    blk = await world.open(guest);
    page = guest.mem.allocPages(2);
    rw = guest.grant.grantAccess(DOM0, gfnOf(page), false);
  });
  afterEach(async () => {
    await world.close();
  });

  /** Sends `r` raw (id from a counter, high word set so padding bytes under it are non-zero). */
  function send(r: Omit<BlkifRequestIn, 'idLo' | 'idHi' | 'handle'> & { handle?: number }) {
    const idLo = seq++;
    const words = rawRequest(world, blk.front.ring, (dst, w) =>
      encodeBlkifRequest(dst, w, { handle: 0xffff, ...r, idLo, idHi: ID_HI }),
    );
    const rsp = decodeBlkifResponse(words, 0, { idLo: 0, idHi: 0, op: 0, status: 0 });
    // XSA-216: the response's own padding bytes (9, 12-15) are zero whatever the request held.
    assert.equal((words[BlkRspWord.OP_STATUS] >>> 8) & 0xff, 0, 'response byte 9 (pad) must be zero');
    assert.equal(words[BlkRspWord.PAD], 0, 'response bytes 12-15 (pad) must be zero');
    assert.equal(rsp.idLo, idLo);
    assert.equal(rsp.idHi, ID_HI);
    return rsp;
  }

  /** Checks the status and that the refusal was counted under `code`. */
  function refused(r: Parameters<typeof send>[0], status: BlkifStatus, code: ErrorCode | RegExp): void {
    const h = world.backend.handler(guest.domid, 0);
    assert.ok(h);
    const rsp = send(r);
    assert.equal(rsp.status, status, `status for ${JSON.stringify(h.lastRefusal)}`);
    assert.equal(rsp.op, r.op, 'the response echoes the private copy of operation');
    const last = h.lastRefusal?.code ?? '';
    if (typeof code === 'string') assert.equal(last, code, h.lastRefusal?.message);
    else assert.match(last, code, h.lastRefusal?.message);
    assert.equal(world.dom0.grant.liveMappings(), 1, 'only the ring stays mapped');
  }

  const seg = (gref: number, first = 0, last = 7) => ({ gref, first, last });
  const sectors = () => world.disk.sectors;

  it('operation whitelist: unknown op → EOPNOTSUPP; barrier and discard (not offered) → EOPNOTSUPP', () => {
    refused({ op: 99, sectorLo: 0, sectorHi: 0, segs: [seg(rw)] }, BlkifStatus.EOPNOTSUPP, 'PV_ERR_BAD_OP');
    refused({ op: 4, sectorLo: 0, sectorHi: 0, segs: [seg(rw)] }, BlkifStatus.EOPNOTSUPP, 'PV_ERR_BAD_OP');
    const barrier = { op: BlkifOp.WRITE_BARRIER, sectorLo: 0, sectorHi: 0, segs: [seg(rw)] };
    refused(barrier, BlkifStatus.EOPNOTSUPP, 'PV_ERR_NOT_SUPPORTED');
    const discard = { op: BlkifOp.DISCARD, sectorLo: 0, sectorHi: 0, segs: [seg(rw)] };
    refused(discard, BlkifStatus.EOPNOTSUPP, 'PV_ERR_NOT_SUPPORTED');
  });

  it('segment counts: nseg 0 (not a flush), 12 direct, 0 and 257 indirect → ERROR', () => {
    refused({ op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [] }, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
    refused({ op: BlkifOp.WRITE, sectorLo: 0, sectorHi: 0, segs: [] }, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
    const twelve = { op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(rw)], nseg: 12 };
    refused(twelve, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
    for (const nseg of [0, 257, 0xffff]) {
      const ind = {
        op: BlkifOp.INDIRECT,
        indirectOp: BlkifOp.READ,
        nseg,
        sectorLo: 0,
        sectorHi: 0,
        indirectGrefs: [rw],
      };
      refused(ind, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
    }
    const badInner = { op: BlkifOp.INDIRECT, indirectOp: 3, nseg: 1, sectorLo: 0, sectorHi: 0, indirectGrefs: [rw] };
    refused(badInner, BlkifStatus.ERROR, 'PV_ERR_BAD_REQUEST');
  });

  it('segment sectors: first > last, last 8, last 255 → ERROR', () => {
    for (const [first, last] of [
      [3, 2],
      [0, 8],
      [7, 255],
    ]) {
      const r = { op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(rw), seg(rw, first, last)] };
      refused(r, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
    }
  });

  it('device range: past the end, straddling the end, near 2^64 and near 2^53 → ERROR (overflow-safe)', () => {
    const n = sectors();
    const at = (lo: number, hi: number) => ({ op: BlkifOp.READ, sectorLo: lo, sectorHi: hi, segs: [seg(rw, 0, 1)] });
    refused(at(n, 0), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    refused(at(n - 1, 0), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    refused(at(0xffffffff, 0xffffffff), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    refused(at(0xfffffffe, 0xffffffff), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    refused(at(0xffffffff, 0x1fffff), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    refused(at(0, 1), BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SECTOR');
    // The last two sectors are fine.
    assert.equal(send(at(n - 2, 0)).status, BlkifStatus.OKAY);
  });

  it('grants: forged, granted to another domain, read-only for a READ, forged indirect page → ERROR, nothing left mapped', () => {
    const other = world.guests[1].domid as DomId;
    const foreign = guest.grant.grantAccess(other, gfnOf(page), false);
    const ro = guest.grant.grantAccess(DOM0, gfnOf(page) as never, true);
    const grantCode = /^PV_ERR_GRANT_/;
    refused({ op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(3999)] }, BlkifStatus.ERROR, grantCode);
    refused({ op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(foreign)] }, BlkifStatus.ERROR, grantCode);
    refused({ op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(ro)] }, BlkifStatus.ERROR, grantCode);
    // A read-only grant is enough for a WRITE (the backend only reads the page).
    assert.equal(send({ op: BlkifOp.WRITE, sectorLo: 0, sectorHi: 0, segs: [seg(ro)] }).status, BlkifStatus.OKAY);
    const ind = { op: BlkifOp.INDIRECT, indirectOp: BlkifOp.READ, nseg: 1, sectorLo: 0, sectorHi: 0 };
    refused({ ...ind, indirectGrefs: [3999] }, BlkifStatus.ERROR, grantCode);
  });

  it('partial map failure: segment 0 valid, segment 1 forged → ERROR, no byte written, all unmapped', () => {
    guest.mem.view(page, PAGE_SIZE).fill(0xee);
    const before = readFileSync(world.disk.path).subarray(100 * 512, 108 * 512);
    const r = { op: BlkifOp.WRITE, sectorLo: 100, sectorHi: 0, segs: [seg(rw), seg(3998)] };
    refused(r, BlkifStatus.ERROR, /^PV_ERR_GRANT_/);
    assert.deepEqual(readFileSync(world.disk.path).subarray(100 * 512, 108 * 512), before);
  });

  it('an indirect page with one bad descriptor among 100 good ones → ERROR', () => {
    const ind = guest.mem.allocPages(1);
    const v = guest.mem.view(ind, PAGE_SIZE);
    const words = new Int32Array(v.buffer, v.byteOffset, PAGE_SIZE / 4);
    for (let i = 0; i < 100; i++) encodeBlkifSegment(words, i * 2, seg(rw));
    encodeBlkifSegment(words, 60 * 2, seg(rw, 0, 8));
    const iref = guest.grant.grantAccess(DOM0, gfnOf(ind), true);
    const r = {
      op: BlkifOp.INDIRECT,
      indirectOp: BlkifOp.READ,
      nseg: 100,
      sectorLo: 0,
      sectorHi: 0,
      indirectGrefs: [iref],
    };
    refused(r, BlkifStatus.ERROR, 'PV_ERR_BLK_BAD_SEGMENT');
  });

  it('after every hostile request, honest direct and indirect I/O still works and the counters add up', async () => {
    refused({ op: 99, sectorLo: 0, sectorHi: 0, segs: [] }, BlkifStatus.EOPNOTSUPP, 'PV_ERR_BAD_OP');
    refused(
      { op: BlkifOp.READ, sectorLo: 0, sectorHi: 0, segs: [seg(1, 5, 4)] },
      BlkifStatus.ERROR,
      'PV_ERR_BLK_BAD_SEGMENT',
    );
    const buf = guest.mem.allocPages(32);
    const data = guest.mem.view(buf, 32 * PAGE_SIZE);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    const f = blk.front;
    await f.wait(f.write(64, 256, buf)); // 32 segments: one indirect request
    await f.wait(f.write(1000, 3, buf)); // one direct request
    const file = readFileSync(world.disk.path);
    assert.deepEqual(file.subarray(64 * 512, 320 * 512), Buffer.from(data));
    assert.deepEqual(file.subarray(1000 * 512, 1003 * 512), Buffer.from(data.subarray(0, 1536)));
    const h = world.backend.handler(guest.domid, 0);
    assert.ok(h);
    assert.deepEqual(h.refusals, { PV_ERR_BAD_OP: 1, PV_ERR_BLK_BAD_SEGMENT: 1 });
    assert.equal(h.stats.okay, 2);
    assert.equal(h.stats.indirect, 1);
    assert.equal(world.dom0.grant.liveMappings(), 1);
    await blk.close();
    assert.equal(world.dom0.grant.liveMappings(), 0, 'disconnect unmaps the ring');
  });

  it('a producer index beyond the ring halts that ring only (fatal), the backend survives', async () => {
    const ring = blk.front.ring;
    Atomics.store(ring.words, RingWord.REQ_PROD, (ring.reqProdPvt + 33) | 0);
    world.serve(2);
    assert.equal(world.backend.events.halted, 1);
    assert.match(world.log.join('\n'), /PV_ERR_RING_PROD_OVERFLOW/);
    // A second guest is still served.
    const other = await world.open(world.guests[1]);
    const b = world.guests[1].mem.allocPages(1);
    await other.front.wait(other.front.read(0, 8, b));
    assert.equal(world.dom0.grant.liveMappings(), 2, 'two rings mapped, no data mapping left');
  });
});

describe('blkback XSA-155: a request rewritten after the backend copied it changes nothing', () => {
  it('a direct slot and an indirect page rewritten during the I/O: the copy is what gets done and echoed', async () => {
    let onWrite: (() => void) | undefined;
    const world = await BlkWorld.create({
      wrap: (d) => ({
        sectors: d.sectors,
        sectorSize: d.sectorSize,
        readOnly: d.readOnly,
        read: (s, c, b) => d.read(s, c, b),
        write: (s, c, b) => {
          onWrite?.();
          d.write(s, c, b);
        },
        flush: () => d.flush(),
      }),
    });
    try {
      const guest = world.guests[0];
      const blk = await world.open(guest);
      const ring = blk.front.ring;
      const data = guest.mem.allocPages(16);
      const bytes = guest.mem.view(data, 16 * PAGE_SIZE);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i >> 9) + 1;
      const grefs = Array.from({ length: 16 }, (_, i) =>
        guest.grant.grantAccess(DOM0, (gfnOf(data) + i) as never, true),
      );

      // Direct: between the copy and the I/O the guest rewrites op, count, sector and gref.
      let slot = -1;
      onWrite = () => {
        ring.words[slot] = 99 | (11 << 8);
        ring.words[slot + 4] = -1;
        ring.words[slot + 5] = -1;
        ring.words[slot + 6] = 3999;
      };
      const rsp = rawRequest(world, ring, (w, at) => {
        slot = at;
        encodeBlkifRequest(w, at, {
          op: BlkifOp.WRITE,
          idLo: 7,
          idHi: 0,
          sectorLo: 40,
          sectorHi: 0,
          handle: 0,
          segs: [{ gref: grefs[0], first: 0, last: 7 }],
        });
      });
      const r = decodeBlkifResponse(rsp, 0, { idLo: 0, idHi: 0, op: 0, status: 0 });
      assert.deepEqual([r.idLo, r.op, r.status], [7, BlkifOp.WRITE, BlkifStatus.OKAY]);
      assert.deepEqual(
        readFileSync(world.disk.path).subarray(40 * 512, 48 * 512),
        Buffer.from(bytes.subarray(0, 4096)),
      );

      // Indirect: the descriptor page is rewritten (bad sectors, forged grefs) during the I/O.
      const ind = guest.mem.allocPages(1);
      const v = guest.mem.view(ind, PAGE_SIZE);
      const desc = new Int32Array(v.buffer, v.byteOffset, PAGE_SIZE / 4);
      for (let i = 0; i < 16; i++) encodeBlkifSegment(desc, i * 2, { gref: grefs[i], first: 0, last: 7 });
      const iref = guest.grant.grantAccess(DOM0, gfnOf(ind), true);
      onWrite = () => {
        for (let i = 0; i < 16; i++) encodeBlkifSegment(desc, i * 2, { gref: 3999, first: 5, last: 200 });
      };
      const rsp2 = rawRequest(world, ring, (w, at) =>
        encodeBlkifRequest(w, at, {
          op: BlkifOp.INDIRECT,
          indirectOp: BlkifOp.WRITE,
          nseg: 16,
          idLo: 8,
          idHi: 0,
          sectorLo: 512,
          sectorHi: 0,
          handle: 0,
          indirectGrefs: [iref],
        }),
      );
      const r2 = decodeBlkifResponse(rsp2, 0, { idLo: 0, idHi: 0, op: 0, status: 0 });
      assert.deepEqual([r2.idLo, r2.op, r2.status], [8, BlkifOp.INDIRECT, BlkifStatus.OKAY]);
      assert.deepEqual(readFileSync(world.disk.path).subarray(512 * 512, 640 * 512), Buffer.from(bytes));
      assert.equal(rsp.length, BLKIF_SLOT_WORDS);
      assert.equal(world.dom0.grant.liveMappings(), 1);
      await blk.close();
      assert.equal(world.dom0.grant.liveMappings(), 0);
    } finally {
      await world.close();
    }
  });
});

describe('blkback: a read-only vbd', () => {
  it('publishes info = VDISK_READONLY, refuses a raw WRITE with ERROR (PV_ERR_BAD_REQUEST), serves reads', async () => {
    const world = await BlkWorld.create({ readOnly: true });
    try {
      const guest = world.guests[0];
      const blk = await world.open(guest);
      assert.equal(blk.info.readOnly, true);
      const page = guest.mem.allocPages(1);
      const ref = guest.grant.grantAccess(DOM0, gfnOf(page), false);
      const req = (op: number) => (w: Int32Array, at: number) =>
        encodeBlkifRequest(w, at, {
          op,
          idLo: 1,
          idHi: 0,
          sectorLo: 0,
          sectorHi: 0,
          handle: 0,
          segs: [{ gref: ref, first: 0, last: 7 }],
        });
      const st = (words: Int32Array) => decodeBlkifResponse(words, 0, { idLo: 0, idHi: 0, op: 0, status: 0 }).status;
      assert.equal(st(rawRequest(world, blk.front.ring, req(BlkifOp.WRITE))), BlkifStatus.ERROR);
      assert.equal(world.backend.handler(guest.domid, 0)?.lastRefusal?.code, 'PV_ERR_BAD_REQUEST');
      assert.equal(st(rawRequest(world, blk.front.ring, req(BlkifOp.READ))), BlkifStatus.OKAY);
      await assert.rejects(blk.front.write(0, 1, page), (e) => (e as { code?: string }).code === 'PV_ERR_BAD_REQUEST');
    } finally {
      await world.close();
    }
  });
});
