import assert from 'node:assert/strict';
import sinon from 'sinon';
import { Stage, StageLedger, StageWindow, stages } from '../../../protocol/stage/StageLedger.js';
import { fileThreadReport, takeThreadReports } from '../../../protocol/stage/ThreadReports.js';
import { AdaptiveSpin, adaptiveWait } from '../../../protocol/wait.js';

const MS = 1e6;

/** A hand-driven clock (ms) wrapped in a sinon spy, so tests count its reads. */
function fakeClock() {
  const t = { now: 0 };
  const read = sinon.spy(() => t.now);
  return { t, read, ledger: new StageLedger(read) };
}

describe('stage ledger: enter/restore attributes wall time to the stage that was current', () => {
  it('time before a switch goes to the previous stage; the restore closes the section', () => {
    const { t, ledger } = fakeClock();
    ledger.enable();
    t.now = 2;
    const prev = ledger.enter(Stage.RING);
    assert.equal(prev, Stage.HOME);
    assert.equal(ledger.current, Stage.RING);
    t.now = 5;
    assert.equal(ledger.enter(prev), Stage.RING);
    t.now = 6;
    const s = ledger.snapshot();
    assert.equal(s.length, Stage.COUNT);
    assert.deepEqual(s, [3 * MS, 3 * MS, 0, 0, 0, 0]);
  });

  it('nested sections restore the stage that was current, not HOME', () => {
    const { t, ledger } = fakeClock();
    ledger.enable();
    const outer = ledger.enter(Stage.DEVICE); // t = 0
    t.now = 1;
    const inner = ledger.enter(Stage.FABRIC);
    assert.equal(inner, Stage.DEVICE);
    t.now = 4;
    ledger.enter(inner); // back to DEVICE
    assert.equal(ledger.current, Stage.DEVICE);
    t.now = 6;
    ledger.enter(outer);
    assert.equal(ledger.current, Stage.HOME);
    const s = ledger.snapshot();
    assert.equal(s[Stage.DEVICE], 3 * MS);
    assert.equal(s[Stage.FABRIC], 3 * MS);
    assert.equal(s[Stage.HOME], 0);
  });

  it('a thread whose base is DEVICE (device-engine thread) accrues DEVICE outside sections', () => {
    const { t, ledger } = fakeClock();
    ledger.enable(Stage.DEVICE);
    t.now = 2;
    const prev = ledger.enter(Stage.IDLE);
    assert.equal(prev, Stage.DEVICE);
    t.now = 10;
    ledger.enter(prev);
    t.now = 11;
    assert.deepEqual(ledger.snapshot(), [0, 0, 0, 3 * MS, 0, 8 * MS]);
  });
});

describe('stage ledger: a disabled ledger costs one branch and never reads the clock', () => {
  it('enter returns HOME, snapshot is all zeros, and the clock is never read', () => {
    const { read, ledger } = fakeClock();
    assert.equal(ledger.enabled, false);
    for (const s of [Stage.RING, Stage.GRANT, Stage.DEVICE, Stage.FABRIC, Stage.IDLE]) {
      assert.equal(ledger.enter(s), Stage.HOME);
    }
    ledger.reset();
    ledger.openWindow();
    assert.deepEqual(ledger.snapshot(), [0, 0, 0, 0, 0, 0]);
    assert.equal(read.callCount, 0);
  });

  it('disable stops attribution: enter no longer reads the clock', () => {
    const { read, ledger } = fakeClock();
    ledger.enable();
    ledger.disable();
    const before = read.callCount;
    ledger.enter(Stage.RING);
    assert.equal(read.callCount, before);
  });
});

describe('stage ledger: snapshot closes the current interval and keeps the stage', () => {
  it('an open section is counted up to the snapshot and keeps accruing after it', () => {
    const { t, ledger } = fakeClock();
    ledger.enable();
    ledger.enter(Stage.GRANT);
    t.now = 4;
    assert.equal(ledger.snapshot()[Stage.GRANT], 4 * MS);
    assert.equal(ledger.current, Stage.GRANT);
    t.now = 7;
    assert.equal(ledger.snapshot()[Stage.GRANT], 7 * MS);
  });

  it('enable clears what was accumulated; reset restarts the count at now', () => {
    const { t, ledger } = fakeClock();
    ledger.enable();
    t.now = 5;
    ledger.reset();
    t.now = 6;
    assert.deepEqual(ledger.snapshot(), [1 * MS, 0, 0, 0, 0, 0]);
    ledger.enable(Stage.HOME);
    assert.deepEqual(ledger.snapshot(), [0, 0, 0, 0, 0, 0]);
  });
});

describe('stage ledger: event-loop idle moves from the base stage to IDLE', () => {
  it('idle since enable is folded, clamped to what the base stage holds', () => {
    const { t, ledger } = fakeClock();
    const loop = { idle: 100 };
    ledger.enable(Stage.HOME, { loopIdleMs: () => loop.idle });
    t.now = 10;
    loop.idle = 106; // 6 of the 10 ms were spent in the event loop's poll phase
    assert.deepEqual(ledger.snapshot(), [4 * MS, 0, 0, 0, 0, 6 * MS]);
    loop.idle = 200; // more than the base stage holds: never negative
    const s = ledger.snapshot();
    assert.equal(s[Stage.HOME], 0);
    assert.equal(s[Stage.IDLE], 10 * MS);
  });
});

describe('stage ledger: the host window restarts and freezes every ledger that shares it', () => {
  it('the opener restarts at once, another thread at its next switch; close freezes both', () => {
    const window = new SharedArrayBuffer(StageWindow.BYTES);
    const a = fakeClock();
    const b = fakeClock();
    a.ledger.enable(Stage.HOME, { window });
    b.ledger.enable(Stage.HOME, { window });
    b.ledger.enter(Stage.RING); // b: setup ring work from 0
    a.t.now = 50;
    a.ledger.openWindow();
    b.t.now = 60;
    const prev = b.ledger.enter(Stage.HOME); // b notices the window here: its setup is dropped
    assert.equal(prev, Stage.RING);
    b.t.now = 63;
    b.ledger.enter(Stage.GRANT);
    a.t.now = 70;
    a.ledger.closeWindow();
    b.t.now = 65;
    b.ledger.enter(Stage.HOME); // b notices the close here: its GRANT interval still counts
    a.t.now = 90;
    b.t.now = 90;
    assert.deepEqual(a.ledger.snapshot(), [20 * MS, 0, 0, 0, 0, 0]);
    assert.deepEqual(b.ledger.snapshot(), [3 * MS, 0, 2 * MS, 0, 0, 0]);
  });

  it('a second open does not restart the window; a ledger that never saw it open reports zeros', () => {
    const window = new SharedArrayBuffer(StageWindow.BYTES);
    const a = fakeClock();
    const c = fakeClock();
    a.ledger.enable(Stage.HOME, { window });
    c.ledger.enable(Stage.HOME, { window });
    a.t.now = 10;
    a.ledger.openWindow();
    a.t.now = 15;
    a.ledger.openWindow();
    a.t.now = 20;
    a.ledger.closeWindow();
    assert.equal(new Int32Array(window)[0], StageWindow.CLOSED);
    assert.equal(a.ledger.snapshot()[Stage.HOME], 10 * MS);
    c.t.now = 30; // slept through the whole window without a switch
    assert.deepEqual(c.ledger.snapshot(), [0, 0, 0, 0, 0, 0]);
  });
});

describe('stage ledger: without a host window the ledger keeps its own', () => {
  it('openWindow restarts and closeWindow freezes a ledger enabled with no window buffer', () => {
    const { t, ledger } = fakeClock();
    ledger.enable();
    t.now = 5;
    ledger.openWindow();
    t.now = 8;
    ledger.closeWindow();
    t.now = 20;
    assert.deepEqual(ledger.snapshot(), [3 * MS, 0, 0, 0, 0, 0]);
    assert.equal(new Int32Array(ledger.window)[0], StageWindow.CLOSED, 'a helper thread handed it sees the close');
  });
});

describe('stage ledger: hooked waits are IDLE in the calling thread', () => {
  afterEach(() => stages.disable());

  it('adaptiveWait and AdaptiveSpin.wait attribute their spin and sleep to IDLE and restore', () => {
    const word = new Int32Array(new SharedArrayBuffer(4));
    stages.enable();
    const prev = stages.enter(Stage.RING);
    assert.equal(adaptiveWait(word, 0, 0, 100, 2), 'timed-out');
    assert.equal(stages.current, Stage.RING);
    assert.equal(new AdaptiveSpin(100).wait(word, 0, 0, 2), 'timed-out');
    assert.equal(stages.current, Stage.RING);
    stages.enter(prev);
    const s = stages.snapshot();
    assert.ok(s[Stage.IDLE] > 0, 'the two timed-out waits are IDLE');
    assert.equal(s[Stage.GRANT] + s[Stage.DEVICE] + s[Stage.FABRIC], 0);
  });

  it('a wait that throws (non-shared word) still restores the stage', () => {
    stages.enable();
    stages.enter(Stage.GRANT);
    assert.throws(() => adaptiveWait(new Int32Array(1), 0, 0, 0, 1));
    assert.equal(stages.current, Stage.GRANT);
  });
});

describe('thread reports: a helper thread report is filed once and taken once', () => {
  it('takeThreadReports returns what was filed and clears it', () => {
    fileThreadReport({ name: 'tcp-nic g/tcp0', cpuNs: 5, stagesNs: [0, 0, 0, 1, 2, 3] });
    assert.deepEqual(takeThreadReports(), [{ name: 'tcp-nic g/tcp0', cpuNs: 5, stagesNs: [0, 0, 0, 1, 2, 3] }]);
    assert.deepEqual(takeThreadReports(), []);
  });
});
