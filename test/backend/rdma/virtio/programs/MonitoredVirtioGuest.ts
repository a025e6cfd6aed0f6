/**
 * Guest for the monitor test: opens its virtio-rdma device, runs 4 rounds of 8 loopback WRITEs,
 * keeps the device open for `holdMs` so the host can read the queues' records, closes it, and
 * does all of that once more (a second session: its records must replace the first's).
 */

import * as ibv from '../../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { loopWrites, openLoop } from './VirtioRaw.js';

export default async function main(env: DomainEnv): Promise<{ ok: number; problem: string | undefined }> {
  const holdMs = (env.args as { holdMs?: number }).holdMs ?? 300;
  let ok = 0;
  for (let session = 0; session < 2; session++) {
    const ctx = await ibv.openDevice(env);
    const r = loopWrites(ctx, openLoop(ctx, 8, 256), 8, 256, 4, 3 + session);
    await new Promise((done) => setTimeout(done, holdMs));
    await ibv.closeDevice(ctx);
    if (r.problem !== undefined) return r;
    ok += r.ok;
  }
  return { ok, problem: undefined };
}
