/**
 * protocol.md §6 on the control ring: every field a guest writes is hostile. Garbage, truncated
 * or oversized messages, refs it does not own, and handles of another guest get an error
 * response with a stable code — never a throw out of the serving loop, never a mapping left
 * behind, never an effect on another guest.
 */

import assert from 'node:assert/strict';
import type { ParavirtProvider } from '../../../frontend/verbs/paravirt/ParavirtProvider.js';
import { PV_CTRL_MAX_MESSAGE } from '../../../protocol/rdma/pv/PvConstants.js';
import { Access } from '../../../protocol/rdma/Verbs.js';
import { type GrantRef, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import type { Dom } from './helpers/PvWorld.js';
import { PvWorld } from './helpers/PvWorld.js';
import { codec, grantPages, indirect, rawBytes, rawCmd, rawCtrl } from './helpers/Raw.js';

describe('vrdma control §6: malformed messages get an error response and the ring goes on', () => {
  let world: PvWorld;
  let p: ParavirtProvider;

  beforeEach(async () => {
    world = await PvWorld.create({ guests: 1 });
    p = await world.open(world.guests[0]);
  });
  afterEach(async () => {
    await p.close();
    await world.close();
  });

  it('garbage and truncated protobuf → PV_ERR_BAD_REQUEST or PV_ERR_BAD_OP, then a valid command succeeds', () => {
    const valid = codec.encodeRequest({ seq: 5, cmd: { kind: 'deregMr', mr: 3 } });
    const junk = [
      new Uint8Array([0xff, 0xff, 0xff]),
      valid.subarray(0, valid.length - 1),
      new Uint8Array([0x6a, 0x50]),
    ];
    for (const bytes of junk) {
      const r = rawBytes(world, p, bytes);
      assert.ok(['PV_ERR_BAD_REQUEST', 'PV_ERR_BAD_OP'].includes(r.code), r.code);
      assert.ok(r.status < 0);
    }
    assert.equal(rawBytes(world, p, new Uint8Array(0)).code, 'PV_ERR_BAD_OP', 'an empty message has no command');
    assert.ok(p.allocPd() > 0, 'the ring still serves');
    assert.equal(world.server.stats.halted, 0);
  });

  it('a length word beyond the slot → PV_ERR_BAD_LENGTH', () => {
    for (const len of [PV_CTRL_MAX_MESSAGE + 1, 0x7fff_ffff, -1]) {
      const r = rawCtrl(world, p, (words, w) => {
        words[w] = len;
      });
      assert.equal(r.code, 'PV_ERR_BAD_LENGTH');
    }
    assert.ok(p.allocPd() > 0);
  });

  it('oversized repeated fields are refused before anything is mapped', () => {
    const pd = p.allocPd();
    const mappings = world.dom0.grant.liveMappings();
    const refs = Array.from({ length: 200 }, (_, i) => i + 8);
    let r = rawCmd(world, p, { kind: 'regMr', pd, addr: 0, length: 4096, access: 0, npages: 1, indirectRefs: refs });
    assert.equal(r.code, 'PV_ERR_BAD_REQUEST');
    r = rawCmd(world, p, { kind: 'createCq', entries: 16, ringRefs: refs });
    assert.equal(r.code, 'PV_ERR_BAD_REQUEST');
    r = rawCmd(world, p, {
      kind: 'regMr',
      pd,
      addr: 0,
      length: 0xffff_ffff,
      access: 0,
      npages: 1_048_577,
      indirectRefs: [8],
    });
    assert.equal(r.code, 'PV_ERR_BAD_LENGTH', 'an MR beyond 128 MiB');
    assert.equal(world.dom0.grant.liveMappings(), mappings);
  });

  it('numbers out of range → typed errors: unsafe address, zero length, bad access, bad CQ size, bad mask', () => {
    const pd = p.allocPd();
    const mr = (over: object) =>
      rawCmd(world, p, { kind: 'regMr', pd, addr: 0, length: 4096, access: 0, npages: 1, indirectRefs: [8], ...over });
    assert.equal(mr({ addr: -1 }).code, 'PV_ERR_RDMA_BAD_MEMORY');
    assert.equal(mr({ length: 0 }).code, 'PV_ERR_BAD_LENGTH');
    assert.equal(mr({ access: 0x10 }).code, 'PV_ERR_RDMA_BAD_ACCESS');
    assert.equal(mr({ access: Access.REMOTE_WRITE }).code, 'PV_ERR_RDMA_BAD_ACCESS');
    assert.equal(mr({ npages: 2 }).code, 'PV_ERR_BAD_REQUEST', 'npages must match the range');
    assert.equal(rawCmd(world, p, { kind: 'createCq', entries: 3, ringRefs: [8] }).code, 'PV_ERR_BAD_LENGTH');
    assert.equal(rawCmd(world, p, { kind: 'createCq', entries: 1 << 20, ringRefs: [8] }).code, 'PV_ERR_LIMIT');
    const cq = p.createCq(4).handle;
    const qp = p.createQp({
      pd,
      sendCq: cq,
      recvCq: cq,
      cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
      sqSigAll: false,
    }).handle;
    const attr = codec.decodeRequest(
      codec.encodeRequest({ seq: 1, cmd: { kind: 'modifyQp', qp, mask: 0, attr: {} as never } }),
    ).cmd;
    assert.equal(
      rawCmd(world, p, { ...(attr as Extract<typeof attr, { kind: 'modifyQp' }>), mask: 1 << 30 }).code,
      'PV_ERR_BAD_REQUEST',
    );
    assert.equal(world.server.stats.halted, 0);
  });
});

/** Registers `pages` pages at `addr` with the given refs as the MR's page list (raw RegMr). */
function regWith(
  world: PvWorld,
  p: ParavirtProvider,
  g: Dom,
  pd: number,
  addr: GuestPhysAddr,
  refs: number[],
  access: number,
) {
  return rawCmd(world, p, {
    kind: 'regMr',
    pd,
    addr,
    length: refs.length * PAGE_SIZE,
    access,
    npages: refs.length,
    indirectRefs: indirect(g, refs),
  });
}

describe('vrdma regMr §6.2 rule 9: a guest cannot register memory it does not own', () => {
  let world: PvWorld;
  let p1: ParavirtProvider;
  let p2: ParavirtProvider;

  beforeEach(async () => {
    world = await PvWorld.create();
    p1 = await world.open(world.guests[0]);
    p2 = await world.open(world.guests[1]);
  });
  afterEach(async () => {
    await p1.close();
    await p2.close();
    await world.close();
  });

  for (const transport of ['zero-copy', 'copy']) {
    it(`${transport}: foreign, misdirected, read-only, revoked and bogus refs → PV_ERR_RDMA_BAD_MEMORY, nothing stays mapped`, async () => {
      if (transport === 'copy') {
        await p1.close();
        p1 = await world.open(world.guests[0], 'paravirt-copy', 1);
      }
      const [g1, g2] = world.guests;
      const pd = p1.allocPd();
      const mappings = world.dom0.grant.liveMappings();
      const extents = world.iommu.liveExtents();
      const addr = g1.mem.allocPages(2);
      // Guest 2's pages, granted to dom0: guest 1 names guest 2's ref numbers as its own.
      const other = g2.mem.allocPages(2);
      // Ref numbers guest 2 granted and guest 1's table does not hold.
      const foreign: number[] = [];
      for (let i = 0; foreign.length < 2 && i < 64; i++) {
        const ref = grantPages(g2, other, 1, false)[0];
        if (world.grants.snapshot(g1.domid, ref).flags === 0) foreign.push(ref);
      }
      assert.equal(foreign.length, 2);
      // Guest 1's pages granted to guest 2, not to the backend's domain.
      const misdirected = grantPages(g1, addr, 2, false, 2);
      const readOnly = grantPages(g1, addr, 2, true);
      const revoked = grantPages(g1, addr, 2, false);
      for (const ref of revoked) g1.grant.endAccess(ref);
      const cases: Array<[string, number[], number]> = [
        ['foreign', foreign, Access.LOCAL_WRITE],
        ['misdirected', misdirected, Access.LOCAL_WRITE],
        ['read-only for a writable MR', readOnly, Access.LOCAL_WRITE | Access.REMOTE_WRITE],
        ['revoked', revoked, Access.LOCAL_WRITE],
        ['bogus', [0xffff_fff0, 7], Access.LOCAL_WRITE],
      ];
      for (const [what, refs, access] of cases) {
        const r = regWith(world, p1, g1, pd, addr, refs, access);
        assert.equal(r.code, 'PV_ERR_RDMA_BAD_MEMORY', what);
        assert.equal(world.dom0.grant.liveMappings(), mappings, `${what}: nothing stays mapped`);
        assert.equal(world.iommu.liveExtents(), extents, `${what}: no IOMMU entry stays`);
      }
      // Bogus indirect page refs: the refs of the refs are not ours either.
      const r = rawCmd(world, p1, {
        kind: 'regMr',
        pd,
        addr,
        length: PAGE_SIZE,
        access: 0,
        npages: 1,
        indirectRefs: [foreign[0]],
      });
      assert.equal(r.code, 'PV_ERR_RDMA_BAD_MEMORY');
      // Read-only refs are fine for an MR nobody writes.
      const ok = regWith(world, p1, g1, pd, addr, readOnly, Access.REMOTE_READ);
      assert.equal(ok.status, 0, ok.message);
      assert.equal(g2.grant.isGrantInUse(foreign[0] as GrantRef), false, "guest 2's page was never pinned");
    });
  }

  it("handles are per guest: guest 1 names guest 2's PD, CQ, MR and QP and reaches nothing", () => {
    const pd = p2.allocPd();
    const cq = p2.createCq(4).handle;
    const buf = world.guests[1].mem.allocPages(1);
    const mr = p2.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE).handle;
    const qp = p2.createQp({
      pd,
      sendCq: cq,
      recvCq: cq,
      cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
      sqSigAll: false,
    }).handle;
    const bad = { code: 'PV_ERR_RDMA_BAD_HANDLE' };
    assert.throws(() => p1.deallocPd(pd), bad);
    assert.throws(() => p1.destroyQp(qp), bad);
    assert.throws(() => p1.modifyQp(qp, { qpState: 6 }, 1), bad);
    for (const cmd of [
      { kind: 'destroyCq', cq },
      { kind: 'deregMr', mr },
      {
        kind: 'createQp',
        pd,
        sendCq: cq,
        recvCq: cq,
        cap: { maxSendWr: 1, maxRecvWr: 1, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
        sqSigAll: false,
      },
    ] as const) {
      assert.equal(rawCmd(world, p1, cmd as never).code, 'PV_ERR_RDMA_BAD_HANDLE', cmd.kind);
    }
    // Guest 2's objects are intact.
    p2.destroyQp(qp);
    p2.deregMr(mr);
    p2.destroyCq(cq);
    p2.deallocPd(pd);
  });
});
