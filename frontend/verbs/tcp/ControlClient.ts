/**
 * The guest side of the control block (Layout.ts): synchronous commands through the mailbox, and
 * the bell. A command is written (CMD_OPCODE, CMD_IN), published by bumping CMD_SEQ, announced on
 * the bell, and awaited on CMD_DONE with adaptive waiting (spin, then `Atomics.wait`; DESIGN §4)
 * under a deadline, so a dead NIC thread turns into PV_ERR_TIMEOUT rather than a hang.
 */

import { codeFromStatus, pvError } from '../../../protocol/errors.js';
import { adaptiveWait } from '../../../protocol/wait.js';
import { CMD_MSG_BYTES, CMD_WORDS, CtrlWord, STAT_COUNT } from './Layout.js';

/** See the file comment. */
export class ControlClient {
  readonly ctrl: Int32Array;
  /** CMD_IN: write arguments here (zeroed by `begin`). */
  readonly args: Int32Array;
  /** CMD_OUT: results of the last command. */
  readonly out: Int32Array;
  private readonly _spin: number;
  private readonly _timeoutMs: number;
  private _seq: number;

  constructor(ctrl: SharedArrayBuffer, spinBudget: number, timeoutMs: number) {
    this.ctrl = new Int32Array(ctrl);
    this.args = new Int32Array(ctrl, CtrlWord.CMD_IN * 4, CMD_WORDS);
    this.out = new Int32Array(ctrl, CtrlWord.CMD_OUT * 4, CMD_WORDS);
    this._spin = spinBudget;
    this._timeoutMs = timeoutMs;
    // ORDERING: single writer (this thread); a load for a block reused across providers.
    this._seq = Atomics.load(this.ctrl, CtrlWord.CMD_SEQ);
  }

  /** Starts a command: clears CMD_IN (unused words must be zero) and returns it to fill. */
  begin(): Int32Array {
    this.args.fill(0);
    return this.args;
  }

  /**
   * Runs the command whose arguments were written after `begin()`; returns CMD_OUT. Throws the
   * catalogue error the NIC answered, or PV_ERR_TIMEOUT.
   */
  call(op: number): Int32Array {
    const ctrl = this.ctrl;
    ctrl[CtrlWord.CMD_OPCODE] = op;
    const seq = (this._seq + 1) | 0;
    this._seq = seq;
    // ORDERING: seq-cst store publishes CMD_OPCODE and CMD_IN (plain stores before it).
    Atomics.store(ctrl, CtrlWord.CMD_SEQ, seq);
    this.ring();
    const deadline = performance.now() + this._timeoutMs;
    for (;;) {
      // ORDERING: seq-cst load pairs with the NIC's store of CMD_DONE after the results.
      const done = Atomics.load(ctrl, CtrlWord.CMD_DONE);
      if (done === seq) break;
      const left = deadline - performance.now();
      if (left <= 0) throw pvError('PV_ERR_TIMEOUT', `tcp NIC thread did not answer command ${op}`);
      adaptiveWait(ctrl, CtrlWord.CMD_DONE, done, this._spin, left);
    }
    const status = ctrl[CtrlWord.CMD_STATUS];
    if (status !== 0) throw pvError(codeFromStatus(status) ?? 'PV_ERR_BAD_REQUEST', this._message());
    return this.out;
  }

  /** Tells the NIC thread there is work (doorbells or a command); notifies only if it sleeps. */
  ring(): void {
    // ORDERING: seq-cst add after the doorbell/command stores; then load IDLE (Dekker pair with
    // the NIC's store IDLE = 1 → waitAsync on BELL): one of us sees the other.
    Atomics.add(this.ctrl, CtrlWord.BELL, 1);
    // ORDERING: see above; notify costs ≈ 2.7 µs, so it is skipped while the NIC is awake.
    if (Atomics.load(this.ctrl, CtrlWord.IDLE) !== 0) Atomics.notify(this.ctrl, CtrlWord.BELL);
  }

  /** The NIC's counters (Layout.ts TcpStat order). */
  stats(): number[] {
    const s: number[] = [];
    // ORDERING: seq-cst loads of counters the NIC publishes with Atomics.store.
    for (let i = 0; i < STAT_COUNT; i++) s.push(Atomics.load(this.ctrl, CtrlWord.STATS + i));
    return s;
  }

  private _message(): string {
    const len = Math.min(Math.max(this.ctrl[CtrlWord.CMD_MSG_LEN], 0), CMD_MSG_BYTES);
    // TextDecoder refuses views of a SharedArrayBuffer: copy out first (error path only).
    const copy = new Uint8Array(len);
    copy.set(new Uint8Array(this.ctrl.buffer, CtrlWord.CMD_MSG * 4, len));
    return new TextDecoder().decode(copy);
  }
}
