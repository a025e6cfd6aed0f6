/**
 * A hostile virtio-rdma guest (protocol/rdma/virtio/VirtioRdma.ts). It opens its device through
 * the verbs API and then goes around it, returning what it observed for the mocha suite to judge:
 *  - `refuse`: RegMr ranges outside its memory or past 2^53, CreateCq ring addresses that are
 *    unaligned / outside / 0, grant refs where virtio wants none (raw control commands), and data
 *    chains of the wrong shape added straight on the data virtqueue — with a loopback
 *    RDMA_WRITE workload before and after, which must keep working;
 *  - `break`: builds a session (PD, MR, CQ, QP, one WRITE), then breaks the data queue with a raw
 *    chain (`how`: a descriptor loop, or a descriptor whose address lies past its memory), waits
 *    for DEVICE_NEEDS_RESET, tries verbs (they must fail PV_ERR_DISCONNECTED), resets the device
 *    (Status 0) and closes. With `partner`, it breaks its queue right after meeting that guest at
 *    the barrier `ready` (the partner starts its workload there) and meets it again at `broken`.
 */

import * as ibv from '../../../../../frontend/verbs/index.js';
import { CtrlClient } from '../../../../../frontend/verbs/paravirt/CtrlClient.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { PV_DATA_SLOT_SIZE } from '../../../../../protocol/rdma/pv/PvConstants.js';
import { Access, SendFlags, WrOpcode } from '../../../../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../../protocol/Types.js';
import {
  codeOf,
  loopChain,
  loopWrites,
  openLoop,
  partsOf,
  publishRawDataChain,
  quiesce,
  type RawDesc,
  virtioProvider,
  waitNeedsReset,
} from './VirtioRaw.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What `refuse` observed. */
export interface RefuseOut {
  readonly memBytes: number;
  /** RegMr (through the provider) of ranges the guest does not have: each error code. */
  readonly mr: Record<string, string>;
  /** Raw CreateCq / RegMr commands: each error code ('ok' for the control case). */
  readonly cq: Record<string, string>;
  readonly regMrWithRefs: string;
  /** Loopback WRITEs after the refusals: 'ok' or the first problem. */
  readonly afterRefusals: string;
  /** The malformed chains: used length by token (−1: never used). */
  readonly malformedLens: Record<string, number>;
  /** Loopback WRITEs after the malformed chains. */
  readonly afterMalformed: string;
  /** WRs the channel saw refused (the raw chains never reach it: 0). */
  readonly channelRefused: number;
}

/** What `break` observed. */
export interface BreakOut {
  readonly before: string;
  /** Status read once the device reported the broken queue. */
  readonly status: number;
  /** Verbs after the break: each error code. */
  readonly after: Record<string, string>;
  readonly lost: boolean;
  /** The reset's verdict: the device's refusal code (undefined: applied) and the status after it. */
  readonly resetError: string | undefined;
  readonly resetStatus: number;
}

function verdict(r: { problem: string | undefined }): string {
  return r.problem ?? 'ok';
}

async function refuse(env: DomainEnv): Promise<RefuseOut> {
  const ctx = await ibv.openDevice(env);
  const p = virtioProvider(ctx);
  const ctrl = new CtrlClient(p.channel);
  const mem = env.hypercalls.memory;
  const size = mem.size;
  const pd = ibv.allocPd(ctx);
  const page = mem.allocPages(1);
  const lw = Access.LOCAL_WRITE;
  const regMr = (addr: number, length: number): string =>
    codeOf(() => p.regMr(pd.handle, addr as GuestPhysAddr, length, lw));
  const mr = {
    'past the end': regMr(size + 16 * PAGE_SIZE, PAGE_SIZE),
    'first byte past the end': regMr(size, 1),
    'straddling the end': regMr(size - PAGE_SIZE, 2 * PAGE_SIZE),
    'wrapping past 2^53': regMr(2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE),
    'last safe byte': regMr(Number.MAX_SAFE_INTEGER, 1),
    'wrapping past 2^64': regMr(2 ** 64 - PAGE_SIZE, 2 * PAGE_SIZE),
  };
  const createCq = (ringGpa: number, entries = 16, ringRefs: number[] = []): string =>
    codeOf(() => {
      const r = ctrl.get({ kind: 'createCq', entries, ringRefs, ringGpa }, 'cq');
      ctrl.run({ kind: 'destroyCq', cq: r.cq });
    });
  const cq = {
    'not page aligned': createCq(page + 64),
    'outside memory': createCq(size),
    'straddling the end': createCq(size - PAGE_SIZE, 1024),
    'past 2^53 (not a safe u64 on the wire)': createCq(2 ** 53 + PAGE_SIZE),
    'with ring refs': createCq(page, 16, [8]),
    'a page of its own (control)': createCq(page),
  };
  const regMrWithRefs = codeOf(() =>
    ctrl.get(
      { kind: 'regMr', pd: pd.handle, addr: page, length: PAGE_SIZE, access: lw, npages: 1, indirectRefs: [8] },
      'mr',
    ),
  );
  const slots = 8;
  const l = openLoop(ctx, slots, 1024);
  const afterRefusals = verdict(loopWrites(ctx, l, slots, 1024, 2, 1));

  // Chains of the wrong shape, added on the data queue itself with tokens the channel never uses.
  await quiesce(p);
  const q = partsOf(p).dataq;
  const scratch = mem.allocPages(1);
  const rsp = (scratch + 2048) as GuestPhysAddr;
  const shapes: Array<[string, number, number]> = [
    ['readable 64', 64, PV_DATA_SLOT_SIZE],
    ['readable 256', 256, PV_DATA_SLOT_SIZE],
    ['writable 64', PV_DATA_SLOT_SIZE, 64],
  ];
  const malformedLens: Record<string, number> = {};
  shapes.forEach(([name, rlen, wlen], i) => {
    q.addChain([{ addr: scratch, len: rlen }], [{ addr: rsp, len: wlen }], 1000 + i);
    malformedLens[name] = -1;
  });
  if (q.publish()) partsOf(p).driver.notify(1);
  const deadline = performance.now() + 10_000;
  for (let got = 0; got < shapes.length && performance.now() < deadline; ) {
    const u = q.getUsed();
    if (u === undefined) {
      await sleep(1);
      continue;
    }
    malformedLens[shapes[u.token - 1000][0]] = u.len;
    got++;
  }
  const afterMalformed = verdict(loopWrites(ctx, l, slots, 1024, 4, 2));
  const channelRefused = p.stats.refused;
  await ibv.closeDevice(ctx);
  return {
    memBytes: size,
    mr,
    cq,
    regMrWithRefs,
    afterRefusals,
    malformedLens,
    afterMalformed,
    channelRefused,
  };
}

async function breakQueue(env: DomainEnv): Promise<BreakOut> {
  const args = env.args as { how: 'loop' | 'addr'; partner?: string; peers: Record<string, number> };
  const ctx = await ibv.openDevice(env);
  const p = virtioProvider(ctx);
  const mem = env.hypercalls.memory;
  const l = openLoop(ctx, 4, 1024);
  const before = verdict(loopWrites(ctx, l, 4, 1024, 1, 3));
  const partner = args.partner === undefined ? undefined : args.peers[args.partner];
  if (partner !== undefined) {
    await ibv.exchangeConnInfo(env, { peerDomid: partner, name: 'ready', info: { ready: 1 } });
  }
  await quiesce(p);
  const scratch = mem.allocPages(1);
  // The last two descriptors: the driver hands them out only with 127 chains in flight (none now).
  const descs: RawDesc[] =
    args.how === 'loop'
      ? loopChain(scratch, 254, 255)
      : [{ index: 254, addr: mem.size, len: PV_DATA_SLOT_SIZE, flags: 0, next: 0 }];
  publishRawDataChain(p, descs, 254);
  const status = await waitNeedsReset(p);
  const after = {
    queryPort: codeOf(() => p.queryPort()),
    postSend: codeOf(() =>
      ibv.postSend(l.qp, {
        wrId: 99,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: l.buf, length: 64, lkey: l.mr.lkey }],
        remoteAddr: l.buf + 2048,
        rkey: l.mr.rkey,
      }),
    ),
    regMr: codeOf(() => ibv.regMr(l.mr.pd, l.buf, PAGE_SIZE, Access.LOCAL_WRITE)),
    createCq: codeOf(() => ibv.createCq(ctx, 16)),
  };
  const lost = p.lost;
  const reset = partsOf(p).driver.writeStatus(0);
  await ibv.closeDevice(ctx);
  if (partner !== undefined) {
    await ibv.exchangeConnInfo(env, { peerDomid: partner, name: 'broken', info: { status } });
  }
  return { before, status, after, lost, resetError: reset.error, resetStatus: reset.status };
}

export default async function main(env: DomainEnv): Promise<RefuseOut | BreakOut> {
  const mode = (env.args as { mode?: string }).mode;
  if (mode === 'refuse') return refuse(env);
  if (mode === 'break') return breakQueue(env);
  throw new Error(`unknown mode ${String(mode)}`);
}
