import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import sinon from 'sinon';
import { AdaptiveSpin, adaptiveWait } from '../../protocol/wait.js';

/** Word indices in the shared test buffer. */
const WORD = 0;
const GO = 1;
const IDLE = 2;

/**
 * Waker thread: posts 'ready', waits (bounded) for GO, sleeps `delayMs`, then stores WORD = 1 and
 * notifies, reporting how many sleepers it woke.
 */
const WAKER = `
const { parentPort, workerData } = require('node:worker_threads');
const w = new Int32Array(workerData.sab);
parentPort.postMessage({ ready: true });
if (Atomics.wait(w, ${GO}, 0, 10000) === 'timed-out') {
  parentPort.postMessage({ error: 'no GO within 10 s' });
} else {
  if (workerData.delayMs > 0) Atomics.wait(w, ${IDLE}, 0, workerData.delayMs);
  Atomics.store(w, ${WORD}, 1);
  parentPort.postMessage({ woken: Atomics.notify(w, ${WORD}) });
}`;

/** Starts a waker and resolves once it is running; `done` resolves with its report. */
async function startWaker(sab: SharedArrayBuffer, delayMs: number) {
  const worker = new Worker(WAKER, { eval: true, workerData: { sab, delayMs } });
  const messages: Array<{ ready?: boolean; woken?: number; error?: string }> = [];
  let onMessage: () => void = () => {};
  worker.on('message', (m) => {
    messages.push(m);
    onMessage();
  });
  const next = (n: number) =>
    new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      onMessage = () => messages.length >= n && resolve();
      onMessage();
    });
  await next(1);
  return {
    done: async () => {
      await next(2);
      await worker.terminate();
      return messages[1];
    },
  };
}

describe('wait (DESIGN §4): adaptiveWait spins, then sleeps', () => {
  afterEach(() => sinon.restore());

  it("returns 'changed' when the word changes during the spin phase (single thread, 5th poll), without sleeping", () => {
    const word = new Int32Array(new SharedArrayBuffer(4));
    const realLoad = Atomics.load;
    let polls = 0;
    sinon.stub(Atomics, 'load').callsFake(((ta: Int32Array, i: number) => {
      if (++polls === 5) Atomics.store(word, 0, 1);
      return realLoad(ta, i);
    }) as typeof Atomics.load);
    const sleep = sinon.stub(Atomics, 'wait').throws(new Error('must not sleep'));
    assert.equal(adaptiveWait(word, 0, 0, 100, 10_000), 'changed');
    assert.equal(polls, 5);
    assert.equal(sleep.callCount, 0);
  });

  it("returns 'changed' when another thread changes the word during the spin phase (no sleep allowed)", async function () {
    this.timeout(20_000);
    const sab = new SharedArrayBuffer(16);
    const w = new Int32Array(sab);
    const waker = await startWaker(sab, 0);
    const sleep = sinon.spy(Atomics, 'wait');
    Atomics.store(w, GO, 1);
    Atomics.notify(w, GO);
    // Timeout 0: there is no sleep phase, so 'changed' can only come from a poll.
    const r = adaptiveWait(w, WORD, 0, 4e9, 0);
    sleep.restore();
    assert.equal(r, 'changed');
    assert.equal(sleep.callCount, 0);
    const report = await waker.done();
    assert.equal(report.error, undefined);
  });

  it("returns 'changed' when another thread changes the word during the sleep phase (woken by notify)", async function () {
    this.timeout(20_000);
    // The waker waits 100 ms before storing. If this thread had not reached Atomics.wait by then
    // (Atomics.wait would return 'not-equal'), the attempt proves nothing and is repeated.
    let sawSleep = false;
    for (let attempt = 0; attempt < 3 && !sawSleep; attempt++) {
      const sab = new SharedArrayBuffer(16);
      const w = new Int32Array(sab);
      const waker = await startWaker(sab, 100);
      const sleep = sinon.spy(Atomics, 'wait');
      Atomics.store(w, GO, 1);
      Atomics.notify(w, GO);
      const r = adaptiveWait(w, WORD, 0, 10, 10_000);
      sleep.restore();
      assert.equal(r, 'changed');
      const report = await waker.done();
      assert.equal(report.error, undefined);
      const waits = sleep.getCalls().filter((c) => (c.args[0] as unknown) === w && c.args[1] === WORD);
      assert.equal(waits.length, 1, 'slept once after the spin budget ran out');
      if (waits[0].returnValue === 'ok') {
        sawSleep = true;
        assert.equal(report.woken, 1, 'the notify woke the sleeper');
      } else {
        assert.equal(waits[0].returnValue, 'not-equal');
      }
    }
    assert.ok(sawSleep, 'in 3 attempts the change arrived while asleep at least once');
  });

  it("returns 'timed-out' when nothing changes, and 'changed' at once if the word already differs", () => {
    const w = new Int32Array(new SharedArrayBuffer(4));
    assert.equal(adaptiveWait(w, 0, 0, 100, 1), 'timed-out');
    assert.equal(adaptiveWait(w, 0, 0, 100, 0), 'timed-out');
    assert.equal(adaptiveWait(w, 0, 0, 0, 0), 'timed-out');
    Atomics.store(w, 0, 3);
    assert.equal(adaptiveWait(w, 0, 0, 0, 0), 'changed');
    assert.equal(adaptiveWait(w, 0, 0, 0, 1), 'changed');
    assert.equal(adaptiveWait(w, 0, 0, 10, 1), 'changed');
  });
});

describe('wait (DESIGN §4): AdaptiveSpin tunes its budget', () => {
  it('shrinks its budget (halving, down to min) when spinning does not pay', () => {
    const w = new Int32Array(new SharedArrayBuffer(4));
    const spin = new AdaptiveSpin(1000, 16, 20_000);
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      assert.equal(spin.wait(w, 0, 0, 0), 'timed-out');
      seen.push(spin.budget);
    }
    assert.deepEqual(seen, [500, 250, 125, 62, 31, 16, 16, 16]);
    assert.equal(spin.wait(w, 0, 0, 1), 'timed-out', 'then sleeps and times out');
  });

  it('grows its budget (up to max) when spinning pays', () => {
    const w = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(w, 0, 1);
    const spin = new AdaptiveSpin(1000, 16, 1100);
    assert.equal(spin.wait(w, 0, 0), 'changed');
    assert.equal(spin.budget, 1000 + (1000 >> 4) + 1);
    assert.equal(spin.wait(w, 0, 0), 'changed');
    assert.equal(spin.budget, 1000 + 63 + (1063 >> 4) + 1);
    for (let i = 0; i < 5; i++) spin.wait(w, 0, 0);
    assert.ok(spin.budget >= 1100 && spin.budget <= 1100 + (1100 >> 4) + 1, 'stops growing at max');
  });

  it("a zero budget with no time left still looks at the word ('changed', not 'timed-out')", () => {
    const w = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(w, 0, 1);
    assert.equal(new AdaptiveSpin(0, 0).wait(w, 0, 0, 0), 'changed');
  });
});
