/**
 * The paravirtual data path in one thread over the real NIC model: two guests' verbs go through
 * the real frontend, the data ring, the real backend and the real device, for both transports.
 * Zero-copy moves bytes between the guests' own pages (mapped once for the NIC); copy moves them
 * through the backend's bounce buffers with grant copies. The same assertions hold for both.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../frontend/verbs/index.js';
import type { Transport } from '../../../protocol/Pci.js';
import {
  Access,
  SendFlags,
  WcFlags,
  WcOpcode,
  WcStatus,
  WrOpcode,
  wcStatusName,
} from '../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import { PvWorld } from './helpers/PvWorld.js';
import { BUF, connectedPair, fill, reap, type Side, same } from './helpers/Sides.js';

const SIZES = [1, 3, 4096, 4097, 65_537, BUF - 1];

function status(wc: ibv.Wc, want: WcStatus): void {
  assert.equal(wcStatusName(wc.status), wcStatusName(want), `wr ${wc.wrId}`);
}

for (const transport of ['paravirt', 'paravirt-copy'] as Transport[]) {
  describe(`${transport}: verbs move the right bytes between two guests (one thread, real NIC)`, () => {
    let world: PvWorld;
    let a: Side;
    let b: Side;

    beforeEach(async () => {
      // Two NICs: each guest on its own, as a scenario places them.
      world = await PvWorld.create({ nics: 2 });
      [a, b] = await connectedPair(world, transport);
    });

    afterEach(async () => {
      await ibv.closeDevice(a.ctx);
      await ibv.closeDevice(b.ctx);
      await world.close();
    });

    it('RDMA_WRITE delivers every size, odd sizes and unaligned offsets included', () => {
      for (const size of SIZES) {
        const off = size < BUF - 8 ? size & 7 : 0;
        fill(a, off, size, size);
        ibv.postSend(a.qp, {
          wrId: size,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: a.buf + off, length: size, lkey: a.mr.lkey }],
          remoteAddr: b.buf + (BUF - size),
          rkey: b.mr.rkey,
        });
        const wc = reap(world, a, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.wrId, size);
        assert.ok(same(a, off, b, BUF - size, size), `${size}-byte WRITE landed`);
      }
    });

    it('RDMA_READ returns every size into a scatter list of two SGEs', () => {
      for (const size of SIZES) {
        if (size < 2) continue;
        fill(b, 0, size, size + 1);
        const half = size >> 1;
        ibv.postSend(a.qp, {
          wrId: size,
          opcode: WrOpcode.RDMA_READ,
          sendFlags: SendFlags.SIGNALED,
          sgList: [
            { addr: a.buf + BUF - half, length: half, lkey: a.mr.lkey },
            { addr: a.buf, length: size - half, lkey: a.mr.lkey },
          ],
          remoteAddr: b.buf,
          rkey: b.mr.rkey,
        });
        const wc = reap(world, a, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.opcode, WcOpcode.RDMA_READ);
        assert.ok(same(a, BUF - half, b, 0, half), `first SGE of a ${size}-byte READ`);
        assert.ok(same(a, 0, b, half, size - half), `second SGE of a ${size}-byte READ`);
      }
    });

    it('SEND lands in the posted receive with byte_len, even when both arrive in one backend round (receive doorbells first)', () => {
      for (const size of SIZES) {
        ibv.postRecv(b.qp, { wrId: 7000 + size, sgList: [{ addr: b.buf, length: BUF, lkey: b.mr.lkey }] });
        // No serving round between: the backend takes the SEND (guest 1's ring is served first)
        // and the RECV in the same round, and must ring the receive doorbell first.
        fill(a, 0, size, size + 2);
        ibv.postSend(a.qp, {
          wrId: size,
          opcode: WrOpcode.SEND,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: a.buf, length: size, lkey: a.mr.lkey }],
        });
        status(reap(world, a, 1)[0], WcStatus.SUCCESS);
        const wc = reap(world, b, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.opcode, WcOpcode.RECV);
        assert.equal(wc.byteLen, size);
        assert.equal(wc.wrId, 7000 + size);
        assert.equal(wc.qpNum, b.qp.qpNum);
        assert.ok(same(a, 0, b, 0, size), `${size}-byte SEND`);
      }
    });

    it('an INLINE SEND carries its payload in the WQE; the buffer is reusable at once', () => {
      ibv.postRecv(b.qp, { wrId: 1, sgList: [{ addr: b.buf, length: 64, lkey: b.mr.lkey }] });
      fill(a, 0, 60, 9);
      ibv.postSend(a.qp, {
        wrId: 2,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.SIGNALED | SendFlags.INLINE,
        sgList: [
          { addr: a.buf, length: 20, lkey: 0 },
          { addr: a.buf + 20, length: 40, lkey: 0 },
        ],
      });
      const sent = a.ctx.memory.view(a.buf, 60).slice();
      a.ctx.memory.view(a.buf, 60).fill(0);
      status(reap(world, a, 1)[0], WcStatus.SUCCESS);
      assert.equal(reap(world, b, 1)[0].byteLen, 60);
      assert.deepEqual([...b.ctx.memory.view(b.buf, 60)], [...sent]);
    });

    it('RDMA_WRITE_WITH_IMM consumes a receive, delivers the immediate, and puts no data in the receive buffer', () => {
      const guard = b.ctx.memory.view((b.buf + 4096) as GuestPhysAddr, 64);
      guard.fill(0xab);
      ibv.postRecv(b.qp, { wrId: 55, sgList: [{ addr: b.buf + 4096, length: 64, lkey: b.mr.lkey }] });
      fill(a, 0, 100, 3);
      ibv.postSend(a.qp, {
        wrId: 56,
        opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
        sendFlags: SendFlags.SIGNALED,
        immData: 0xdeadbeef,
        sgList: [{ addr: a.buf, length: 100, lkey: a.mr.lkey }],
        remoteAddr: b.buf,
        rkey: b.mr.rkey,
      });
      status(reap(world, a, 1)[0], WcStatus.SUCCESS);
      const wc = reap(world, b, 1)[0];
      assert.equal(wc.opcode, WcOpcode.RECV_RDMA_WITH_IMM);
      assert.ok(wc.wcFlags & WcFlags.WITH_IMM);
      assert.equal(wc.immData, 0xdeadbeef);
      assert.equal(wc.wrId, 55);
      assert.ok(same(a, 0, b, 0, 100));
      assert.ok(
        guard.every((x) => x === 0xab),
        'the receive buffer is untouched',
      );
    });

    it('unsignaled WRs complete silently; the signaled one after them completes, all data lands', () => {
      fill(a, 0, 32 * 64, 4);
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < 32; i++) {
        wrs.push({
          wrId: i,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: i === 31 ? SendFlags.SIGNALED : 0,
          sgList: [{ addr: a.buf + i * 64, length: 64, lkey: a.mr.lkey }],
          remoteAddr: b.buf + i * 64,
          rkey: b.mr.rkey,
        });
      }
      ibv.postSend(a.qp, wrs);
      const got = reap(world, a, 1);
      assert.equal(got[0].wrId, 31);
      assert.ok(same(a, 0, b, 0, 32 * 64));
    });

    it('a forged lkey, a range past the MR and a READ into memory without LOCAL_WRITE fail with LOC_PROT_ERR', () => {
      const ro = a.ctx.allocBuffer(4096);
      const mrRo = ibv.regMr(a.pd, ro, 4096, 0);
      const bad: ibv.SendWr[] = [
        {
          wrId: 1,
          opcode: WrOpcode.RDMA_WRITE,
          sgList: [{ addr: a.buf, length: 16, lkey: (a.mr.lkey ^ 0x5a) >>> 0 }],
          remoteAddr: b.buf,
          rkey: b.mr.rkey,
        },
        {
          wrId: 2,
          opcode: WrOpcode.RDMA_WRITE,
          sgList: [{ addr: a.buf + BUF - 8, length: 64, lkey: a.mr.lkey }],
          remoteAddr: b.buf,
          rkey: b.mr.rkey,
        },
        {
          wrId: 3,
          opcode: WrOpcode.RDMA_READ,
          sgList: [{ addr: ro, length: 16, lkey: mrRo.lkey }],
          remoteAddr: b.buf,
          rkey: b.mr.rkey,
        },
      ];
      for (const wr of bad) {
        // A failed WR moves the QP to ERR: give each its own connection.
        ibv.connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: b.ctx.portId }, Access.LOCAL_WRITE);
        ibv.postSend(a.qp, { ...wr, sendFlags: SendFlags.SIGNALED });
        const wc = reap(world, a, 1)[0];
        assert.equal(wc.wrId, wr.wrId);
        status(wc, WcStatus.LOC_PROT_ERR);
      }
    });

    it("a guest's SGEs only reach its own memory, whatever lkey it names", () => {
      b.ctx.memory.view(b.buf, 16).fill(0x11);
      a.ctx.memory.view((a.buf + (b.buf - a.buf)) as GuestPhysAddr, 16).fill(0x22);
      ibv.postSend(a.qp, {
        wrId: 9,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        // b's own buffer address and lkey, named by a as its LOCAL source.
        sgList: [{ addr: b.buf, length: 16, lkey: b.mr.lkey }],
        remoteAddr: b.buf + 4096,
        rkey: b.mr.rkey,
      });
      const wc = reap(world, a, 1)[0];
      const landed = [...b.ctx.memory.view((b.buf + 4096) as GuestPhysAddr, 16)];
      assert.ok(!landed.includes(0x11), "b's bytes never left b through a's WR");
      // The number names nothing of a's (LOC_PROT_ERR), or one of a's own MRs: a's bytes moved.
      if (wc.status !== WcStatus.SUCCESS) status(wc, WcStatus.LOC_PROT_ERR);
      else assert.deepEqual(landed, new Array(16).fill(0x22));
    });

    it('128 outstanding WRs of both kinds complete in order', () => {
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < 64; i++) {
        wrs.push({
          wrId: 1000 + i,
          opcode: i % 2 ? WrOpcode.RDMA_WRITE : WrOpcode.RDMA_READ,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: a.buf + i * 4096, length: 4096, lkey: a.mr.lkey }],
          remoteAddr: b.buf + i * 4096,
          rkey: b.mr.rkey,
        });
      }
      ibv.postSend(a.qp, wrs);
      reap(world, a, 64).forEach((wc, i) => {
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.wrId, 1000 + i, 'in order');
      });
    });
  });
}

describe("paravirt: on one NIC, another guest's lkey fails at the NIC's PD check (LOC_PROT_ERR, in order)", () => {
  it('each guest has its own device PDs, so the lkey of an MR of guest b is refused for a QP of guest a', async () => {
    const world = await PvWorld.create({ nics: 1 });
    const [a, b] = await connectedPair(world, 'paravirt');
    fill(a, 0, 64, 1);
    const wr = (wrId: number, lkey: number): ibv.SendWr => ({
      wrId,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 64, lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey,
    });
    assert.notEqual(a.mr.lkey, b.mr.lkey, 'device keys of one NIC are distinct');
    ibv.postSend(a.qp, [wr(1, a.mr.lkey), wr(2, b.mr.lkey)]);
    const got = reap(world, a, 2);
    status(got[0], WcStatus.SUCCESS);
    assert.equal(got[1].wrId, 2);
    status(got[1], WcStatus.LOC_PROT_ERR);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
    await world.close();
  });
});
