/**
 * Progress of a long run: on a terminal, one bar redrawn in place (carriage return + erase line,
 * so nothing scrolls and nothing flickers); anywhere else — a pipe, a CI log — one plain line per
 * finished step, so logs stay readable and greppable.
 */

/** Where progress goes: a writable with an optional TTY flag and width (process.stderr fits). */
export interface ProgressSink {
  write(s: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Counts steps and estimates what is left from the mean step time so far. */
export class Progress {
  private _done = 0;
  private readonly _t0 = performance.now();
  private _current = '';

  constructor(
    private readonly _total: number,
    private readonly _sink: ProgressSink = process.stderr,
    private readonly _tty = _sink.isTTY === true,
  ) {}

  /** Marks the start of a step (a TTY shows what is running now). */
  start(label: string): void {
    this._current = label;
    if (this._tty) this._draw();
  }

  /** Marks a step done, with a short result for the plain-line log. */
  done(label: string, result: string): void {
    this._done++;
    if (this._tty) this._draw();
    else this._sink.write(`[${this._done}/${this._total}] ${label}: ${result}\n`);
  }

  /** Clears the bar (TTY) so the table that follows starts on a clean line. */
  finish(): void {
    if (this._tty) this._sink.write('\r\x1b[2K');
  }

  /** Seconds since the start. */
  get elapsedS(): number {
    return (performance.now() - this._t0) / 1000;
  }

  private _draw(): void {
    const width = Math.max(40, Math.min(this._sink.columns ?? 80, 160));
    const elapsed = this.elapsedS;
    const left = this._done > 0 ? (elapsed / this._done) * (this._total - this._done) : Number.NaN;
    const eta = Number.isFinite(left) ? `~${Math.ceil(left)} s left` : '';
    const head = `${this._done}/${this._total} ${Math.round(elapsed)} s ${eta} `;
    const barWidth = Math.max(10, Math.min(30, width - head.length - 20));
    const filled = Math.round((barWidth * this._done) / Math.max(1, this._total));
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] `;
    const room = Math.max(0, width - 1 - bar.length - head.length);
    this._sink.write(`\r\x1b[2K${bar}${head}${this._current.slice(0, room)}`);
  }
}
