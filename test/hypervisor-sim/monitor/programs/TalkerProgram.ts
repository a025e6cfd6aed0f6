/**
 * Test program: says one line on its console, then waits until `args.stop[0]` is set (at most
 * 30 s), so a monitor can read its screen while it runs.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';

export default async function main(env: DomainEnv): Promise<string> {
  env.log(`hello from ${env.name}`);
  const stop = new Int32Array(env.args.stop as SharedArrayBuffer);
  const deadline = Date.now() + 30_000;
  // ORDERING: seq-cst load of the word the test stores before notifying.
  while (Atomics.load(stop, 0) === 0 && Date.now() < deadline) Atomics.wait(stop, 0, 0, 50);
  return 'bye';
}
