/**
 * perftest's duration mode (-D SECONDS, -f MARGIN) as a clock the loops consult at iteration
 * boundaries. perftest drives it with SIGALRM (catch_alarm: START → SAMPLE after the margin,
 * SAMPLE → STOP_SAMPLE at duration − margin, then END) and counts iterations while in SAMPLE;
 * here the loop calls `tick` after each completed iteration, so the window's edges fall exactly
 * on iteration boundaries and the count and the time cover the same iterations.
 */

import { pvError } from '../../../protocol/errors.js';

/** A measurement window inside a timed run. */
export class DurationClock {
  private readonly _sampleAt: number;
  private readonly _stopSampleAt: number;
  private readonly _endAt: number;
  private _startMs = -1;
  private _startCount = 0;
  private _stopMs = -1;
  private _stopCount = 0;

  /** `t0Ms` is performance.now() at the start of the run. */
  constructor(t0Ms: number, durationS: number, marginS: number) {
    if (!(durationS > 0) || !(marginS >= 0) || !(durationS > 2 * marginS)) {
      throw pvError('PV_ERR_INVALID_ARG', `duration ${durationS} s must exceed twice the margin ${marginS} s`);
    }
    this._sampleAt = t0Ms + marginS * 1000;
    this._stopSampleAt = t0Ms + (durationS - marginS) * 1000;
    this._endAt = t0Ms + durationS * 1000;
  }

  /**
   * Records the state at an iteration boundary: `done` iterations completed so far at time
   * `nowMs`. Returns false once the run is over (the caller stops starting iterations).
   */
  tick(nowMs: number, done: number): boolean {
    if (this._startMs < 0 && nowMs >= this._sampleAt) {
      this._startMs = nowMs;
      this._startCount = done;
    }
    if (this._startMs >= 0 && this._stopMs < 0 && nowMs >= this._stopSampleAt) {
      this._stopMs = nowMs;
      this._stopCount = done;
    }
    if (nowMs < this._endAt) return true;
    // A run whose iterations outlast the whole duration still closes its window.
    if (this._startMs < 0) {
      this._startMs = nowMs;
      this._startCount = done;
    }
    if (this._stopMs < 0) {
      this._stopMs = nowMs;
      this._stopCount = done;
    }
    return false;
  }

  /** Iterations completed inside the window. */
  get windowIters(): number {
    return this._stopCount - this._startCount;
  }

  /** Window length, seconds. */
  get windowSeconds(): number {
    return (this._stopMs - this._startMs) / 1000;
  }
}
