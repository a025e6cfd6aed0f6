import assert from 'node:assert/strict';
import xterm from '@xterm/headless';
import { Progress, type ProgressSink } from '../../../bench/compare/Progress.js';

const { Terminal } = xterm;

/** A sink that feeds an @xterm/headless terminal, as a real TTY would render the bytes. */
function terminalSink(cols: number, rows: number) {
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  const pending: Promise<void>[] = [];
  const sink: ProgressSink = {
    isTTY: true,
    columns: cols,
    write: (s: string) => pending.push(new Promise<void>((resolve) => term.write(s, resolve))),
  };
  const screen = async (): Promise<string[]> => {
    await Promise.all(pending);
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < rows; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? '');
    return lines;
  };
  return { term, sink, screen };
}

describe('bench/compare Progress', () => {
  it('on a TTY redraws one line in place: the bar never scrolls and shows the running step', async () => {
    const { sink, screen, term } = terminalSink(80, 5);
    const p = new Progress(4, sink);
    for (let i = 0; i < 3; i++) {
      p.start(`cell ${i}`);
      p.done(`cell ${i}`, 'ok');
    }
    p.start('cell 3 running');
    const lines = await screen();
    assert.match(lines[0], /^\[#+\.+\] 3\/4 /);
    assert.match(lines[0], /cell 3 running/);
    assert.ok(lines[0].length <= 80);
    assert.deepEqual(lines.slice(1), ['', '', '', ''], 'nothing scrolled below the bar');
    p.finish();
    assert.equal((await screen())[0], '', 'finish clears the bar for the table');
    term.dispose();
  });

  it('fits a narrow terminal without wrapping', async () => {
    const { sink, screen, term } = terminalSink(40, 3);
    const p = new Progress(100, sink);
    p.start('a very long cell label that would never fit into forty columns at all');
    const lines = await screen();
    assert.ok(lines[0].length <= 40);
    assert.equal(lines[1], '', 'the bar did not wrap onto a second line');
    term.dispose();
  });

  it('without a TTY prints one plain line per finished step and no escape codes', () => {
    const out: string[] = [];
    const p = new Progress(2, { write: (s: string) => out.push(s), isTTY: false });
    p.start('a');
    p.done('a', 'median 2.00 µs');
    p.start('b');
    p.done('b', 'FAILED PV_ERR_TIMEOUT: x');
    p.finish();
    assert.deepEqual(out, ['[1/2] a: median 2.00 µs\n', '[2/2] b: FAILED PV_ERR_TIMEOUT: x\n']);
  });
});
