/**
 * The NIC thread's sleep on the bell word (Layout.ts BELL). The thread also serves sockets, so it
 * cannot block in `Atomics.wait`: it waits with `Atomics.waitAsync`, whose wake-up arrives as an
 * event-loop task (≈ 1.8 µs later than `Atomics.wait`, DESIGN §4). While it waits it sets IDLE so
 * the guest knows a notify is needed; while it works IDLE is 0 and the guest's ring costs only an
 * `Atomics.add`. The listening socket is the ref'd handle that keeps the thread alive while it
 * waits (nodejs/node#44729: a worker whose only pending work is a waitAsync exits).
 */

import { CtrlWord } from './Layout.js';

/** `Atomics.waitAsync` (Node ≥ 16; typed in lib es2024, the build targets es2023). */
type WaitAsync = (
  typed: Int32Array,
  index: number,
  value: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** See the file comment. */
export class Bell {
  private _stopped = true;
  private readonly _wake = (): void => {
    // ORDERING: awake again; from here on the guest may skip its notify.
    Atomics.store(this._ctrl, CtrlWord.IDLE, 0);
    this._arm();
  };

  /** `serve` runs after every ring (and once at start): commands, doorbells, progress. */
  constructor(
    private readonly _ctrl: Int32Array,
    private readonly _serve: () => void,
  ) {}

  /** Serves once, then sleeps on the bell. */
  start(): void {
    this._stopped = false;
    this._arm();
  }

  /** Stops re-arming (the pending waitAsync, if any, ends with the thread). */
  stop(): void {
    this._stopped = true;
  }

  private _arm(): void {
    if (this._stopped) return;
    const ctrl = this._ctrl;
    // ORDERING: read BELL before serving, so a ring during or after the serve changes it and the
    // waitAsync below returns at once ('not-equal') instead of sleeping through it.
    const seen = Atomics.load(ctrl, CtrlWord.BELL);
    this._serve();
    // ORDERING: IDLE = 1 before waiting; the guest adds to BELL, then loads IDLE (Dekker pair):
    // either it sees IDLE and notifies, or our waitAsync sees the new BELL value.
    Atomics.store(ctrl, CtrlWord.IDLE, 1);
    const r = waitAsync(ctrl, CtrlWord.BELL, seen);
    if (r.async) r.value.then(this._wake);
    else setImmediate(this._wake); // rung meanwhile: serve again on the next turn
  }
}
