/**
 * The exactly-once and padding checks must be able to fail: a correct backend loop (the real
 * RingServer over a real ring, indices starting near 2^32 so they wrap) passes them, and
 * deliberately broken backend stubs — one that never answers, one that publishes more responses
 * than requests, one that leaves padding dirty (XSA-216) — are each reported with their
 * signature.
 */

import assert from 'node:assert/strict';
import { RingServer } from '../../../backend/ring/RingServer.js';
import { auditCounts, auditPadding } from '../../../fuzz/core/ExactlyOnce.js';
import type { EvtchnOps } from '../../../protocol/Hypercalls.js';
import { encodeIoResponse } from '../../../protocol/ring/IoSlot.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import type { EvtchnPort } from '../../../protocol/Types.js';
import { ioRequest, MockRing, produceIoRequest } from '../../helpers/MockRing.js';

const evtchn = {
  notify: () => {},
  kickSelf: () => {},
  testAndClearPending: () => false,
  wakeSnapshot: () => 0,
  waitForEvent: () => false,
} as unknown as EvtchnOps;

type Handler = (req: Int32Array, rsp: Int32Array, w: number) => boolean | undefined;

const good: Handler = (req, rsp, w) => {
  encodeIoResponse(rsp, w, { idLo: req[0] >>> 0, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
  return undefined;
};

/** Publishes `n` requests, runs `rounds` of the server with `handler`, returns the counts. */
function drive(handler: Handler, n: number, after: (ring: MockRing) => void = () => {}) {
  const ring = MockRing.create({ start: 0xffffffff - 3 });
  const server = new RingServer(evtchn, { batchLimit: 8 });
  server.add(ring.back, 3 as EvtchnPort, handler);
  const rspBefore = Atomics.load(ring.front.words, RingWord.RSP_PROD) >>> 0;
  for (let i = 0; i < n; i++) produceIoRequest(ring.front, ioRequest(i + 1));
  ring.front.pushRequests();
  for (let r = 0; r < 4; r++) server.serveOnce();
  after(ring);
  const reqProd = Atomics.load(ring.front.words, RingWord.REQ_PROD) >>> 0;
  const rspAfter = Atomics.load(ring.front.words, RingWord.RSP_PROD) >>> 0;
  return { ring, count: { rspBefore, reqProd, rspAfter, halted: server.stats.halted > 0 } };
}

describe('fuzz ExactlyOnce: every consumed request is answered exactly once, padding zero', () => {
  it('the real serving loop with a correct handler passes, across the u32 wrap of the indices', () => {
    const { ring, count } = drive(good, 10);
    assert.ok(count.reqProd < count.rspBefore, 'the indices wrapped');
    assert.deepEqual(auditCounts('t', 'io', count), []);
    const slotWords = ring.front.slotWords;
    for (let k = 0; k < 10; k++) {
      const w = RingWord.SLOTS + ((count.rspBefore + k) & (ring.front.size - 1)) * slotWords;
      assert.equal(auditPadding('t', 'io', ring.front.words, w, 5, slotWords), undefined);
    }
  });

  it('a broken backend that never answers is reported as unanswered-request', () => {
    const { count } = drive(() => false, 5);
    const v = auditCounts('t', 'io', count);
    assert.deepEqual(
      v.map((x) => x.signature),
      ['t/io:unanswered-request'],
    );
  });

  it('a broken backend that publishes more responses than requests is reported as double-response', () => {
    const { count } = drive(good, 3, (ring) => {
      // The stub publishes one response too many (a request answered twice).
      const w = ring.front.words;
      Atomics.store(w, RingWord.RSP_PROD, (Atomics.load(w, RingWord.RSP_PROD) + 1) | 0);
    });
    assert.deepEqual(
      auditCounts('t', 'io', count).map((x) => x.signature),
      ['t/io:double-response'],
    );
  });

  it('a halted ring (protocol violation) may leave requests unanswered; it still may not over-answer', () => {
    assert.deepEqual(auditCounts('t', 'io', { rspBefore: 5, reqProd: 9, rspAfter: 6, halted: true }), []);
    assert.equal(auditCounts('t', 'io', { rspBefore: 5, reqProd: 9, rspAfter: 10, halted: true }).length, 1);
  });

  it('a broken handler that leaves a padding word dirty is reported as dirty-padding (XSA-216)', () => {
    const leaky: Handler = (req, rsp, w) => {
      good(req, rsp, w);
      rsp[w + 7] = 0x5ec12e7;
      return undefined;
    };
    const { ring, count } = drive(leaky, 1);
    const w = RingWord.SLOTS + (count.rspBefore & (ring.front.size - 1)) * ring.front.slotWords;
    const v = auditPadding('t', 'io', ring.front.words, w, 5, ring.front.slotWords);
    assert.equal(v?.signature, 't/io:dirty-padding');
    assert.match(v?.detail ?? '', /5ec12e7/);
  });
});
