import assert from 'node:assert/strict';
import { ConsoleTerminal } from '../../../hypervisor-sim/console/ConsoleTerminal.js';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { CONSOLE_OUT_SIZE, CONSOLE_PAGE_BYTES, ConsoleWriter } from '../../../protocol/console/ConsoleRing.js';
import { ANSI_LINES } from './programs/ConsoleWriterProgram.js';

const PROGRAM = new URL('./programs/ConsoleWriterProgram.js', import.meta.url);

/** What a person sees after ANSI_LINES and console.log({ a: 1, nested: { b: 'x' } }). */
const ANSI_SCREEN = [
  'red alert and green',
  'progress 100%',
  'first updated',
  'second line',
  'naïve µs ✓',
  "{ a: 1, nested: { b: 'x' } }",
];

const LINE_BYTES = 'line 00000 '.length + 50 + 2;

describe('console: a guest console ring read into an @xterm/headless screen', function () {
  this.timeout(30_000);

  it('a real guest writing ANSI text: the screen applies SGR, CR, CSI A/C/B/K; Domain.console keeps what env.log wrote', async () => {
    const host = new Host({ name: 'console-ansi' });
    try {
      const d = host.createDomain({ name: 'ansi', program: PROGRAM, args: { mode: 'ansi' } });
      assert.equal((await d.result).value, 'ok');
      // Complete as soon as the result settles: drained when the result message arrived.
      assert.deepEqual(d.console, [...ANSI_LINES, "{ a: 1, nested: { b: 'x' } }"]);
      assert.deepEqual(await d.screen(), ANSI_SCREEN);
      await d.whenExited();
      assert.deepEqual(await d.screen(), ANSI_SCREEN, 'the final screen outlives the domain');
      assert.equal(d.consoleDropped, 0);
    } finally {
      await host.shutdown();
    }
  });

  it('a guest writing 20 rings of text while the host reads: every line arrives in order, the screen shows the last 30', async () => {
    const host = new Host({ name: 'console-bulk' });
    try {
      const lines = Math.ceil((20 * CONSOLE_OUT_SIZE) / LINE_BYTES);
      const d = host.createDomain({ name: 'bulk', program: PROGRAM, args: { mode: 'bulk', lines } });
      await d.result;
      assert.equal(d.consoleDropped, 0, 'a reading host never makes the guest drop');
      assert.equal(d.console.length, lines);
      for (const [i, l] of d.console.entries()) assert.equal(l, `line ${String(i).padStart(5, '0')} ${'.'.repeat(50)}`);
      const screen = await d.screen();
      assert.equal(screen.length, 29, '30 rows, the last one empty after the final CRLF and trimmed');
      assert.equal(screen[28], d.console[lines - 1]);
    } finally {
      await host.shutdown();
    }
  });

  it('a guest that outruns a host which is not reading drops with a count and its writes still return', async () => {
    const host = new Host({ name: 'console-flood' });
    try {
      const done = new SharedArrayBuffer(4);
      const lines = 200;
      const d = host.createDomain({ name: 'flood', program: PROGRAM, args: { mode: 'flood', lines, done } });
      // Block this (the host's) thread: no console read can run until the guest's writes return.
      // If a full ring blocked the guest forever this would time out and fail.
      assert.equal(Atomics.wait(new Int32Array(done), 0, 0, 20_000), 'ok');
      assert.equal((await d.result).value, lines);
      // The ring kept exactly its first 2048 bytes (ASCII here), as lines; the rest was dropped.
      const written = Array.from(
        { length: lines },
        (_, i) => `line ${String(i).padStart(5, '0')} ${'.'.repeat(50)}\r\n`,
      );
      const kept = written.join('').slice(0, CONSOLE_OUT_SIZE).split('\n');
      assert.deepEqual(
        d.consoleText(),
        kept.map((l) => l.replace(/\r$/, '')),
      );
      assert.equal(d.consoleDropped, lines * LINE_BYTES - CONSOLE_OUT_SIZE, 'every byte not kept is counted');
    } finally {
      await host.shutdown();
    }
  });
});

describe('console: ConsoleTerminal decoding', () => {
  it('a UTF-8 character split across two reads decodes once whole (streaming decoder)', async () => {
    const page = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    const w = new ConsoleWriter(page);
    const t = new ConsoleTerminal(page, { cols: 20, rows: 4 });
    const bytes = new TextEncoder().encode('µs ✓ done\r\npartial');
    const cut = 1; // inside the two bytes of 'µ'
    w.write(bytes.subarray(0, cut));
    t.drain();
    w.write(bytes.subarray(cut));
    t.drain();
    assert.deepEqual(t.lines, ['µs ✓ done']);
    assert.deepEqual(t.text, ['µs ✓ done', 'partial']);
    assert.deepEqual(await t.screen(), ['µs ✓ done', 'partial']);
    assert.deepEqual(await t.close(), ['µs ✓ done', 'partial']);
    assert.deepEqual(t.lines, ['µs ✓ done', 'partial'], 'close turns the partial last line into a line');
  });
});
