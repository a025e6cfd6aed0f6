/**
 * Test program: opens its NIC with the verbs API (native driver: register reads and mailbox
 * commands over MMIO), creates a PD and a CQ, says so on its console, then holds the device until
 * `args.stop[0]` is set (at most 30 s).
 */

import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';

export default async function main(env: DomainEnv): Promise<string> {
  const ctx = await ibv.openDevice(env);
  try {
    ibv.allocPd(ctx);
    ibv.createCq(ctx, 16);
    env.log('holding the NIC');
    const stop = new Int32Array(env.args.stop as SharedArrayBuffer);
    const deadline = Date.now() + 30_000;
    // ORDERING: seq-cst load of the word the test stores before notifying.
    while (Atomics.load(stop, 0) === 0 && Date.now() < deadline) Atomics.wait(stop, 0, 0, 50);
    return 'done';
  } finally {
    await ibv.closeDevice(ctx);
  }
}
