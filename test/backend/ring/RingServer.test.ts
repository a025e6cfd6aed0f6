import assert from 'node:assert/strict';
import sinon from 'sinon';
import { RingServer } from '../../../backend/ring/RingServer.js';
import type { EvtchnOps } from '../../../protocol/Hypercalls.js';
import { decodeIoResponse, encodeIoResponse, type IoResponse } from '../../../protocol/ring/IoSlot.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import type { EvtchnPort } from '../../../protocol/Types.js';
import { ioRequest, MockRing, produceIoRequest } from '../../helpers/MockRing.js';

/** Event channels of one domain, in this thread: only what the server calls. */
class FakeEvtchn implements Partial<EvtchnOps> {
  notify = sinon.spy();
  kickSelf = sinon.spy();
  testAndClearPending = sinon.spy(() => false);
  wakeSnapshot = () => 0;
  waitForEvent = () => false;
}

const PORT = 7 as EvtchnPort;

function server(): { s: RingServer; ev: FakeEvtchn } {
  const ev = new FakeEvtchn();
  return { s: new RingServer(ev as unknown as EvtchnOps, { batchLimit: 4 }), ev };
}

function echo(req: Int32Array, rsp: Int32Array, w: number): undefined {
  encodeIoResponse(rsp, w, { idLo: req[0] >>> 0, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
  return undefined;
}

function responses(m: MockRing): number[] {
  const ids: number[] = [];
  const out: IoResponse = { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };
  while (m.front.unconsumedResponses() > 0) {
    ids.push(decodeIoResponse(m.front.words, m.front.responseSlot(), out).idLo);
    m.front.consumeResponse();
  }
  return ids;
}

describe('backend ring server: bounded work, deferral, halting', () => {
  it('takes at most batchLimit requests from one ring per round (fairness bound)', () => {
    const { s } = server();
    const m = MockRing.create();
    s.add(m.back, PORT, echo);
    for (let i = 0; i < 10; i++) produceIoRequest(m.front, ioRequest(i));
    m.front.pushRequests();
    assert.equal(s.serveOnce(), 4);
    assert.deepEqual(responses(m), [0, 1, 2, 3]);
    assert.equal(s.serveOnce(), 4);
    assert.equal(s.serveOnce(), 2);
  });

  it('a deferred request stalls its ring, keeps order, and is answered once when accepted', () => {
    const { s } = server();
    const m = MockRing.create();
    let accept = false;
    const seen: number[] = [];
    s.add(m.back, PORT, (req, rsp, w) => {
      seen.push(req[0]);
      if (req[0] === 1 && !accept) return false;
      return echo(req, rsp, w);
    });
    for (let i = 0; i < 3; i++) produceIoRequest(m.front, ioRequest(i));
    m.front.pushRequests();
    assert.equal(s.serveOnce(), 1);
    assert.deepEqual(responses(m), [0]);
    // Rewriting the shared slot now must not change the deferred private copy (XSA-155).
    m.words[RingWord.SLOTS + 16] = 99;
    assert.equal(s.serveOnce(), 0);
    accept = true;
    assert.equal(s.serveOnce(), 2);
    assert.deepEqual(responses(m), [1, 2]);
    assert.deepEqual(seen, [0, 1, 1, 1, 2]);
  });

  it('a producer-index overflow halts that ring only (XSA-39) and reports it', () => {
    const { s } = server();
    const bad = MockRing.create();
    const good = MockRing.create();
    const fatal = sinon.spy();
    s.add(bad.back, PORT, echo, fatal);
    s.add(good.back, PORT, echo);
    Atomics.store(bad.words, RingWord.REQ_PROD, 1000);
    produceIoRequest(good.front, ioRequest(5));
    good.front.pushRequests();
    assert.equal(s.serveOnce(), 1);
    assert.equal(fatal.callCount, 1);
    assert.equal(fatal.firstCall.args[0], 'PV_ERR_RING_PROD_OVERFLOW');
    assert.deepEqual(responses(good), [5]);
    assert.equal(s.stats.halted, 1);
  });

  it('notifies only when the frontend asked (rsp_event), and runs pollers every round', () => {
    const { s, ev } = server();
    const m = MockRing.create();
    s.add(m.back, PORT, echo);
    const poller = { poll: sinon.spy(() => 0), outstanding: () => false };
    s.addPoller(poller);
    produceIoRequest(m.front, ioRequest(1));
    m.front.pushRequests();
    s.serveOnce(); // rsp_event starts at start + 1: the first response notifies
    assert.equal(ev.notify.callCount, 1);
    produceIoRequest(m.front, ioRequest(2));
    m.front.pushRequests();
    s.serveOnce(); // the front has not re-armed rsp_event: suppressed
    assert.equal(ev.notify.callCount, 1);
    assert.equal(poller.poll.callCount, 2);
  });
});
