import assert from 'node:assert/strict';
import { DurationClock } from '../../../bench/programs/perftest/DurationClock.js';

/** Ticks the clock once per `stepMs` (one iteration each) until it says stop; returns the ticks. */
function run(clock: DurationClock, t0: number, stepMs: number): number {
  let done = 0;
  let now = t0;
  for (;;) {
    now += stepMs;
    done++;
    if (!clock.tick(now, done)) return done;
  }
}

describe('perftest -D window (DurationClock, catch_alarm states)', () => {
  it('counts only the iterations between margin and duration - margin, and times the same span', () => {
    // -D 3 -f 1 with one iteration every 10 ms: the window opens at the first boundary at or past
    // 1000 ms (iteration 100) and closes at the first at or past 2000 ms (iteration 200).
    const c = new DurationClock(0, 3, 1);
    assert.equal(run(c, 0, 10), 300, 'the run goes on to the full duration');
    assert.equal(c.windowIters, 100);
    assert.equal(c.windowSeconds, 1);
  });

  it('margin 0 opens the window at the first boundary', () => {
    const c = new DurationClock(1000, 1, 0);
    run(c, 1000, 250);
    // Boundaries at 1250 (1), 1500, 1750, 2000 (4, end): window 1250 → 2000 with 3 iterations.
    assert.equal(c.windowIters, 3);
    assert.equal(c.windowSeconds, 0.75);
  });

  it('iterations longer than the whole run still close the window (empty, not negative)', () => {
    const c = new DurationClock(0, 2, 0.5);
    assert.equal(run(c, 0, 5000), 1);
    assert.equal(c.windowIters, 0);
    assert.equal(c.windowSeconds, 0);
  });

  it('refuses DURATION <= 2*MARGIN like perftest', () => {
    assert.throws(() => new DurationClock(0, 2, 1), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => new DurationClock(0, 0, 0), { code: 'PV_ERR_INVALID_ARG' });
  });
});
