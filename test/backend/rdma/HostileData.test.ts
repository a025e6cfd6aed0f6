/**
 * protocol.md §6 on the data ring: the backend copies each request once (RingServer) and checks
 * the copy — op whitelist, reserved words, the QP handle against THIS guest's table, the WQE
 * against the QP's caps — answering a refused request with a status in its response slot; the
 * frontend turns that into an error completion. A producer index the ring cannot hold halts that
 * guest's data ring only.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../frontend/verbs/index.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../../../protocol/errors.js';
import { PV_DATA_HDR_WORDS, PvDataOp } from '../../../protocol/rdma/pv/DataSlot.js';
import { SendFlags, WcStatus, WrOpcode, wcStatusName } from '../../../protocol/rdma/Verbs.js';
import {
  encodeRecvWqe,
  encodeSendWqe,
  RecvWqeWord,
  SEND_WQE_USED_WORDS,
  SEND_WQE_WORDS,
  SendWqeWord,
} from '../../../protocol/rdma/Wqe.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { PvWorld } from './helpers/PvWorld.js';
import { rawData } from './helpers/Raw.js';
import { connectedPair, fill, reap, type Side, same } from './helpers/Sides.js';

const status = (code: ErrorCode): number => ERROR_CATALOGUE[code].status;

/** The 28 used words of a send WQE for `wr`, then `edit` applied. */
function sendWords(wr: ibv.SendWr, edit: (w: Int32Array) => void = () => {}): number[] {
  const w = new Int32Array(SEND_WQE_WORDS);
  encodeSendWqe(w, 0, wr);
  edit(w);
  return [...w.subarray(0, SEND_WQE_USED_WORDS)];
}

/** The 16 words of a receive WQE for `wr`, then `edit` applied. */
function recvWords(wr: ibv.RecvWr, edit: (w: Int32Array) => void = () => {}): number[] {
  const w = new Int32Array(16);
  encodeRecvWqe(w, 0, wr);
  edit(w);
  return [...w];
}

for (const transport of ['paravirt', 'paravirt-copy'] as const) {
  describe(`${transport} data §6.2: a refused request gets its status, and the ring goes on`, () => {
    let world: PvWorld;
    let a: Side;
    let b: Side;

    beforeEach(async () => {
      world = await PvWorld.create();
      [a, b] = await connectedPair(world, transport);
    });
    afterEach(async () => {
      await ibv.closeDevice(a.ctx);
      await ibv.closeDevice(b.ctx);
      await world.close();
    });

    const write = (wrId: number): ibv.SendWr => ({
      wrId,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 64, lkey: a.mr.lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey,
    });

    it('header: an unknown op, a reserved word set, or a QP handle the guest does not hold', () => {
      const qp = a.qp.handle;
      const cases: Array<[string, number[], ErrorCode]> = [
        ['op 3', [3, qp, 0, 0], 'PV_ERR_BAD_OP'],
        ['op 0', [0, qp, 0, 0], 'PV_ERR_BAD_OP'],
        ['reserved word 2', [PvDataOp.POST_SEND, qp, 1, 0], 'PV_ERR_BAD_REQUEST'],
        ['reserved word 3', [PvDataOp.POST_SEND, qp, 0, -1], 'PV_ERR_BAD_REQUEST'],
        [
          'a QP handle the guest never created',
          [PvDataOp.POST_SEND, a.qp.handle + 1000, 0, 0],
          'PV_ERR_RDMA_BAD_HANDLE',
        ],
        ['QP handle 0', [PvDataOp.POST_RECV, 0, 0, 0], 'PV_ERR_RDMA_BAD_HANDLE'],
      ];
      for (const [what, header, code] of cases) {
        const r = rawData(world, a.provider, header, sendWords(write(77)));
        assert.equal(r.status, status(code), what);
        assert.equal(r.op, header[0] & 0xff, `${what}: op echoed`);
        assert.equal(r.qp, header[1] >>> 0, `${what}: qp echoed`);
        assert.equal(r.wrId, 77, `${what}: wr_id echoed`);
      }
    });

    it('send WQE: opcode, flags, pad byte, SGE count, inline length and address checked on the copy', () => {
      const h = [PvDataOp.POST_SEND, a.qp.handle, 0, 0];
      const op = SendWqeWord.OP_FLAGS_NSGE;
      const cases: Array<[string, number[], ErrorCode]> = [
        ['opcode 9', sendWords(write(1), (w) => (w[op] = (w[op] & ~0xff) | 9)), 'PV_ERR_RDMA_BAD_WR'],
        ['unknown flag', sendWords(write(2), (w) => (w[op] |= 0x10 << 8)), 'PV_ERR_RDMA_BAD_WR'],
        ['pad byte', sendWords(write(3), (w) => (w[op] |= 1 << 24)), 'PV_ERR_RDMA_BAD_WR'],
        [
          '4 SGEs on a 3-SGE QP',
          sendWords(write(4), (w) => (w[op] = (w[op] & 0xffff) | (4 << 16))),
          'PV_ERR_BAD_LENGTH',
        ],
        [
          'inline of 65 bytes on a 64-byte QP',
          sendWords(write(5), (w) => {
            w[op] = (w[op] & 0xff) | (SendFlags.INLINE << 8);
            w[SendWqeWord.INLINE_LEN] = 65;
          }),
          'PV_ERR_BAD_LENGTH',
        ],
        ['inline with an SGE', sendWords(write(6), (w) => (w[op] |= SendFlags.INLINE << 8)), 'PV_ERR_RDMA_BAD_WR'],
        [
          'inline RDMA_READ',
          sendWords({ ...write(7), opcode: WrOpcode.RDMA_READ }, (w) => {
            w[op] = (w[op] & 0xff) | (SendFlags.INLINE << 8);
          }),
          'PV_ERR_RDMA_BAD_WR',
        ],
        [
          'SGE address ≥ 2^53',
          sendWords(write(8), (w) => (w[SendWqeWord.SGE + 1] = 0x20_0000)),
          'PV_ERR_RDMA_BAD_MEMORY',
        ],
      ];
      for (const [what, wqe, code] of cases) {
        assert.equal(rawData(world, a.provider, h, wqe).status, status(code), what);
      }
      const rh = [PvDataOp.POST_RECV, a.qp.handle, 0, 0];
      const recv: ibv.RecvWr = { wrId: 9, sgList: [{ addr: a.buf, length: 8, lkey: a.mr.lkey }] };
      assert.equal(
        rawData(
          world,
          a.provider,
          rh,
          recvWords(recv, (w) => (w[RecvWqeWord.NSGE] = 4)),
        ).status,
        status('PV_ERR_BAD_LENGTH'),
      );
      assert.equal(
        rawData(
          world,
          a.provider,
          rh,
          recvWords(recv, (w) => (w[RecvWqeWord.PAD] = 1)),
        ).status,
        status('PV_ERR_RDMA_BAD_WR'),
      );
      // The ring goes on: a valid WRITE posted through the verbs API still moves its bytes.
      fill(a, 0, 64, 3);
      ibv.postSend(a.qp, write(10));
      assert.equal(wcStatusName(reap(world, a, 1)[0].status), 'SUCCESS');
      assert.ok(same(a, 0, b, 0, 64));
      assert.equal(world.server.stats.halted, 0);
      assert.ok((world.backend.session(a.dom.domid, 0)?.counters.dataRejects ?? 0) >= 10);
    });

    it('the frontend turns a refused WR into an error completion that pollCq returns, with its wr_id', () => {
      const ring = a.provider.channel.data;
      const w = ring.nextRequestSlot();
      const wqe = sendWords(write(4242), (x) => (x[SendWqeWord.OP_FLAGS_NSGE] |= 4 << 16));
      ring.words.set([PvDataOp.POST_SEND, a.qp.handle, 0, 0, ...wqe], w);
      ring.commitRequest();
      a.provider.flush();
      world.serve();
      const wc = reap(world, a, 1)[0];
      assert.equal(wc.wrId, 4242);
      assert.equal(wcStatusName(wc.status), wcStatusName(WcStatus.LOC_LEN_ERR));
      assert.equal(wc.qpNum, a.qp.qpNum);
      assert.equal(wc.vendorErr, -status('PV_ERR_BAD_LENGTH'), 'vendor_err carries the catalogue status');
      assert.equal(a.provider.takeCompletions(a.cq.handle, [ibv.emptyWc()], 0, 1), 0, 'taken once');
      assert.equal(PV_DATA_HDR_WORDS, 4);
    });
  });
}

describe('vrdma data §6.1 (XSA-39): a producer index beyond the ring halts that data ring only', () => {
  it("guest 1's garbage req_prod halts its data ring; guest 2's ring and guest 1's control ring go on", async () => {
    const world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt');
    const ring = a.provider.channel.data;
    // ORDERING: test thread only; the backend reads it in the next round.
    Atomics.store(ring.words, RingWord.REQ_PROD, (Atomics.load(ring.words, RingWord.RSP_PROD) + 1000) | 0);
    world.serve(2);
    assert.equal(world.server.stats.halted, 1);
    assert.equal(world.backend.stats.halted, 1);
    assert.match(world.log.join('\n'), /dom1 halted: PV_ERR_RING_PROD_OVERFLOW/);
    fill(b, 0, 256, 8);
    ibv.postSend(b.qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: b.buf, length: 256, lkey: b.mr.lkey }],
      remoteAddr: a.buf,
      rkey: a.mr.rkey,
    });
    assert.equal(reap(world, b, 1)[0].status, WcStatus.SUCCESS, 'the other guest is served');
    assert.ok(same(b, 0, a, 0, 256));
    assert.ok(a.provider.queryPort().portId > 0, "guest 1's control ring still answers");
    await ibv.closeDevice(b.ctx);
    await a.provider.close();
    await world.close();
  });
});
