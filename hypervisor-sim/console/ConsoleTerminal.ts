/**
 * The host's side of one domain's console (xenconsoled's role): it reads the console ring
 * (protocol/console/ConsoleRing.ts) as bytes arrive, decodes UTF-8 as a stream, and feeds
 *  - an @xterm/headless terminal, which keeps the screen a person would see (colours, carriage
 *    returns, cursor movement and line clears applied) — `pvio console` and the results folder;
 *  - a line splitter, which keeps every line as written (`Domain.console`): env.log writes
 *    `line\r\n`, so a line is the text up to `\n` without its `\r`.
 *
 * Waking: `Atomics.waitAsync` on out_prod, which the guest notifies after each write. A timed-out
 * wait just looks again, so a missed wake costs at most `pollMs`. waitAsync does not keep the
 * event loop alive (nodejs/node#44729), so a console never keeps the process running by itself.
 * Owners drain synchronously (`drain()`) when they must see everything written so far, e.g.
 * when the domain's result arrives: the guest wrote its console before posting the result.
 */

import xterm from '@xterm/headless';
import { ConsoleReader, ConsoleWord } from '../../protocol/console/ConsoleRing.js';
import { waitAsync } from '../../protocol/wait.js';

const { Terminal } = xterm;

/** How to build a console terminal. */
export interface ConsoleTerminalOptions {
  /** Terminal size (default 100 × 30) and scrollback lines (default 1000). */
  readonly cols?: number;
  readonly rows?: number;
  readonly scrollback?: number;
  /** Called with each complete line as it is split (e.g. echo to stdout). */
  readonly onLine?: (line: string) => void;
  /** Longest a read waits for a notify before looking again (ms, default 1000). */
  readonly pollMs?: number;
}

export class ConsoleTerminal {
  /** Every complete line, in order, as written (escape sequences included). */
  readonly lines: string[] = [];
  private readonly _reader: ConsoleReader;
  private readonly _term: InstanceType<typeof Terminal>;
  private readonly _decoder = new TextDecoder('utf-8');
  private readonly _onLine: ((line: string) => void) | undefined;
  private readonly _pollMs: number;
  /** Text after the last `\n`. */
  private _partial = '';
  private _closed = false;
  private _closing: Promise<string[]> | undefined;
  /** A note the host adds when the ring breaks (shown once, then reading stops). */
  private _broken = false;

  constructor(page: SharedArrayBuffer, opts: ConsoleTerminalOptions = {}) {
    this._reader = new ConsoleReader(page);
    this._term = new Terminal({
      cols: opts.cols ?? 100,
      rows: opts.rows ?? 30,
      scrollback: opts.scrollback ?? 1000,
      allowProposedApi: true,
      // console.log's own newlines and env.log lines with `\n` inside start at column 0.
      convertEol: true,
    });
    this._onLine = opts.onLine;
    this._pollMs = opts.pollMs ?? 1000;
  }

  /** Starts reading as bytes arrive. */
  start(): void {
    this._wait();
  }

  /** Bytes the guest dropped because the host did not read fast enough. */
  get dropped(): number {
    return this._reader.dropped;
  }

  /** All text so far as lines (the partial last line included when non-empty). */
  get text(): string[] {
    return this._partial === '' ? [...this.lines] : [...this.lines, this._partial];
  }

  /** Reads everything the guest has written so far, synchronously. */
  drain(): void {
    if (this._closed || this._broken) return;
    let bytes: Uint8Array;
    try {
      bytes = this._reader.read();
    } catch (err) {
      // A guest that corrupts its indices loses its console, as under xenconsoled.
      this._broken = true;
      this._feed(`\r\n[console ring broken: ${(err as Error).message}]\r\n`);
      return;
    }
    if (bytes.length > 0) this._feed(this._decoder.decode(bytes, { stream: true }));
  }

  /** The visible screen once xterm has parsed everything written so far; trailing blanks trimmed. */
  async screen(): Promise<string[]> {
    if (this._closing !== undefined) return this._closing;
    this.drain();
    await new Promise<void>((resolve) => this._term.write('', resolve));
    return this._visible();
  }

  /**
   * Final drain (a partial last line becomes a line), stops reading, keeps the final screen for
   * `screen()` and frees the terminal. Idempotent.
   */
  close(): Promise<string[]> {
    if (this._closing === undefined) {
      this.drain();
      const tail = this._decoder.decode();
      if (tail !== '') this._feed(tail);
      if (this._partial !== '') this._line(this._partial);
      this._partial = '';
      this._closed = true;
      // ORDERING: wakes our own pending waitAsync so its loop sees `_closed` and ends.
      Atomics.notify(this._reader.words, ConsoleWord.OUT_PROD);
      this._closing = new Promise<string[]>((resolve) => {
        this._term.write('', () => {
          const screen = this._visible();
          this._term.dispose();
          resolve(screen);
        });
      });
    }
    return this._closing;
  }

  private _wait(): void {
    if (this._closed || this._broken) return;
    const words = this._reader.words;
    // Sleep only on an EMPTY ring: a guest that refilled it between our drain and our load of
    // out_prod may now be waiting for space, and will not move out_prod again to wake us.
    let prod = 0;
    for (let i = 0; ; i++) {
      this.drain();
      if (this._closed || this._broken) return;
      // ORDERING: seq-cst loads after the drain; a write that lands after them changes
      // out_prod, so waitAsync below returns 'not-equal' at once.
      prod = Atomics.load(words, ConsoleWord.OUT_PROD);
      if (prod === Atomics.load(words, ConsoleWord.OUT_CONS)) break;
      // A guest writing without pause: let the rest of the host run, then go on reading.
      if (i === 16) {
        setImmediate(() => this._wait());
        return;
      }
    }
    const r = waitAsync(words, ConsoleWord.OUT_PROD, prod, this._pollMs);
    if (r.async) void r.value.then(() => this._wait());
    else setImmediate(() => this._wait());
  }

  private _feed(text: string): void {
    this._term.write(text);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      this._line(this._partial + text.slice(start, nl));
      this._partial = '';
      start = nl + 1;
    }
    this._partial += text.slice(start);
  }

  private _line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    this.lines.push(line);
    this._onLine?.(line);
  }

  private _visible(): string[] {
    const buf = this._term.buffer.active;
    const out: string[] = [];
    for (let i = 0; i < this._term.rows; i++) out.push(buf.getLine(buf.baseY + i)?.translateToString(true) ?? '');
    while (out.length > 0 && out[out.length - 1] === '') out.pop();
    return out;
  }
}
