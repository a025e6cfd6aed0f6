/**
 * A well-behaved virtio-rdma guest beside the hostile one (HostileVirtioGuest.ts):
 *  - `workload`: a loopback RDMA_WRITE workload whose every completion and byte is checked, run
 *    from the barrier `ready` (where the hostile `partner` starts breaking its own queue) until
 *    the partner's `broken` record arrives (it has seen DEVICE_NEEDS_RESET and reset), then
 *    for a few more rounds;
 *  - `leak`: registers MRs, CQs and QPs on two loopback QPs, leaves WRITEs outstanding and
 *    returns WITHOUT closing its device — the toolstack's unplug must clean up after it.
 */

import * as ibv from '../../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { SendFlags, WrOpcode } from '../../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../../protocol/Types.js';
import { loopWrites, openLoop, virtioProvider } from './VirtioRaw.js';

/** What `workload` observed. */
export interface WorkloadOut {
  /** WRITEs completed with SUCCESS (data checked) while the partner broke its queue, and after. */
  readonly during: { ok: number; problem: string | undefined };
  /** Rounds of SLOTS WRITEs run until the partner's `broken` record arrived. */
  readonly rounds: number;
  readonly after: { ok: number; problem: string | undefined };
  /** The partner's device status when it broke (sent at `broken`). */
  readonly partnerStatus: number;
  /** Refused and flushed WRs this guest saw (0: nothing of it was lost). */
  readonly refused: number;
  readonly flushed: number;
}

/** What `leak` left behind. */
export interface LeakOut {
  readonly first: { ok: number; problem: string | undefined };
  readonly mrs: number;
  readonly cqs: number;
  readonly qps: number;
  /** WRITEs posted and not waited for. */
  readonly outstanding: number;
}

/** WRITEs per round of the workload (one batch per QP depth). */
const SLOTS = 32;
const SIZE = 512;
/** Rounds after which the workload stops waiting for the partner's break (the test then fails). */
const MAX_ROUNDS = 20_000;

async function workload(env: DomainEnv): Promise<WorkloadOut> {
  const args = env.args as { partner: string; peers: Record<string, number> };
  const peer = args.peers[args.partner];
  const ctx = await ibv.openDevice(env);
  const p = virtioProvider(ctx);
  const l = openLoop(ctx, SLOTS, SIZE);
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'ready', info: { ready: 1 } });
  // The partner breaks its queue now. Rounds go on until its `broken` record arrives (it sends
  // it after DEVICE_NEEDS_RESET and its reset), so the break falls inside this workload.
  let partnerStatus: number | undefined;
  const broken = ibv
    .exchangeConnInfo(env, { peerDomid: peer, name: 'broken', info: { status: 0 }, timeoutMs: 60_000 })
    .then((r) => {
      partnerStatus = r.status;
    });
  const during = { ok: 0, problem: undefined as string | undefined };
  let rounds = 0;
  while (partnerStatus === undefined && during.problem === undefined && rounds < MAX_ROUNDS) {
    const r = loopWrites(ctx, l, SLOTS, SIZE, 1, 5 + rounds);
    during.ok += r.ok;
    during.problem = r.problem;
    rounds++;
    // Let the store's messages in (the rounds block this thread).
    await new Promise((resolve) => setImmediate(resolve));
  }
  await broken;
  const after = loopWrites(ctx, l, SLOTS, SIZE, 10, 6);
  const stats = p.stats;
  await ibv.closeDevice(ctx);
  return {
    during,
    rounds,
    after,
    partnerStatus: partnerStatus ?? -1,
    refused: stats.refused,
    flushed: stats.flushedWrs,
  };
}

async function leak(env: DomainEnv): Promise<LeakOut> {
  const ctx = await ibv.openDevice(env);
  const p = virtioProvider(ctx);
  const a = openLoop(ctx, 8, 4096);
  const b = openLoop(ctx, 8, 4096);
  const first = loopWrites(ctx, a, 8, 4096, 1, 9);
  const half = 8 * 4096;
  for (let i = 0; i < 8; i++) {
    ibv.postSend(b.qp, {
      wrId: i,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: (b.buf + i * 4096) as GuestPhysAddr, length: 4096, lkey: b.mr.lkey }],
      remoteAddr: b.buf + half + i * 4096,
      rkey: b.mr.rkey,
    });
  }
  p.flush();
  // No closeDevice: the domain ends with its device open and its objects registered.
  return { first, mrs: 2, cqs: 2, qps: 2, outstanding: p.outstandingWrs };
}

export default async function main(env: DomainEnv): Promise<WorkloadOut | LeakOut> {
  const mode = (env.args as { mode?: string }).mode;
  if (mode === 'workload') return workload(env);
  if (mode === 'leak') return leak(env);
  throw new Error(`unknown mode ${String(mode)}`);
}
