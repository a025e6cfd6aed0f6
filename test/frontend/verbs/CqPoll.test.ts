/**
 * pollCq and waitCq: common code over the CQ ring in the caller's memory (Cq.ts). The waiter
 * arms the CQ and sleeps on the producer word; a producer on another thread (the real
 * `produceCqe`, in a Worker) must wake it every time. Sleeps are bounded so a lost wake-up fails
 * the test instead of hanging it.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import sinon from 'sinon';
import { pollCq, waitCq } from '../../../frontend/verbs/CqPoll.js';
import { Context } from '../../../frontend/verbs/Objects.js';
import { createCq } from '../../../frontend/verbs/Verbs.js';
import { CqWord, produceCqe } from '../../../protocol/rdma/Cq.js';
import { emptyWc, type Wc, WcOpcode, WcStatus } from '../../../protocol/rdma/Verbs.js';
import { domId } from '../../../protocol/Types.js';
import { AdaptiveSpin } from '../../../protocol/wait.js';
import { FakeProvider } from './helpers/FakeProvider.js';
import { fakeEnv } from './helpers/fakeEnv.js';

const ATTACHMENT = { device: 'nic0', kind: 'rdma-nic', transport: 'native' } as const;

function setup(cqe = 16) {
  const env = fakeEnv(domId(1));
  const provider = new FakeProvider(env.memory);
  const ctx = new Context(env, ATTACHMENT, provider);
  const cq = createCq(ctx, cqe);
  return { env, provider, ctx, cq };
}

function wcs(n: number): Wc[] {
  return Array.from({ length: n }, emptyWc);
}

function cqe(wrId: number, status = WcStatus.SUCCESS): Wc {
  return { ...emptyWc(), wrId, status, opcode: WcOpcode.SEND, qpNum: 5, byteLen: 64 };
}

describe('verbs: waitCq is woken by a CQE produced on another thread', function () {
  this.timeout(120_000);

  it('a waiter that sleeps at once (spin budget 0) wakes for each of 400 CQEs, indices wrapping past 2^32', async () => {
    const { env, cq } = setup(16);
    const start = 0xffff_ff00;
    Atomics.store(cq.words, CqWord.PROD, start | 0);
    Atomics.store(cq.words, CqWord.CONS, start | 0);
    cq.cons = start;
    const count = 400;
    const worker = new Worker(new URL('./helpers/CqProducerWorker.js', import.meta.url), {
      workerData: { buffer: env.memory.buffer, ringAddr: cq.ring, entries: cq.cqe, count, start },
    });
    const messages: Array<{ ready?: boolean; produced?: number; error?: string }> = [];
    let notify = () => {};
    worker.on('message', (m) => {
      messages.push(m);
      notify();
    });
    const next = (n: number) =>
      new Promise<void>((resolve, reject) => {
        worker.once('error', reject);
        notify = () => messages.length >= n && resolve();
        notify();
      });
    try {
      await next(1);
      const out = wcs(4);
      for (let i = 0; i < count; i++) {
        // progressIntervalMs = timeout: only the producer's notify can end the sleep in time.
        const woke = waitCq(cq, { timeoutMs: 10_000, spinBudget: 0, progressIntervalMs: 10_000 });
        assert.equal(woke, true, `CQE ${i}: the waiter was not woken`);
        assert.equal(pollCq(cq, 4, out), 1, `CQE ${i}`);
        assert.equal(out[0].wrId, 1000 + i);
        assert.equal(out[0].status, i % 7 === 3 ? WcStatus.REM_ACCESS_ERR : WcStatus.SUCCESS);
        assert.equal(out[0].opcode, i % 2 === 0 ? WcOpcode.RDMA_WRITE : WcOpcode.RECV);
        assert.equal(out[0].byteLen, i * 3);
        assert.equal(Atomics.load(cq.words, CqWord.ARMED), 0, 'waitCq disarms before returning');
      }
      await next(2);
      assert.deepEqual(messages[1], { produced: count, error: undefined });
      assert.equal(cq.cons, (start + count) >>> 0);
      assert.ok(cq.cons < start, 'the consumer index wrapped');
    } finally {
      await worker.terminate();
    }
  });
});

describe('verbs: waitCq without completions', () => {
  afterEach(() => sinon.restore());

  it('returns false after the timeout, disarmed, having asked the provider to progress', () => {
    const { provider, cq } = setup();
    assert.equal(waitCq(cq, { timeoutMs: 5, spinBudget: 10 }), false);
    assert.equal(Atomics.load(cq.words, CqWord.ARMED), 0);
    assert.ok(provider.progressCalls >= 1);
  });

  it('returns true without sleeping when provider.progress() produces the CQE (a ring drained by this thread)', () => {
    const { provider, cq } = setup();
    let prod = 0;
    provider.onProgress = () => {
      if (prod === 0) prod = produceCqe(cq.words, cq.cqe, prod, cqe(9));
    };
    const sleep = sinon.spy(Atomics, 'wait');
    assert.equal(waitCq(cq, { timeoutMs: 10_000, spinBudget: 0 }), true);
    assert.equal(sleep.callCount, 0);
    const out = wcs(1);
    assert.equal(pollCq(cq, 1, out), 1);
    assert.equal(out[0].wrId, 9);
  });

  it('a completion the provider holds after progress() ends the wait at once; pollCq then returns it', () => {
    const { provider, cq } = setup();
    provider.onProgress = () => provider.held.set(cq.handle, [cqe(61, WcStatus.LOC_QP_OP_ERR)]);
    const sleep = sinon.spy(Atomics, 'wait');
    assert.equal(waitCq(cq, { timeoutMs: 10_000, spinBudget: 0 }), true);
    assert.equal(sleep.callCount, 0);
    provider.onProgress = () => {};
    const out = wcs(2);
    assert.equal(pollCq(cq, 2, out), 1);
    assert.deepEqual([out[0].wrId, out[0].status], [61, WcStatus.LOC_QP_OP_ERR]);
  });

  it('spins WITHOUT arming the CQ, and arms only before it may sleep (an armed CQ costs its producer a notify)', () => {
    const { cq } = setup();
    type Spy = sinon.SinonSpy<[Int32Array, number, number?], number>;
    const load = sinon.spy(Atomics, 'load') as unknown as Spy;
    const store = sinon.spy(Atomics, 'store') as unknown as Spy;
    assert.equal(waitCq(cq, { timeoutMs: 0, spinBudget: 50 }), false);
    const arm = store.getCalls().find((c) => c.args[0] === cq.words && c.args[1] === CqWord.ARMED && c.args[2] === 1);
    assert.ok(arm !== undefined, 'armed before giving up');
    const polls = load
      .getCalls()
      .filter((c) => c.args[0] === cq.words && c.args[1] === CqWord.PROD && c.calledBefore(arm)).length;
    assert.ok(polls >= 50, `${polls} polls of the producer index before the arm`);
    assert.equal(Atomics.load(cq.words, CqWord.ARMED), 0);
  });

  it('an adaptive waiter halves its spin budget each time no completion came within it, down to its floor', () => {
    const { cq } = setup();
    const adaptive = new AdaptiveSpin(1000, 64, 20_000);
    assert.equal(waitCq(cq, { timeoutMs: 0, adaptive }), false);
    assert.equal(adaptive.budget, 500, 'spinning did not pay: halved');
    assert.equal(waitCq(cq, { timeoutMs: 0, adaptive }), false);
    assert.equal(adaptive.budget, 250);
    // A completion already there needs no spin: the budget is left as it is. (Growth when one
    // comes within the budget is AdaptiveSpin.record's, tested with AdaptiveSpin.)
    produceCqe(cq.words, cq.cqe, 0, cqe(7));
    assert.equal(waitCq(cq, { timeoutMs: 0, adaptive }), true);
    assert.equal(adaptive.budget, 250);
  });

  it('refuses a negative timeout or spin budget (PV_ERR_INVALID_ARG)', () => {
    const { cq } = setup();
    assert.throws(() => waitCq(cq, { timeoutMs: -1 }), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => waitCq(cq, { spinBudget: -1 }), { code: 'PV_ERR_INVALID_ARG' });
  });
});

describe('verbs: pollCq (ibv_poll_cq.3)', () => {
  it('returns at most numEntries completions in order and publishes the consumer index', () => {
    const { cq } = setup(8);
    let prod = 0;
    for (let i = 0; i < 5; i++) prod = produceCqe(cq.words, cq.cqe, prod, cqe(i + 1));
    const out = wcs(3);
    assert.equal(pollCq(cq, 3, out), 3);
    assert.deepEqual(
      out.map((w) => w.wrId),
      [1, 2, 3],
    );
    assert.equal(Atomics.load(cq.words, CqWord.CONS), 3);
    assert.equal(pollCq(cq, 3, out), 2, 'fewer than asked: the CQ is drained');
    assert.deepEqual(
      out.slice(0, 2).map((w) => w.wrId),
      [4, 5],
    );
  });

  it('an empty poll gives the provider one progress() call and reads the ring again', () => {
    const { provider, cq } = setup();
    provider.onProgress = () => produceCqe(cq.words, cq.cqe, 0, cqe(77));
    const out = wcs(1);
    assert.equal(pollCq(cq, 1, out), 1);
    assert.equal(provider.progressCalls, 1);
    assert.equal(out[0].wrId, 77);
  });

  it('completions the provider holds outside the ring come after the ring’s and count with them', () => {
    const { provider, cq } = setup(8);
    produceCqe(cq.words, cq.cqe, 0, cqe(1));
    provider.held.set(cq.handle, [cqe(50, WcStatus.LOC_QP_OP_ERR), cqe(51, WcStatus.LOC_QP_OP_ERR)]);
    const out = wcs(2);
    assert.equal(pollCq(cq, 2, out), 2);
    assert.deepEqual(
      out.map((w) => [w.wrId, w.status]),
      [
        [1, WcStatus.SUCCESS],
        [50, WcStatus.LOC_QP_OP_ERR],
      ],
    );
    assert.equal(pollCq(cq, 2, out), 1);
    assert.equal(out[0].wrId, 51);
  });

  it('more entries than the wc array holds → PV_ERR_INVALID_ARG', () => {
    const { cq } = setup();
    assert.throws(() => pollCq(cq, 2, wcs(1)), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('an overflowed CQ yields the CQEs it kept, then PV_ERR_RDMA_QUEUE_FULL', () => {
    const { cq } = setup(2);
    let prod = 0;
    prod = produceCqe(cq.words, cq.cqe, prod, cqe(1));
    prod = produceCqe(cq.words, cq.cqe, prod, cqe(2));
    assert.equal(produceCqe(cq.words, cq.cqe, prod, cqe(3)), -1, 'the third CQE overflows');
    const out = wcs(4);
    assert.equal(pollCq(cq, 4, out), 2);
    assert.throws(() => pollCq(cq, 4, out), { code: 'PV_ERR_RDMA_QUEUE_FULL' });
  });

  it('the arm is one-shot (ibv_req_notify_cq): the first CQE after it clears it and notifies once; later CQEs do not notify', () => {
    const { cq } = setup(8);
    const notify = sinon.spy(Atomics, 'notify');
    try {
      let prod = 0;
      prod = produceCqe(cq.words, cq.cqe, prod, cqe(1));
      assert.equal(notify.callCount, 0, 'an unarmed CQ sends no notify');
      Atomics.store(cq.words, CqWord.ARMED, 1);
      for (let i = 2; i <= 4; i++) prod = produceCqe(cq.words, cq.cqe, prod, cqe(i));
      assert.equal(notify.callCount, 1, 'one notify for three CQEs after one arm');
      assert.deepEqual(notify.firstCall.args.slice(0, 2), [cq.words, CqWord.PROD]);
      assert.equal(Atomics.load(cq.words, CqWord.ARMED), 0, 'the producer took the arm');
      assert.equal(pollCq(cq, 8, wcs(8)), 4);
    } finally {
      notify.restore();
    }
  });

  it('a corrupt producer index never makes pollCq read more than the ring holds', () => {
    const { cq } = setup(4);
    Atomics.store(cq.words, CqWord.PROD, 1000);
    assert.equal(pollCq(cq, 8, wcs(8)), 4);
  });
});
