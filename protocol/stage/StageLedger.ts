/**
 * The per-thread stage ledger behind `pvio compare`'s per-stage breakdown (DESIGN §6, the seed
 * paper's CPU-time breakdown figures): every thread attributes its wall time, from real clock
 * reads at real switch points, to one stage at a time.
 *
 * ```
 * stage   what runs while it is current                          reported as
 * HOME    whatever the thread is for, when no hook is active     guest: frontend; driver domain:
 *                                                                backend; device thread: device
 * RING    filling / draining ring slots, push + event notify     ring + notify
 * GRANT   grant map / unmap, copy-mode bounce copies             grant map/copy
 * DEVICE  the NIC engine executing commands, doorbells and WRs   device
 * FABRIC  the modeled wire delay (RnicFabric), tcp socket writes fabric
 * IDLE    waiting for another thread: spin and Atomics.wait in   idle: reported, not a stage of
 *         hooked waits, and the event loop's own idle time       the breakdown
 * ```
 *
 * Usage, never nesting-broken: `const prev = stages.enter(Stage.RING); …; stages.enter(prev);`
 * (with try/finally only where the section can throw). A section must never span an `await`:
 * the ledger is per thread, not per task.
 *
 * Wall time, not CPU time: a thread descheduled inside a stage (two cores, three busy threads, or
 * a notify whose wakee preempts the notifier) keeps accruing that stage. Node 20 has no per-thread
 * CPU clock cheap enough to read at every switch (schedstat costs ≈ 12 µs), so compare the sum
 * of a thread's non-idle stages with its `cpuNs` to see how much of it was preemption.
 *
 * Window: a program's setup (module code, handshakes, registrations) is not per-message work.
 * With a shared window word (`enable`'s `window`, one per host), the first thread to call
 * `openWindow()` restarts every ledger of the host and `closeWindow()` freezes them; each other
 * thread notices at its next switch, so the window edges are exact in the caller's thread and
 * late by at most one section elsewhere. Without an open window the ledger covers the whole run.
 *
 * Cost: disabled (the default, and what every measuring run uses) `enter` is one branch on a
 * field and returns `Stage.HOME` without reading the clock; enabled it is one clock read, a few
 * stores and, until the window has closed, one `Atomics.load`. The instrumented run is therefore
 * always a separate run from the measured one.
 *
 * `protocol/` has no node types: the clock is the global `performance.now()` (ms, sub-µs
 * resolution, monotonic per thread), declared locally, and injectable for tests.
 */

// protocol/ is compiled without DOM or node types; Node and browsers both provide this global.
declare const performance: { now(): number };

/** Stages of the breakdown (indices into a snapshot). */
export const enum Stage {
  HOME = 0,
  RING = 1,
  GRANT = 2,
  DEVICE = 3,
  FABRIC = 4,
  IDLE = 5,
  COUNT = 6,
}

/** Stage names in index order (for messages and tests). */
export const STAGE_NAMES: readonly string[] = ['home', 'ring', 'grant', 'device', 'fabric', 'idle'];

/** States of the shared window word (word 0 of the window buffer); it only moves forward. */
export const enum StageWindow {
  /** No program opened a window: ledgers count from `enable`. */
  NONE = 0,
  OPEN = 1,
  CLOSED = 2,
  /** Bytes of a window buffer. */
  BYTES = 4,
}

/** A clock in milliseconds (performance.now() semantics). */
export type MsClock = () => number;

/** What a thread's ledger is enabled with (all optional). */
export interface StageLedgerOptions {
  /**
   * The thread's cumulative event-loop idle time in ms (Node's
   * `performance.eventLoopUtilization().idle`; protocol/ has no node types, so the caller passes
   * it). A thread awaiting a promise sleeps in the event loop, not in a hooked wait, and no
   * section is open across an `await`, so that time accrued to the base stage; `snapshot` moves
   * it to IDLE. `Atomics.wait` inside JS counts as active there, so the two idles never overlap.
   */
  readonly loopIdleMs?: MsClock;
  /**
   * The host's window buffer (`StageWindow.BYTES`), shared by every ledger of the run. Without
   * one the ledger makes its own: the window then spans this thread and the helper threads it
   * hands `window` to.
   */
  readonly window?: SharedArrayBuffer;
}

const NS_PER_MS = 1e6;

/** One thread's ledger; see the file comment. Use the module singleton `stages` in pvio code. */
export class StageLedger {
  private _on = false;
  private _base: Stage = Stage.HOME;
  private _current: Stage = Stage.HOME;
  private _last = 0;
  /** Accumulated milliseconds per stage (converted to ns only in `snapshot`). */
  private readonly _ms = new Float64Array(Stage.COUNT);
  private readonly _clock: MsClock;
  private _loopIdle: MsClock | undefined;
  private _loopIdle0 = 0;
  /** Event-loop idle reading when the window closed (NaN while it has not). */
  private _loopIdleEnd = Number.NaN;
  private _window = new Int32Array(new SharedArrayBuffer(StageWindow.BYTES));
  /** The window state this thread has acted on. */
  private _seen: StageWindow = StageWindow.NONE;

  /** `clock` is injectable for tests; pvio code uses the default. */
  constructor(clock: MsClock = () => performance.now()) {
    this._clock = clock;
  }

  /** True once `enable()` ran in this thread. */
  get enabled(): boolean {
    return this._on;
  }

  /** The stage time is being attributed to now. */
  get current(): Stage {
    return this._current;
  }

  /** The window buffer this ledger follows (to hand to a helper thread it starts). */
  get window(): SharedArrayBuffer {
    return this._window.buffer as SharedArrayBuffer;
  }

  /**
   * Starts attributing time, from now, to `base`: the stage the thread belongs to (HOME for a
   * domain, DEVICE for a dedicated device-engine thread or the tcp NIC thread). Clears what was
   * accumulated; enabling twice restarts the ledger.
   */
  enable(base: Stage = Stage.HOME, opts: StageLedgerOptions = {}): void {
    this._ms.fill(0);
    this._base = base;
    this._current = base;
    this._loopIdle = opts.loopIdleMs;
    this._loopIdle0 = this._loopIdle ? this._loopIdle() : 0;
    this._loopIdleEnd = Number.NaN;
    this._window = new Int32Array(opts.window ?? new SharedArrayBuffer(StageWindow.BYTES), 0, 1);
    this._seen = StageWindow.NONE;
    this._last = this._clock();
    this._on = true;
  }

  /** Stops attributing (tests; a thread that was instrumented stays so in pvio). */
  disable(): void {
    this._on = false;
  }

  /**
   * Makes `stage` current and returns the previous one, attributing the wall time since the last
   * switch to the previous. Disabled: returns `Stage.HOME` at once and reads no clock.
   */
  enter(stage: Stage): Stage {
    if (!this._on) return Stage.HOME;
    const now = this._clock();
    const prev = this._current;
    this._follow(now);
    this._ms[prev] += now - this._last;
    this._last = now;
    this._current = stage;
    return prev;
  }

  /**
   * Nanoseconds per stage (length `Stage.COUNT`) since `enable`, or within the window, closing
   * the current interval: the time since the last switch is attributed to the current stage,
   * which stays current. Event-loop idle is moved from the base stage to IDLE, clamped to what
   * the base stage holds. All zeros while disabled.
   */
  snapshot(): number[] {
    if (!this._on) return new Array<number>(Stage.COUNT).fill(0);
    const now = this._clock();
    this._follow(now);
    this._ms[this._current] += now - this._last;
    this._last = now;
    const out = Array.from(this._ms, (ms) => ms * NS_PER_MS);
    if (this._loopIdle) {
      const end = this._seen === StageWindow.CLOSED ? this._loopIdleEnd : this._loopIdle();
      const idle = Math.min(Math.max(0, (end - this._loopIdle0) * NS_PER_MS), out[this._base]);
      out[this._base] -= idle;
      out[Stage.IDLE] += idle;
    }
    return out;
  }

  /**
   * Zeroes the accumulated time and restarts this thread's count at now, keeping the current
   * stage (a local window start; `openWindow` does it for every thread of the host).
   */
  reset(): void {
    if (!this._on) return;
    this._restart(this._clock());
  }

  /** Opens the host's window (the first call of the run wins) and restarts this ledger now. */
  openWindow(): void {
    if (!this._on) return;
    // ORDERING: seq-cst CAS; other ledgers load the word at their next switch.
    Atomics.compareExchange(this._window, 0, StageWindow.NONE, StageWindow.OPEN);
    this._follow(this._clock());
  }

  /** Closes the host's window: this ledger freezes now, the others at their next switch. */
  closeWindow(): void {
    if (!this._on) return;
    // ORDERING: seq-cst store; the state only moves forward, so CLOSED is final.
    Atomics.store(this._window, 0, StageWindow.CLOSED);
    this._follow(this._clock());
  }

  /** Acts on a window state this thread has not seen yet (called with a clock reading). */
  private _follow(now: number): void {
    if (this._seen === StageWindow.CLOSED) {
      // Frozen: nothing accrues after the close.
      this._last = now;
      return;
    }
    // ORDERING: seq-cst load pairs with openWindow's CAS / closeWindow's store.
    const state = Atomics.load(this._window, 0) as StageWindow;
    if (state === this._seen) return;
    if (this._seen === StageWindow.NONE) this._restart(now);
    if (state === StageWindow.CLOSED) {
      // Attribute the last interval (inside the window, as far as this thread can tell), then
      // freeze: later intervals are dropped by the branch above.
      this._ms[this._current] += now - this._last;
      this._last = now;
      this._loopIdleEnd = this._loopIdle ? this._loopIdle() : 0;
    }
    this._seen = state;
  }

  private _restart(now: number): void {
    this._ms.fill(0);
    if (this._loopIdle) this._loopIdle0 = this._loopIdle();
    this._last = now;
  }
}

/** This thread's ledger (ES modules are instantiated once per worker thread). */
export const stages: StageLedger = new StageLedger();
