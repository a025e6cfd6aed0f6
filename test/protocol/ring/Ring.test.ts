import assert from 'node:assert/strict';
import sinon from 'sinon';
import { PvError, RingError } from '../../../protocol/errors.js';
import type { BackRing } from '../../../protocol/ring/BackRing.js';
import type { FrontRing } from '../../../protocol/ring/FrontRing.js';
import {
  decodeIoRequest,
  decodeIoResponse,
  IO_SLOT_WORDS,
  type IoRequest,
  type IoResponse,
} from '../../../protocol/ring/IoSlot.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import { ioRequest, MockRing, produceIoRequest, produceIoResponse } from '../../helpers/MockRing.js';

const NEAR_WRAP = 0xffff_ffff - 40;

/** Matches a PvError by code and policy, and checks it is a RingError. */
function ringError(code: string, policy: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof RingError, `expected a RingError, got ${String(e)}`);
    assert.ok(e instanceof PvError);
    assert.equal(e.code, code);
    assert.equal(e.policy, policy);
    return true;
  };
}

/** Backend: consume every request it may, answer each with its id and checksum = id ^ 0x5a5a. */
function serveAll(back: BackRing): number {
  const copy = new Int32Array(IO_SLOT_WORDS);
  const req = ioRequest(0);
  let n = 0;
  for (let avail = back.unconsumedRequests(); avail > 0; avail--) {
    back.copyRequest(copy);
    decodeIoRequest(copy, 0, req);
    produceIoResponse(back, { idLo: req.idLo, idHi: req.idHi, op: req.op, status: 0, length: 0, checksum: 0 });
    n++;
  }
  return n;
}

/** Front: consume every response, returning their ids. */
function drainResponses(front: FrontRing): number[] {
  const rsp: IoResponse = { idLo: 0, idHi: 0, op: 0, status: 0, length: 0, checksum: 0 };
  const ids: number[] = [];
  for (let avail = front.unconsumedResponses(); avail > 0; avail--) {
    decodeIoResponse(front.words, front.responseSlot(), rsp);
    ids.push(rsp.idLo);
    front.consumeResponse();
  }
  return ids;
}

/** A response echoing `id`. */
function ioResponse(id: number): IoResponse {
  return { idLo: id, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 };
}

/** A copy of the slot area (everything after the header). */
function slotSnapshot(ring: MockRing): Int32Array {
  return ring.words.slice(RingWord.SLOTS);
}

describe('ring §1.1: free-running u32 indices', () => {
  it('wrap-around: indices start near 2^32 and wrap while every request gets its response', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    const total = 5 * front.size + 3;
    let nextId = 0;
    const answered: number[] = [];
    for (let batch = 1; nextId < total; batch = (batch % front.size) + 1) {
      const k = Math.min(batch, front.freeRequests(), total - nextId);
      for (let i = 0; i < k; i++) produceIoRequest(front, ioRequest(nextId++));
      front.pushRequests();
      serveAll(back);
      back.pushResponses();
      answered.push(...drainResponses(front));
    }
    assert.deepEqual(
      answered,
      Array.from({ length: total }, (_, i) => i),
      'every request answered once, in order',
    );
    const end = (NEAR_WRAP + total) >>> 0;
    assert.ok(end < NEAR_WRAP, 'the indices wrapped past 2^32');
    assert.equal(front.reqProdPvt, end);
    assert.equal(front.rspCons, end);
    assert.equal(back.reqCons, end);
    assert.equal(back.rspProdPvt, end);
    assert.equal(ring.words[RingWord.REQ_PROD] >>> 0, end);
    assert.equal(ring.words[RingWord.RSP_PROD] >>> 0, end);
  });
});

describe('ring §1.1: RING_FULL / RING_FREE_REQUESTS', () => {
  it('a full ring refuses a push (PV_ERR_RING_FULL) and never overwrites an outstanding request', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    for (let i = 0; i < front.size; i++) produceIoRequest(front, ioRequest(i, { checksum: 1000 + i }));
    assert.equal(front.freeRequests(), 0);
    assert.equal(front.isFull(), true);
    const before = slotSnapshot(ring);
    assert.throws(() => front.nextRequestSlot(), ringError('PV_ERR_RING_FULL', 'caller'));
    assert.throws(() => produceIoRequest(front, ioRequest(999)), ringError('PV_ERR_RING_FULL', 'caller'));
    assert.deepEqual(slotSnapshot(ring), before, 'no slot changed');
    assert.equal(front.counters.fullStalls, 2);
    front.pushRequests();

    // Still full after the backend consumed everything: a consumed request is outstanding until answered.
    assert.equal(serveAllButAnswer(back, 0), front.size);
    assert.throws(() => front.nextRequestSlot(), ringError('PV_ERR_RING_FULL', 'caller'));

    // One answer frees exactly one slot: the answered one.
    produceIoResponse(back, { idLo: 0, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
    back.pushResponses();
    assert.deepEqual(drainResponses(front), [0]);
    assert.equal(front.freeRequests(), 1);
    const firstSlot = RingWord.SLOTS + (NEAR_WRAP & (front.size - 1)) * IO_SLOT_WORDS;
    assert.equal(front.nextRequestSlot(), firstSlot, 'the free slot is the answered one');
    const beforeRefill = ring.words.slice();
    produceIoRequest(front, ioRequest(front.size));
    for (let w = RingWord.SLOTS; w < ring.words.length; w++) {
      if (w >= firstSlot && w < firstSlot + IO_SLOT_WORDS) continue;
      assert.equal(ring.words[w], beforeRefill[w], `word ${w} of an outstanding request is untouched`);
    }
    assert.throws(() => front.nextRequestSlot(), ringError('PV_ERR_RING_FULL', 'caller'));
  });
});

/** Backend consumes every available request and answers only the first `answer` of them. */
function serveAllButAnswer(back: BackRing, answer: number): number {
  const copy = new Int32Array(IO_SLOT_WORDS);
  let n = 0;
  for (let avail = back.unconsumedRequests(); avail > 0; avail--) {
    back.copyRequest(copy);
    n++;
  }
  for (let i = 0; i < answer; i++) {
    produceIoResponse(back, { idLo: i, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
  }
  return n;
}

describe('ring §1.4 / §6.1: index sanity checks against a hostile peer', () => {
  it('RING_REQUEST_PROD_OVERFLOW: a req_prod beyond the window is detected (PV_ERR_RING_PROD_OVERFLOW, policy fatal)', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    for (let i = 0; i < 3; i++) produceIoRequest(front, ioRequest(i));
    front.pushRequests();
    assert.equal(serveAllButAnswer(back, 1), 3);
    // rsp_prod_pvt = start + 1: the window allows req_prod up to start + 1 + size.
    const limit = (NEAR_WRAP + 1 + front.size) >>> 0;
    Atomics.store(ring.words, RingWord.REQ_PROD, limit | 0);
    assert.equal(back.unconsumedRequests(), front.size - 2, 'exactly size − outstanding is allowed');
    const snapshot = [back.reqCons, back.rspProdPvt];
    Atomics.store(ring.words, RingWord.REQ_PROD, (limit + 1) | 0);
    assert.throws(() => back.unconsumedRequests(), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
    assert.throws(() => back.finalCheckForRequests(), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
    Atomics.store(ring.words, RingWord.REQ_PROD, (limit + 0x7fff_ffff) | 0);
    assert.throws(() => back.unconsumedRequests(), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
    assert.deepEqual([back.reqCons, back.rspProdPvt], snapshot, 'nothing was consumed');
  });

  it('RING_REQUEST_PROD_OVERFLOW at attach: BACK_RING_ATTACH refuses req_prod − rsp_prod > size', () => {
    const ok = MockRing.create({ start: NEAR_WRAP });
    Atomics.store(ok.words, RingWord.REQ_PROD, (NEAR_WRAP + ok.front.size) | 0);
    assert.equal(MockRing.attach(ok.sab, ok.layout).back.unconsumedRequests(), ok.front.size);
    Atomics.store(ok.words, RingWord.REQ_PROD, (NEAR_WRAP + ok.front.size + 1) | 0);
    assert.throws(() => MockRing.attach(ok.sab, ok.layout), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
    Atomics.store(ok.words, RingWord.REQ_PROD, (NEAR_WRAP - 1) | 0);
    assert.throws(() => MockRing.attach(ok.sab, ok.layout), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
  });

  it('a req_prod moved back behind req_cons is detected, never read as ~2^32 requests (netback "impossible number")', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    for (let i = 0; i < 4; i++) produceIoRequest(front, ioRequest(i));
    front.pushRequests();
    assert.equal(serveAllButAnswer(back, 0), 4);
    // Within the PROD_OVERFLOW window (req_prod − rsp_prod_pvt = 2 ≤ size) but behind req_cons.
    Atomics.store(ring.words, RingWord.REQ_PROD, (NEAR_WRAP + 2) | 0);
    const consumed = back.reqCons;
    assert.throws(() => back.unconsumedRequests(), ringError('PV_ERR_RING_PROD_OVERFLOW', 'fatal'));
    assert.equal(back.reqCons, consumed, 'no unpublished slot was consumed');
  });

  it('RING_RESPONSE_PROD_OVERFLOW: response prod overflow detected by the front', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front } = ring;
    for (let i = 0; i < 3; i++) produceIoRequest(front, ioRequest(i));
    front.pushRequests();
    // Two more requests written but not published: the backend cannot have answered them.
    for (let i = 3; i < 5; i++) produceIoRequest(front, ioRequest(i));
    const setRspProd = (delta: number) => Atomics.store(ring.words, RingWord.RSP_PROD, (NEAR_WRAP + delta) | 0);
    setRspProd(3);
    assert.equal(front.unconsumedResponses(), 3, 'answers to every published request are fine');
    for (const delta of [4, 5, front.size, front.size + 1, -1]) {
      setRspProd(delta);
      assert.throws(
        () => front.unconsumedResponses(),
        ringError('PV_ERR_RING_RSP_OVERFLOW', 'fatal'),
        `rsp_prod = start ${delta >= 0 ? '+' : ''}${delta}`,
      );
      assert.throws(() => front.finalCheckForResponses(), ringError('PV_ERR_RING_RSP_OVERFLOW', 'fatal'));
    }
    assert.equal(front.rspCons, NEAR_WRAP >>> 0, 'nothing was consumed');
  });

  it('the backend never consumes without a free response slot (RING_REQUEST_CONS_OVERFLOW)', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    for (let i = 0; i < front.size; i++) produceIoRequest(front, ioRequest(i));
    front.pushRequests();
    assert.equal(serveAllButAnswer(back, 0), front.size);
    assert.equal(back.requestConsOverflow(), true, 'every slot holds a consumed, unanswered request');
    assert.equal(back.unconsumedRequests(), 0);
    assert.equal(back.finalCheckForRequests(), false);
    // Answer two: exactly two response slots free up, and the front may refill exactly those.
    produceIoResponse(back, { idLo: 0, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
    produceIoResponse(back, { idLo: 1, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
    back.pushResponses();
    assert.equal(back.requestConsOverflow(), false);
    assert.equal(drainResponses(front).length, 2);
    for (let i = 0; i < 2; i++) produceIoRequest(front, ioRequest(front.size + i));
    front.pushRequests();
    assert.equal(back.unconsumedRequests(), 2);
    assert.equal(serveAllButAnswer(back, 0), 2);
    assert.equal(back.requestConsOverflow(), true);
    assert.equal(back.unconsumedRequests(), 0);
  });

  it('a response without a consumed request is refused (nextResponseSlot)', () => {
    const { back } = MockRing.create();
    assert.throws(() => back.nextResponseSlot(), ringError('PV_ERR_RING_RSP_OVERFLOW', 'fatal'));
  });
});

describe('ring §1.4 / §5: RING_COPY_REQUEST', () => {
  it('copyRequest takes a private copy: rewriting the shared slot afterwards does not change it (XSA-155)', () => {
    const ring = MockRing.create();
    const { front, back } = ring;
    const original: IoRequest = {
      idLo: 7,
      idHi: 0,
      op: 1,
      nseg: 1,
      gref: 8,
      offset: 0,
      length: 512,
      checksum: 0xabcdef,
    };
    const slot = front.nextRequestSlot();
    produceIoRequest(front, original);
    front.pushRequests();
    const copy = new Int32Array(IO_SLOT_WORDS + 2).fill(-1);
    assert.equal(back.unconsumedRequests(), 1);
    back.copyRequest(copy, 1);
    assert.equal(copy[0], -1, 'copy starts at dstWord');
    assert.equal(copy[IO_SLOT_WORDS + 1], -1, 'copy is exactly one slot');
    // The hostile guest rewrites the slot after the backend copied it (double-fetch attempt).
    ring.words.fill(0x7fff_ffff, slot, slot + IO_SLOT_WORDS);
    assert.deepEqual(decodeIoRequest(copy, 1, ioRequest(0)), original);
    assert.equal(back.unconsumedRequests(), 0, 'the request was consumed once');
  });
});

describe('ring §1.3: final check before sleep', () => {
  it('with no work it re-arms the event at cons + 1 in both directions', () => {
    const ring = MockRing.create({ start: NEAR_WRAP });
    const { front, back } = ring;
    for (let i = 0; i < 3; i++) produceIoRequest(front, ioRequest(i));
    front.pushRequests();
    serveAll(back);
    assert.equal(back.finalCheckForRequests(), false);
    assert.equal(ring.words[RingWord.REQ_EVENT] >>> 0, (back.reqCons + 1) >>> 0);
    back.pushResponses();
    drainResponses(front);
    assert.equal(front.finalCheckForResponses(), false);
    assert.equal(ring.words[RingWord.RSP_EVENT] >>> 0, (front.rspCons + 1) >>> 0);
  });

  it('final check before sleep re-arms the event and sees a request published in between', () => {
    // Race 1: the front publishes after the consumer's first check but before it re-arms. The front
    // reads the stale req_event and does not notify; the consumer's re-check must see the request.
    // Race 2: the front publishes after the re-arm: it must notify (and the re-check sees it too).
    for (const publishBeforeRearm of [true, false]) {
      const ring = MockRing.create({ start: NEAR_WRAP });
      const { front, back } = ring;
      // A busy backend: consumes a first batch without re-arming, so req_event lags behind.
      for (let i = 0; i < 2; i++) produceIoRequest(front, ioRequest(i));
      assert.equal(front.pushRequests(), true, 'first push crosses the initial event');
      serveAll(back);
      back.pushResponses();

      const original = back.unconsumedRequests.bind(back);
      let call = 0;
      let notified: boolean | undefined;
      const stub = sinon.stub(back, 'unconsumedRequests').callsFake(() => {
        call++;
        const rearmed = ring.words[RingWord.REQ_EVENT] >>> 0 === (back.reqCons + 1) >>> 0;
        if ((publishBeforeRearm && call === 1) || (!publishBeforeRearm && call === 2)) {
          assert.equal(rearmed, !publishBeforeRearm, 're-arm happens between the two checks');
          const n = original();
          produceIoRequest(front, ioRequest(2));
          notified = front.pushRequests();
          return publishBeforeRearm ? n : original();
        }
        return original();
      });
      try {
        assert.equal(back.finalCheckForRequests(), true, 'the request published in between is seen');
      } finally {
        stub.restore();
      }
      assert.equal(call, 2, 'checked, re-armed, re-checked');
      assert.equal(notified, !publishBeforeRearm, 'the producer notifies iff it saw the re-armed event');
      assert.equal(ring.words[RingWord.REQ_EVENT] >>> 0, (back.reqCons + 1) >>> 0);
      assert.equal(serveAll(back), 1);
    }
  });
});

/**
 * Runs `outer`; just before its `at`-th Atomics load/store on the ring's memory (or after its last
 * one, when `at` equals their count) runs `inner` to completion. Returns how many ring Atomics ops
 * `outer` made. This places one side's whole operation at every point of the other's, at the
 * granularity where the seq-cst ordering lives.
 */
function interleave(sab: ArrayBufferLike, outer: () => void, inner: () => void, at: number): number {
  const realLoad = Atomics.load;
  const realStore = Atomics.store;
  let ops = 0;
  let injected = false;
  let nested = false;
  const before = (ta: { buffer: ArrayBufferLike }) => {
    if (nested || ta.buffer !== sab) return;
    if (ops === at && !injected) {
      injected = true;
      nested = true;
      try {
        inner();
      } finally {
        nested = false;
      }
    }
    ops++;
  };
  const load = sinon.stub(Atomics, 'load').callsFake(((ta: Int32Array, i: number) => {
    before(ta);
    return realLoad(ta, i);
  }) as typeof Atomics.load);
  const store = sinon.stub(Atomics, 'store').callsFake(((ta: Int32Array, i: number, v: number) => {
    before(ta);
    return realStore(ta, i, v);
  }) as typeof Atomics.store);
  try {
    outer();
  } finally {
    load.restore();
    store.restore();
  }
  if (!injected) inner();
  return ops;
}

describe('ring §1.3: the producer/consumer Dekker pair (no lost wake-up at any interleaving)', () => {
  /** One direction of the ring: produce one message, push (→ notify?), final check (→ work seen?). */
  interface Direction {
    name: string;
    /** A ring where the consumer is busy: it consumed a batch without re-arming (event lags). */
    setup(ring: MockRing): void;
    produce(ring: MockRing): void;
    push(ring: MockRing): boolean;
    finalCheck(ring: MockRing): boolean;
  }
  const DIRECTIONS: Direction[] = [
    {
      name: 'requests',
      setup({ front, back }) {
        for (let i = 0; i < 3; i++) produceIoRequest(front, ioRequest(i));
        front.pushRequests();
        serveAll(back);
        back.pushResponses();
        drainResponses(front);
      },
      produce: ({ front }) => produceIoRequest(front, ioRequest(3)),
      push: ({ front }) => front.pushRequests(),
      finalCheck: ({ back }) => back.finalCheckForRequests(),
    },
    {
      name: 'responses',
      setup({ front, back }) {
        for (let i = 0; i < 4; i++) produceIoRequest(front, ioRequest(i));
        front.pushRequests();
        const copy = new Int32Array(IO_SLOT_WORDS);
        for (let i = 0; i < 4; i++) back.copyRequest(copy);
        for (let i = 0; i < 3; i++) produceIoResponse(back, ioResponse(i));
        back.pushResponses();
        drainResponses(front);
      },
      produce: ({ back }) => produceIoResponse(back, ioResponse(3)),
      push: ({ back }) => back.pushResponses(),
      finalCheck: ({ front }) => front.finalCheckForResponses(),
    },
  ];

  for (const dir of DIRECTIONS) {
    for (const consumerInside of [true, false]) {
      const what = consumerInside
        ? "the consumer's final check at every point of the producer's push"
        : "the producer's push at every point of the consumer's final check";
      it(`${dir.name}: ${what}: the producer notifies or the re-check sees the message`, () => {
        let total = Number.POSITIVE_INFINITY;
        let maxOps = 0;
        for (let at = 0; at <= total; at++) {
          const ring = MockRing.create({ start: NEAR_WRAP });
          dir.setup(ring);
          dir.produce(ring);
          let notified = false;
          let seen = false;
          const push = () => {
            notified = dir.push(ring);
          };
          const check = () => {
            seen = dir.finalCheck(ring);
          };
          const ops = consumerInside ? interleave(ring.sab, push, check, at) : interleave(ring.sab, check, push, at);
          total = ops;
          maxOps = Math.max(maxOps, ops);
          assert.ok(notified || seen, `lost wake-up with the inner operation before ring op #${at} of ${ops}`);
        }
        // Not vacuous: the outer side ordered itself with at least a store and a load on the ring.
        assert.ok(maxOps >= 2, `the outer operation made ${maxOps} Atomics ops on the ring`);
      });
    }
  }
});

describe('ring §1.3: notification suppression', () => {
  it('with a busy consumer N pushes send far fewer than N notifies', () => {
    const { front, back } = MockRing.create({ start: NEAR_WRAP });
    const notify = sinon.spy();
    const N = 10 * front.size;
    for (let id = 0; id < N; id++) {
      produceIoRequest(front, ioRequest(id));
      if (front.pushRequests()) notify();
      // The busy backend drains without re-arming (it never found the ring empty before sleeping).
      serveAll(back);
      if (back.pushResponses()) notify();
      drainResponses(front); // the front does not re-arm rsp_event either: it is busy producing
    }
    assert.equal(front.counters.requests, N);
    assert.equal(notify.callCount, 2, 'only the first push in each direction crosses the initial event');
    assert.equal(front.counters.notifies + back.counters.notifies, notify.callCount);
    assert.equal(front.counters.suppressed, N - 1);
  });

  it('a consumer that re-arms after each batch gets notified once per batch', () => {
    const { front, back } = MockRing.create({ start: NEAR_WRAP });
    const reqNotify = sinon.spy();
    const rspNotify = sinon.spy();
    const batches = 3 * front.size;
    for (let b = 0; b < batches; b++) {
      const k = (b % 5) + 1;
      for (let i = 0; i < k; i++) {
        produceIoRequest(front, ioRequest(i));
        if (front.pushRequests()) reqNotify(b);
      }
      assert.equal(serveAll(back), k);
      assert.equal(back.finalCheckForRequests(), false, 'ring empty: re-arm and sleep');
      if (back.pushResponses()) rspNotify(b);
      assert.equal(drainResponses(front).length, k);
      assert.equal(front.finalCheckForResponses(), false);
    }
    assert.equal(reqNotify.callCount, batches, 'one request notify per batch: the first push after the re-arm');
    assert.equal(rspNotify.callCount, batches, 'one response notify per batch');
    for (let b = 0; b < batches; b++) assert.ok(reqNotify.getCall(b).calledWithExactly(b));
  });
});
