/**
 * Test program: writes to its console the way real guests do, by `args.mode`:
 *  - 'ansi': env.log lines with SGR colours, a carriage-return overwrite, a cursor movement
 *    (CSI A / CSI C / CSI B) with a clear-line (CSI K), UTF-8 text, then console.log of an object;
 *  - 'bulk': `args.lines` numbered lines, far more than the ring holds (the host must keep up);
 *  - 'flood': the same while the host is not reading at all; then it raises `args.done[0]` so a
 *    host that blocked its own thread until then knows the guest's writes returned.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';

/** The env.log lines of 'ansi' mode (the test compares Domain.console with these). */
export const ANSI_LINES = [
  '\x1b[1;31mred alert\x1b[0m and \x1b[32mgreen\x1b[0m',
  'progress 10%\rprogress 100%',
  'first line is long',
  // Back to column 0, up one row, right six, overwrite, clear the rest, back down.
  'second line\r\x1b[1A\x1b[6Cupdated\x1b[K\x1b[1B',
  'naïve µs ✓',
];

export default async function main(env: DomainEnv): Promise<unknown> {
  const mode = env.args.mode as string;
  if (mode === 'ansi') {
    for (const line of ANSI_LINES) env.log(line);
    console.log({ a: 1, nested: { b: 'x' } });
    return 'ok';
  }
  const n = env.args.lines as number;
  for (let i = 0; i < n; i++) env.log(`line ${String(i).padStart(5, '0')} ${'.'.repeat(50)}`);
  if (mode === 'flood') {
    const done = new Int32Array(env.args.done as SharedArrayBuffer);
    // ORDERING: after every write returned; the host sleeps in Atomics.wait on this word.
    Atomics.store(done, 0, 1);
    Atomics.notify(done, 0);
  }
  return n;
}
