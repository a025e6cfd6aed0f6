/**
 * Drawing `pvio top` on a terminal without flicker: the alternate screen, a hidden cursor, and
 * each frame written over the last in ONE write (cursor home, every line followed by
 * erase-to-end-of-line, then erase-below) — never a clear-screen between frames. Keys come from
 * stdin in raw mode. `restore()` puts the terminal back whatever happened (it is also run on
 * exit and on SIGTERM/SIGINT).
 */

import type { ReadStream, WriteStream } from 'node:tty';

/** A key the viewer acts on. */
export type TopKey = 'quit' | 'sort' | 'details' | 'up' | 'down';

/** Maps raw stdin bytes to keys (ignores everything else). */
export function parseKeys(data: string): TopKey[] {
  const keys: TopKey[] = [];
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c === '\x1b' && data[i + 1] === '[' && (data[i + 2] === 'A' || data[i + 2] === 'B')) {
      keys.push(data[i + 2] === 'A' ? 'up' : 'down');
      i += 2;
    } else if (c === 'q' || c === 'Q' || c === '\x03') keys.push('quit');
    else if (c === 's' || c === 'S') keys.push('sort');
    else if (c === 'd' || c === 'D') keys.push('details');
    else if (c === 'k') keys.push('up');
    else if (c === 'j') keys.push('down');
  }
  return keys;
}

/** One terminal's screen. */
export class TopScreen {
  private _active = false;
  private readonly _restore = () => this.restore();

  constructor(
    private readonly _out: WriteStream,
    private readonly _in: ReadStream,
  ) {}

  get width(): number {
    return this._out.columns || 80;
  }

  get height(): number {
    return this._out.rows || 24;
  }

  /** Alternate screen, hidden cursor, raw keys to `onKey`, redraw on resize via `onResize`. */
  open(onKey: (k: TopKey) => void, onResize: () => void): void {
    this._active = true;
    this._out.write('\x1b[?1049h\x1b[?25l');
    this._in.setRawMode(true);
    this._in.setEncoding('utf8');
    this._in.on('data', (d: string) => {
      for (const k of parseKeys(d)) onKey(k);
    });
    this._in.resume();
    this._out.on('resize', onResize);
    process.once('exit', this._restore);
  }

  /** Draws a frame of lines over the previous one. */
  draw(lines: readonly string[]): void {
    if (!this._active) return;
    this._out.write(`\x1b[H${lines.join('\x1b[K\r\n')}\x1b[K\x1b[J`);
  }

  /** Leaves the alternate screen and gives the terminal back. */
  restore(): void {
    if (!this._active) return;
    this._active = false;
    process.removeListener('exit', this._restore);
    this._out.write('\x1b[?25h\x1b[?1049l');
    try {
      this._in.setRawMode(false);
    } catch {
      // stdin already closed.
    }
    this._in.pause();
  }
}
