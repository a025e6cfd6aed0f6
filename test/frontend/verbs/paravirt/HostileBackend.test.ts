/**
 * protocol.md §6 "frontend-side mirror checks": the backend is not trusted either. Here the
 * backend is the test itself, mapping the frontend's real rings from dom0 and answering with
 * whatever it likes: wrong sequence numbers, wrong result kinds, garbage bytes, a response
 * producer beyond the requests, silence, and data responses naming QPs the guest never had.
 */

import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { CtrlClient } from '../../../../frontend/verbs/paravirt/CtrlClient.js';
import { DataPoster, type FrontQp } from '../../../../frontend/verbs/paravirt/DataPoster.js';
import { PvChannel } from '../../../../frontend/verbs/paravirt/PvChannel.js';
import { RdmaError } from '../../../../protocol/errors.js';
import { CtrlCodec, readCtrlSlot, writeCtrlSlot } from '../../../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlResponse } from '../../../../protocol/rdma/pv/CtrlSchema.js';
import { encodeDataResponse, PvDataOp } from '../../../../protocol/rdma/pv/DataSlot.js';
import { PV_CTRL_SLOT_SIZE, PV_DATA_SLOT_SIZE } from '../../../../protocol/rdma/pv/PvConstants.js';
import { emptyWc, WcStatus } from '../../../../protocol/rdma/Verbs.js';
import { BackRing } from '../../../../protocol/ring/BackRing.js';
import { RingWord } from '../../../../protocol/ring/Layout.js';
import { DOM0 } from '../../../../protocol/Types.js';
import { PvWorld } from '../../../backend/rdma/helpers/PvWorld.js';

const codec = new CtrlCodec(protobuf);

/** A guest's channel and an evil backend holding its rings. */
async function setup(answer: (req: Uint8Array, rsp: Int32Array, w: number, ring: BackRing) => boolean) {
  const world = await PvWorld.create({ guests: 1 });
  const g = world.guests[0];
  let ctrl: BackRing | undefined;
  const priv = new Int32Array(PV_CTRL_SLOT_SIZE / 4);
  const ch = new PvChannel(g.hc, DOM0, {
    timeoutMs: 150,
    idle: () => {
      const ring = ctrl as BackRing;
      if (ring.unconsumedRequests() === 0) return;
      ring.copyRequest(priv);
      if (answer(readCtrlSlot(priv, 0), ring.words, ring.nextResponseSlot(), ring)) ring.commitResponse();
      ring.pushResponses();
    },
  });
  const ctrlMap = world.dom0.grant.mapGrants(g.domid, [ch.refs.ctrlRingRef], true);
  ctrl = new BackRing(ctrlMap.view, PV_CTRL_SLOT_SIZE);
  const dataMap = world.dom0.grant.mapGrants(g.domid, [...ch.refs.dataRingRefs], true);
  const data = new BackRing(dataMap.view, PV_DATA_SLOT_SIZE);
  world.dom0.evtchn.bindInterdomain(g.domid, ch.refs.port);
  return { world, ch, data, client: new CtrlClient(ch) };
}

/** Answers every request with `rsp(seq)`. */
function reply(rsp: (seq: number) => CtrlResponse) {
  return (req: Uint8Array, words: Int32Array, w: number): boolean => {
    writeCtrlSlot(words, w, codec.encodeResponse(rsp(codec.decodeRequest(req).seq)));
    return true;
  };
}

describe('paravirt frontend §6 mirror: a hostile backend cannot confuse the control client', () => {
  it('a response to another request (wrong seq) → PV_ERR_BAD_REQUEST', async () => {
    const { world, client } = await setup(
      reply((seq) => ({ seq: seq + 1, status: 0, code: '', message: '', result: { kind: 'pd', pd: 1 } })),
    );
    assert.throws(() => client.get({ kind: 'allocPd' }, 'pd'), { code: 'PV_ERR_BAD_REQUEST' });
    await world.close();
  });

  it('a success without the result the command needs → PV_ERR_BAD_REQUEST', async () => {
    const { world, client } = await setup(
      reply((seq) => ({ seq, status: 0, code: '', message: '', result: { kind: 'cq', cq: 1, entries: 4 } })),
    );
    assert.throws(() => client.get({ kind: 'allocPd' }, 'pd'), { code: 'PV_ERR_BAD_REQUEST' });
    await world.close();
  });

  it("the backend's refusal arrives as the same typed error (code and class); an unknown code falls back to its status", async () => {
    let code = 'PV_ERR_RDMA_BUSY';
    const { world, client } = await setup(reply((seq) => ({ seq, status: -104, code, message: 'PD 1 busy' })));
    assert.throws(
      () => client.run({ kind: 'deallocPd', pd: 1 }),
      (err: unknown) => err instanceof RdmaError && err.code === 'PV_ERR_RDMA_BUSY' && /PD 1 busy/.test(err.message),
    );
    code = 'NOT_A_CODE';
    assert.throws(() => client.run({ kind: 'deallocPd', pd: 1 }), { code: 'PV_ERR_RDMA_BUSY' });
    await world.close();
  });

  it('garbage response bytes → PV_ERR_BAD_REQUEST', async () => {
    const { world, client } = await setup((_req, words, w) => {
      writeCtrlSlot(words, w, new Uint8Array([0xff, 0xff, 0xff, 0x01]));
      return true;
    });
    assert.throws(() => client.run({ kind: 'queryPort' }), { code: 'PV_ERR_BAD_REQUEST' });
    await world.close();
  });

  it('silence → PV_ERR_TIMEOUT, bounded; a response producer beyond the requests → PV_ERR_RING_RSP_OVERFLOW', async () => {
    let mode: 'silent' | 'overflow' = 'silent';
    const { world, client } = await setup((_req, words, _w, ring) => {
      if (mode === 'overflow') {
        // ORDERING: test thread only.
        Atomics.store(words, RingWord.RSP_PROD, (ring.rspProdPvt + 5) | 0);
      }
      return false;
    });
    assert.throws(() => client.run({ kind: 'queryPort' }), { code: 'PV_ERR_TIMEOUT' });
    mode = 'overflow';
    assert.throws(() => client.run({ kind: 'queryPort' }), { code: 'PV_ERR_RING_RSP_OVERFLOW' });
    await world.close();
  });
});

describe('paravirt frontend §6 mirror: data responses are range-checked', () => {
  it('a refusal naming a QP the guest does not hold is counted and dropped; one naming its QP becomes an error WC', async () => {
    const { world, ch, data } = await setup(() => false);
    const qps = new Map<number, FrontQp>([[3, { handle: 3, qpNum: 17, sendCq: 5, recvCq: 6 }]]);
    const poster = new DataPoster(ch, world.guests[0].mem, qps);
    const priv = new Int32Array(PV_DATA_SLOT_SIZE / 4);
    for (let i = 0; i < 3; i++) {
      poster.postRecv(3, { wrId: 40 + i, sgList: [] });
    }
    ch.push();
    const answers: Array<[number, number, number]> = [
      [PvDataOp.POST_RECV, 99, -100],
      [7, 3, -100],
      [PvDataOp.POST_RECV, 3, -81],
    ];
    for (const [op, qp, status] of answers) {
      data.unconsumedRequests();
      data.copyRequest(priv);
      encodeDataResponse(data.words, data.nextResponseSlot(), op, status, qp, 42);
      data.commitResponse();
    }
    data.pushResponses();
    assert.equal(ch.drainData(), 3);
    assert.equal(poster.stats.strayResponses, 2);
    const out = [emptyWc()];
    assert.equal(poster.take(5, out, 0, 1), 0, 'nothing on the send CQ');
    assert.equal(poster.take(6, out, 0, 1), 1);
    assert.equal(out[0].status, WcStatus.LOC_LEN_ERR);
    assert.equal(out[0].qpNum, 17);
    assert.equal(out[0].wrId, 42);
    await world.close();
  });
});
