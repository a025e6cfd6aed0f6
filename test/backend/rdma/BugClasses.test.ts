/**
 * One test per known backend-bug class (protocol.md §6.4), on the RDMA backend end to end: real
 * frontends connect through XenStore, verbs go through the real backend to the real NIC model,
 * and a hostile guest writes its rings, grants and CQ pages directly (PvWorld: every piece real,
 * one thread; the XSA-155 test adds a real second thread). Older unit tests of the same rules
 * are named in each test's comment; these exercise the whole class on the backend as it serves.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../frontend/verbs/index.js';
import { ERROR_CATALOGUE } from '../../../protocol/errors.js';
import type { Transport } from '../../../protocol/Pci.js';
import { CQE_WORDS, CqeWord, CqWord } from '../../../protocol/rdma/Cq.js';
import { writeCtrlSlot } from '../../../protocol/rdma/pv/CtrlCodec.js';
import {
  decodeDataResponse,
  emptyDataResponse,
  PV_DATA_HDR_WORDS,
  PvDataOp,
} from '../../../protocol/rdma/pv/DataSlot.js';
import { PV_CTRL_SLOT_WORDS, PV_DATA_SLOT_WORDS, VRDMA_DEVICE_TYPE } from '../../../protocol/rdma/pv/PvConstants.js';
import { Access, SendFlags, WcStatus, WrOpcode, wcStatusName } from '../../../protocol/rdma/Verbs.js';
import { encodeRecvWqe, encodeSendWqe, SEND_WQE_WORDS, SendWqeWord } from '../../../protocol/rdma/Wqe.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { DOM0, type GrantRef, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { backendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { diffWords, SlotMutator } from '../SlotMutator.js';
import { type Dom, PvWorld, until } from './helpers/PvWorld.js';
import { codec, grantPages, indirect, rawCmd, rawData } from './helpers/Raw.js';
import { BUF, connectedPair, fill, openSide, reap, type Side, same } from './helpers/Sides.js';

const st = (code: keyof typeof ERROR_CATALOGUE): number => ERROR_CATALOGUE[code].status;

/** A whole data slot: header + send WQE for `wr`. */
function sendSlot(qp: number, wr: ibv.SendWr): Int32Array {
  const w = new Int32Array(PV_DATA_SLOT_WORDS);
  w.set([PvDataOp.POST_SEND, qp, 0, 0]);
  const wqe = new Int32Array(SEND_WQE_WORDS);
  encodeSendWqe(wqe, 0, wr);
  w.set(wqe.subarray(0, PV_DATA_SLOT_WORDS - PV_DATA_HDR_WORDS), PV_DATA_HDR_WORDS);
  return w;
}

/** dom0's holdings, to compare before and after. */
function dom0State(world: PvWorld): { mappings: number; extents: number; free: number } {
  return {
    mappings: world.dom0.grant.liveMappings(),
    extents: world.iommu.liveExtents(),
    free: world.dom0.mem.freePageCount(),
  };
}

const write = (s: Side, peer: Side, wrId: number, len = 64): ibv.SendWr => ({
  wrId,
  opcode: WrOpcode.RDMA_WRITE,
  sendFlags: SendFlags.SIGNALED,
  sgList: [{ addr: s.buf, length: len, lkey: s.mr.lkey }],
  remoteAddr: peer.buf,
  rkey: peer.mr.rkey,
});

describe('vrdma backend bug classes (protocol.md §6.4), one test each', () => {
  let world: PvWorld;
  afterEach(async () => world.close());

  it('XSA-155 double read: a second thread rewrites a copy-mode WQE while the backend copies it; only the honest version ever reaches the NIC', async () => {
    // Older: Ring.test.ts / RingServer.test.ts (copyRequest takes a private copy).
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const before = world.dom0.grant.liveMappings();
    fill(a, 0, 64, 9);
    const honest = sendSlot(a.qp.handle, write(a, b, 0));
    const hostile = honest.slice();
    const W = PV_DATA_HDR_WORDS;
    hostile[W + SendWqeWord.OP_FLAGS_NSGE] = (honest[W + SendWqeWord.OP_FLAGS_NSGE] & 0xffff) | (4 << 16); // 4 SGEs > cap 3
    hostile[W + SendWqeWord.RADDR_HI] = 0x200000; // remote address ≥ 2^53
    hostile[W + SendWqeWord.SGE + 1] = 0x200000; // SGE address ≥ 2^53
    const versions = diffWords(honest, hostile, W);
    assert.equal(versions.idx.length, 3);
    const ring = a.provider.channel.data;
    const m = new SlotMutator(ring.words, versions);
    const N = 150;
    let okay = 0;
    try {
      for (let i = 0; i < N; i++) {
        const w = ring.nextRequestSlot();
        ring.words.set(honest, w);
        ring.words[w + W + SendWqeWord.WR_ID_LO] = 5000 + i;
        ring.commitRequest();
        m.arm(w);
        ring.pushRequests();
        world.serve();
        m.disarm();
        for (let k = 0; k < 5 && ring.unconsumedResponses() === 0; k++) world.serve();
        assert.equal(ring.unconsumedResponses(), 1, `request ${i} answered exactly once`);
        const r = decodeDataResponse(ring.words, ring.responseSlot(), emptyDataResponse());
        ring.consumeResponse();
        assert.equal(r.wrId, 5000 + i, 'wr_id echoed from the copy');
        if (r.status === 0) {
          okay++;
          const wc = reap(world, a, 1)[0];
          assert.equal(wcStatusName(wc.status), 'SUCCESS', 'an accepted WR is the honest one');
          assert.equal(wc.wrId, 5000 + i);
        } else {
          assert.ok(
            [st('PV_ERR_BAD_LENGTH'), st('PV_ERR_RDMA_BAD_WR'), st('PV_ERR_RDMA_BAD_MEMORY')].includes(r.status),
          );
        }
      }
    } finally {
      await m.close();
    }
    world.serve(3);
    assert.equal(world.server.stats.halted, 0);
    const s = world.backend.session(a.dom.domid, 0);
    assert.equal(s?.counters.dataRequests, N);
    assert.equal(s?.counters.dataRejects, N - okay);
    assert.equal(s?.copy?.inflight, 0, 'no WR left tracked');
    assert.equal(world.dom0.grant.liveMappings(), before);
    if (okay > 0) assert.ok(same(a, 0, b, 0, 64));
    const rest = b.ctx.memory.view((b.buf + 64) as GuestPhysAddr, BUF - 64);
    assert.ok(
      rest.every((x) => x === 0),
      'nothing beyond the honest 64 bytes was written',
    );
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  it('XSA-39 producer index overflow: a full data ring is legal; size+1 on a control ring or a req_prod behind req_cons halts that ring only; teardown leaves nothing', async () => {
    // Older: HostileData.test.ts 'vrdma data §6.1 (XSA-39)' (data ring +1000 only).
    world = await PvWorld.create({ guests: 3 });
    const base = dom0State(world);
    const [ga, gb, gc] = world.guests;
    const pa = await world.open(ga);
    const pb = await world.open(gb);
    // Exactly `size` requests at once (each names no QP: refused, answered): all answered.
    const data = pa.channel.data;
    pa.channel.drainData();
    for (let i = 0; i < data.size; i++) {
      const w = data.nextRequestSlot();
      data.words.fill(0, w, w + PV_DATA_SLOT_WORDS);
      data.words.set([PvDataOp.POST_SEND, 0x7777, 0, 0, i], w);
      data.commitRequest();
    }
    assert.equal(data.isFull(), true);
    data.pushRequests();
    world.serve(4);
    assert.equal(data.unconsumedResponses(), data.size, 'every request of the full ring answered');
    assert.equal(world.server.stats.halted, 0);
    while (data.unconsumedResponses() > 0) data.consumeResponse();
    // Guest a: control ring req_prod = rsp_prod + size + 1. Guest b: data req_prod behind req_cons.
    const ctrl = pa.channel.ctrl;
    Atomics.store(ctrl.words, RingWord.REQ_PROD, (Atomics.load(ctrl.words, RingWord.RSP_PROD) + ctrl.size + 1) | 0);
    const bd = pb.channel.data;
    Atomics.store(bd.words, RingWord.REQ_PROD, (Atomics.load(bd.words, RingWord.RSP_PROD) - 1) | 0);
    world.serve(2);
    assert.equal(world.server.stats.halted, 2);
    assert.match(world.log.join('\n'), /dom1 halted: PV_ERR_RING_PROD_OVERFLOW/);
    assert.match(world.log.join('\n'), /dom2 halted: PV_ERR_RING_PROD_OVERFLOW/);
    // a's data ring and b's control ring still answer; a third guest is served.
    assert.equal(rawData(world, pa, [PvDataOp.POST_SEND, 0x7777, 0, 0], []).status, st('PV_ERR_RDMA_BAD_HANDLE'));
    assert.ok(pb.allocPd() > 0);
    const pc = await world.open(gc);
    assert.ok(pc.allocPd() > 0);
    // The halted guests die: everything of theirs is released.
    await world.toolstack.rm(backendDir(DOM0, VRDMA_DEVICE_TYPE, ga.domid, 0));
    await world.toolstack.rm(backendDir(DOM0, VRDMA_DEVICE_TYPE, gb.domid, 0));
    await until(world, () => world.backend.connections === 1, 'the halted guests to be disconnected');
    await pc.close();
    await until(world, () => world.backend.connections === 0, 'the last guest to disconnect');
    assert.deepEqual(dom0State(world), base);
    assert.equal(world.server.size, 0);
  });

  it('XSA-432/423/448 length and count arithmetic: SGE sums past the bounce space, lengths near 2^32 and MR ranges past 2^53 are refused before any grant is touched; zero-length WRs complete without one', async () => {
    // Older: HostileData.test.ts (SGE count / address words), HostileControl.test.ts (RegMr numbers).
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const copy = world.backend.session(a.dom.domid, 0)?.copy;
    assert.ok(copy);
    const maps = world.dom0.grant.liveMappings();
    const h = [PvDataOp.POST_SEND, a.qp.handle, 0, 0];
    const words = (wr: ibv.SendWr) => [...sendSlot(a.qp.handle, wr).subarray(PV_DATA_HDR_WORDS)];
    // Zero-length: no SGE, and one SGE of 0 bytes — answered, completed, no grant copy, no bounce.
    for (const sg of [[], [{ addr: a.buf, length: 0, lkey: a.mr.lkey }]]) {
      const in0: number = copy.copiedIn;
      const r = rawData(world, a.provider, h, words({ ...write(a, b, 1), sgList: sg }));
      assert.equal(r.status, 0, `zero-length (${sg.length} SGE) accepted`);
      assert.equal(wcStatusName(reap(world, a, 1)[0].status), 'SUCCESS');
      assert.equal(copy.copiedIn - in0, 0, 'no byte copied, no grant touched');
    }
    // Three SGEs of a whole MR each: 3 MiB > the 2 MiB bounce space → BAD_LENGTH before any copy.
    const inBefore = copy.copiedIn;
    const three = Array.from({ length: 3 }, () => ({ addr: a.buf, length: BUF, lkey: a.mr.lkey }));
    const big = rawData(world, a.provider, h, words({ ...write(a, b, 2), sgList: three }));
    assert.equal(big.status, st('PV_ERR_BAD_LENGTH'));
    assert.equal(copy.copiedIn, inBefore);
    // Control: lengths near 2^32 and ranges crossing 2^53 → refused, nothing mapped.
    const pd = a.pd.handle;
    const ref = grantPages(a.dom, a.buf, 1, false);
    const reg = (addr: number, length: number, npages: number) =>
      rawCmd(world, a.provider, {
        kind: 'regMr',
        pd,
        addr,
        length,
        access: Access.LOCAL_WRITE,
        npages,
        indirectRefs: indirect(a.dom, Array(Math.min(npages, 4)).fill(ref[0])),
      }).code;
    assert.notEqual(reg(0, 0xffffffff, 1 << 20), '', 'a 4 GiB MR');
    assert.notEqual(reg(2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE, 2), '', 'an MR crossing 2^53');
    assert.notEqual(reg(2 ** 32 - 100, 200, 2), '', 'an MR straddling 2^32 with the wrong page list');
    assert.equal(world.dom0.grant.liveMappings(), maps, 'no refused RegMr left a mapping');
    // Last (it sends the QP to ERR): an SGE whose end passes the MR's by one byte, addr near the end.
    const past = rawData(
      world,
      a.provider,
      h,
      words({ ...write(a, b, 3), sgList: [{ addr: a.buf + BUF - 1, length: 2, lkey: a.mr.lkey }] }),
    );
    assert.equal(past.status, 0, 'posted, so it fails in order on the device');
    assert.equal(wcStatusName(reap(world, a, 1)[0].status), wcStatusName(WcStatus.LOC_PROT_ERR));
    assert.equal(copy.copiedIn, inBefore, 'and no grant was copied for it');
    assert.equal(world.server.stats.halted, 0);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  it('XSA-216/403 uninitialised bytes: data and control responses and copy-mode CQEs are zero outside their fields although the guest filled them with garbage; a short RECV gets only its bytes', async () => {
    // Older: DataSlot.test.ts / IoSlot.test.ts (encoders zero padding).
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const ring = a.provider.channel.data;
    a.provider.channel.drainData();
    const recv = new Int32Array(16);
    encodeRecvWqe(recv, 0, { wrId: 31, sgList: [{ addr: a.buf, length: 8, lkey: a.mr.lkey }] });
    const slots: Array<[string, number[], number]> = [
      ['accepted send', [...sendSlot(a.qp.handle, write(a, b, 30))], 0],
      ['accepted recv', [PvDataOp.POST_RECV, a.qp.handle, 0, 0, ...recv], 0],
      ['unknown op', [9, a.qp.handle, 0, 0, 32], st('PV_ERR_BAD_OP')],
      ['bad handle', [PvDataOp.POST_SEND, 0x5555, 0, 0, 33], st('PV_ERR_RDMA_BAD_HANDLE')],
    ];
    for (const [what, words, want] of slots) {
      const w = ring.nextRequestSlot();
      ring.words.fill(-1, w, w + PV_DATA_SLOT_WORDS);
      ring.words.set(words, w);
      if (what === 'accepted send') {
        // Garbage in every SGE slot beyond num_sge and in inline_len (ignored, sanitised).
        ring.words.fill(-1, w + PV_DATA_HDR_WORDS + SendWqeWord.SGE + 4, w + PV_DATA_SLOT_WORDS);
        ring.words[w + PV_DATA_HDR_WORDS + SendWqeWord.INLINE_LEN] = -1;
      }
      ring.commitRequest();
      ring.pushRequests();
      for (let i = 0; i < 10 && ring.unconsumedResponses() === 0; i++) world.serve();
      const at = ring.responseSlot();
      const r = decodeDataResponse(ring.words, at, emptyDataResponse());
      assert.equal(r.status, want, what);
      assert.equal((ring.words[at] >>> 8) & 0xff, 0, `${what}: response byte 1 (pad) is zero`);
      for (let i = 4; i < PV_DATA_SLOT_WORDS; i++) assert.equal(ring.words[at + i], 0, `${what}: response word ${i}`);
      ring.consumeResponse();
    }
    assert.equal(reap(world, a, 1)[0].wrId, 30, 'the accepted send completed');
    // Control: a slot full of garbage around a valid request; the response is zero after its bytes.
    const ctrl = a.provider.channel.ctrl;
    const w = ctrl.nextRequestSlot();
    ctrl.words.fill(-1, w, w + PV_CTRL_SLOT_WORDS);
    writeCtrlSlot(ctrl.words, w, codec.encodeRequest({ seq: 77, cmd: { kind: 'queryPort' } }));
    ctrl.words.fill(-1, w + 1 + Math.ceil(ctrl.words[w] / 4), w + PV_CTRL_SLOT_WORDS);
    ctrl.commitRequest();
    ctrl.pushRequests();
    world.serve(2);
    const at = ctrl.responseSlot();
    const len = ctrl.words[at];
    const bytes = new Uint8Array(ctrl.words.buffer, ctrl.words.byteOffset + (at + 1) * 4, (PV_CTRL_SLOT_WORDS - 1) * 4);
    assert.equal(codec.decodeResponse(bytes.slice(0, len)).seq, 77);
    assert.ok(
      bytes.subarray(len).every((x) => x === 0),
      'control response bytes past the message are zero',
    );
    ctrl.consumeResponse();
    // Copy-mode CQEs: the guest's CQ ring is full of garbage; each produced CQE's padding is zero.
    const cqw = a.cq.words;
    cqw.fill(-1, CqWord.CQES);
    ibv.postRecv(b.qp, { wrId: 40, sgList: [{ addr: b.buf, length: 4096, lkey: b.mr.lkey }] });
    b.ctx.memory.view(b.buf, 4096).fill(0xaa);
    // Bounce space first carries other data (a big READ), then a 10-byte SEND lands in a 4 KiB receive.
    fill(b, 8192, 65536, 4);
    ibv.postSend(a.qp, { ...write(a, b, 41, 65536), opcode: WrOpcode.RDMA_READ, remoteAddr: b.buf + 8192 });
    reap(world, a, 1);
    fill(a, 0, 10, 5);
    ibv.postSend(a.qp, {
      wrId: 42,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 10, lkey: a.mr.lkey }],
    });
    assert.equal(reap(world, a, 1)[0].wrId, 42);
    const rwc = reap(world, b, 1)[0];
    assert.equal(rwc.byteLen, 10);
    assert.ok(same(a, 0, b, 0, 10));
    assert.ok(
      b.ctx.memory.view((b.buf + 10) as GuestPhysAddr, 4086).every((x) => x === 0xaa),
      'no bounce leftovers past byte_len',
    );
    const prod = Atomics.load(cqw, CqWord.PROD);
    const entries = (cqw.length - CqWord.CQES) / CQE_WORDS;
    for (const i of [prod - 2, prod - 1]) {
      const base = CqWord.CQES + (i & (entries - 1)) * CQE_WORDS;
      for (let k = CqeWord.PAD; k < CQE_WORDS; k++) assert.equal(cqw[base + k], 0, `CQE ${i} word ${k}`);
    }
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  for (const transport of ['paravirt', 'paravirt-copy'] as Transport[]) {
    it(`XSA-396 revoking a grant still mapped (${transport}): MR and CQ pages the backend maps cannot be ended until it unmaps them; an ended copy-mode page fails the WR, not the backend`, async () => {
      // Older: ParavirtProvider.test.ts 'close ends every grant … (XSA-396)' (frontend side).
      world = await PvWorld.create();
      const [a, b] = await connectedPair(world, transport);
      const g = a.dom;
      const addr = g.mem.allocPages(2);
      const refs = grantPages(g, addr, 2, false);
      const pd = a.pd.handle;
      const reg = (access: number) =>
        rawCmd(world, a.provider, {
          kind: 'regMr',
          pd,
          addr,
          length: 2 * PAGE_SIZE,
          access,
          npages: 2,
          indirectRefs: indirect(g, refs),
        });
      // A remote-access MR is mapped for the NIC in both modes: its pages cannot be ended.
      const r = reg(Access.LOCAL_WRITE | Access.REMOTE_WRITE);
      assert.equal(r.code, '', r.message);
      const mr = (r.result as { mr: number }).mr;
      for (const ref of refs) assert.throws(() => g.grant.endAccess(ref), { code: 'PV_ERR_GRANT_IN_USE' });
      assert.equal(rawCmd(world, a.provider, { kind: 'deregMr', mr }).code, '');
      for (const ref of refs) assert.equal(g.grant.isGrantInUse(ref), false, 'unmapped at deregMr');
      // A CQ ring is mapped for the CQ's life.
      const cqPage = g.mem.allocPages(1);
      const cqRef = grantPages(g, cqPage, 1, false)[0];
      const cq = rawCmd(world, a.provider, { kind: 'createCq', entries: 4, ringRefs: [cqRef] });
      assert.equal(cq.code, '', cq.message);
      assert.throws(() => g.grant.endAccess(cqRef), { code: 'PV_ERR_GRANT_IN_USE' });
      assert.equal(rawCmd(world, a.provider, { kind: 'destroyCq', cq: (cq.result as { cq: number }).cq }).code, '');
      g.grant.endAccess(cqRef);
      if (transport === 'paravirt-copy') {
        // A local-only MR is copied through per operation, not mapped: the guest may end its
        // grant; the next WR that names it fails with LOC_PROT_ERR and the backend goes on.
        const local = reg(Access.LOCAL_WRITE);
        assert.equal(local.code, '');
        const lkey = (local.result as { lkey: number }).lkey;
        for (const ref of refs) g.grant.endAccess(ref);
        ibv.postSend(a.qp, { ...write(a, b, 7), sgList: [{ addr, length: 64, lkey }] });
        assert.equal(wcStatusName(reap(world, a, 1)[0].status), wcStatusName(WcStatus.LOC_PROT_ERR));
        assert.equal(world.server.stats.halted, 0);
      } else {
        for (const ref of refs) g.grant.endAccess(ref);
      }
      await ibv.closeDevice(a.ctx);
      await ibv.closeDevice(b.ctx);
      await until(world, () => world.backend.connections === 0, 'both guests to disconnect');
      assert.equal(world.dom0.grant.liveMappings(), 0);
    });
  }

  for (const transport of ['paravirt', 'paravirt-copy'] as Transport[]) {
    it(`XSA-331/350/371 teardown with work in flight (${transport}): a guest dies with receives posted; everything is released, and late traffic to it touches nothing`, async () => {
      // Older: Teardown.test.ts (idle guests, no work in flight).
      world = await PvWorld.create();
      const base = dom0State(world);
      const [a, b] = await connectedPair(world, transport);
      // a: receives posted (copy mode: tracked, with bounce runs), remote-writable MR.
      for (let i = 0; i < 8; i++)
        ibv.postRecv(a.qp, { wrId: i, sgList: [{ addr: a.buf + i * 4096, length: 4096, lkey: a.mr.lkey }] });
      world.serve(2);
      if (transport === 'paravirt-copy') assert.equal(world.backend.session(a.dom.domid, 0)?.copy?.inflight, 8);
      a.ctx.memory.view(a.buf, BUF).fill(0x6b);
      const cqBefore = a.cq.words.slice();
      const rkey = a.mr.rkey;
      // The guest dies (no more guest code runs); the toolstack removes its backend directory.
      await world.toolstack.rm(backendDir(DOM0, VRDMA_DEVICE_TYPE, a.dom.domid, 0));
      await until(world, () => world.backend.connections === 1, 'the dead guest to be torn down');
      assert.equal(world.backend.stats.teardownErrors, 0);
      // Late traffic: b SENDs to a's dead QP and RDMA WRITEs with a's old rkey.
      fill(b, 0, 4096, 3);
      ibv.postSend(b.qp, {
        wrId: 1,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: b.buf, length: 64, lkey: b.mr.lkey }],
      });
      ibv.postSend(b.qp, { ...write(b, a, 2, 4096), rkey });
      const wcs = reap(world, b, 2, 400);
      for (const wc of wcs) assert.notEqual(wcStatusName(wc.status), 'SUCCESS', `late WR ${wc.wrId} reached nothing`);
      world.serve(10);
      assert.ok(
        a.ctx.memory.view(a.buf, BUF).every((x) => x === 0x6b),
        "nothing wrote into the dead guest's buffer",
      );
      assert.deepEqual(a.cq.words.slice(CqWord.CQES), cqBefore.slice(CqWord.CQES), 'nothing wrote into its CQ ring');
      for (let ref = 8; ref < 512; ref++)
        assert.equal(a.dom.grant.isGrantInUse(ref as GrantRef), false, `grant ${ref}`);
      await ibv.closeDevice(b.ctx);
      await until(world, () => world.backend.connections === 0, 'the neighbour to disconnect');
      assert.deepEqual(dom0State(world), base);
    });
  }

  it('XSA-332/391/392 event and request flooding: a guest keeping its data ring full and kicking in a loop does not starve a neighbour; work per ring per round and backend memory stay bounded', async () => {
    // Older: RingServer.test.ts (batchLimit per round, with fake rings), CopyMode.test.ts (bounce backpressure).
    world = await PvWorld.create({ guests: 3 });
    const flooder = await openSide(world, world.guests[2] as Dom, 'paravirt-copy');
    // Its QP loops back to itself, so its receives are valid and fill the queue.
    ibv.connectRcQp(flooder.qp, { destQpNum: flooder.qp.qpNum, dlid: flooder.ctx.portId }, Access.LOCAL_WRITE);
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const fr = flooder.provider.channel.data;
    const fs = world.backend.session(flooder.dom.domid, 0);
    assert.ok(fs?.copy);
    const maps = world.dom0.grant.liveMappings();
    const free = world.dom0.mem.freePageCount();
    const recv = new Int32Array(16);
    encodeRecvWqe(recv, 0, { wrId: 1, sgList: [{ addr: flooder.buf, length: 4096, lkey: flooder.mr.lkey }] });
    const ROUNDS = 120;
    let mine = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // The flooder: refill the whole ring — first half of the run refused requests, then valid
      // receives (its queue and bounce space fill: deferred, never buffered) — and kick 100 times.
      flooder.provider.channel.drainData();
      while (!fr.isFull()) {
        const w = fr.nextRequestSlot();
        fr.words.fill(0, w, w + PV_DATA_SLOT_WORDS);
        if (round < ROUNDS / 2) fr.words.set([PvDataOp.POST_SEND, 0x6666, 0, 0], w);
        else fr.words.set([PvDataOp.POST_RECV, flooder.qp.handle, 0, 0, ...recv], w);
        fr.commitRequest();
      }
      fr.pushRequests();
      for (let k = 0; k < 100; k++) flooder.dom.evtchn.notify(flooder.provider.channel.refs.port);
      // The neighbour: one signaled WRITE; it completes within two rounds.
      const before = fs.counters.dataRequests + fs.counters.deferrals;
      ibv.postSend(a.qp, write(a, b, round));
      let got = 0;
      const wcs = [ibv.emptyWc()];
      for (let k = 0; k < 2 && got === 0; k++) {
        world.serve();
        got = ibv.pollCq(a.cq, 1, wcs);
      }
      assert.equal(got, 1, `round ${round}: the neighbour's WR completed within two rounds`);
      assert.equal(wcs[0].status, WcStatus.SUCCESS);
      mine++;
      // At most batchLimit (64) of the flooder's requests per round, whatever its ring holds.
      assert.ok(fs.counters.dataRequests + fs.counters.deferrals - before <= 2 * 64, 'bounded work per round');
      assert.equal(world.dom0.grant.liveMappings(), maps, 'no mapping grows with the flood');
      assert.equal(world.dom0.mem.freePageCount(), free, "dom0's memory does not grow with the flood");
      assert.ok(fs.copy.inflight <= fs.limits.maxOutstandingWr, 'tracked WRs bounded by the quota');
    }
    assert.equal(mine, ROUNDS);
    assert.ok(fs.counters.deferrals > 0, 'the flooder was deferred (backpressure), not buffered');
    assert.ok(fs.counters.dataRequests >= (ROUNDS / 2) * 64, 'the flooder was served too');
    assert.equal(world.server.stats.halted, 0);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
    await ibv.closeDevice(flooder.ctx);
  });
});
