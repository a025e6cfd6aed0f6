/**
 * The double-read attacker (XSA-155) is a real concurrent thread: while running it changes the
 * named words (and only those) under the reader's feet, and once paused it has really stopped.
 */

import assert from 'node:assert/strict';
import { Mutator } from '../../../fuzz/core/Mutator.js';

describe('fuzz Mutator: a Worker rewrites shared words while this thread reads them', () => {
  let m: Mutator | undefined;
  afterEach(async () => {
    await m?.stop();
    m = undefined;
  });

  it('two reads of the same word differ while it runs; words outside the ranges never change', () => {
    const sab = new SharedArrayBuffer(4096);
    const w = new Int32Array(sab);
    m = Mutator.start(sab);
    m.run([{ word: 100, words: 4 }], 99, 2000);
    let differed = 0;
    const deadline = Date.now() + 5000;
    while (differed < 10 && Date.now() < deadline) {
      // Two plain reads of the same shared word, as a careless backend would do.
      const a = w[101];
      let b = a;
      for (let i = 0; i < 1000 && b === a; i++) b = w[101];
      if (a !== b) differed++;
    }
    assert.ok(m.pause(), 'the mutator paused');
    assert.ok(differed >= 10, `the word changed under the reader only ${differed} times`);
    for (let i = 0; i < w.length; i++) if (i < 100 || i >= 104) assert.equal(w[i], 0, `word ${i} outside the range`);
    const frozen = w.slice(100, 104);
    for (let i = 0; i < 1000; i++) assert.deepEqual(w.slice(100, 104), frozen, 'no write after pause');
    assert.ok(m.writes > 0);
  });

  it('refuses ranges outside the buffer', () => {
    m = Mutator.start(new SharedArrayBuffer(64));
    assert.throws(() => m?.run([{ word: 10, words: 10 }], 1), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => m?.run([], 1), { code: 'PV_ERR_INVALID_ARG' });
  });
});
