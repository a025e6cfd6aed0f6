/**
 * The fairness benchmark's flooder: a guest that keeps its ring ALWAYS full, and with mode
 * `kick` also notifies its event channel in a tight loop instead of ever sleeping (XSA-332/392
 * behaviour), until the neighbour says it is done.
 *  - blk: it writes its blkif ring itself (blkfront connects, then the program takes the ring):
 *    every free slot gets a 4 KiB READ of a random 4 KiB block into one granted page, then it
 *    publishes; each response is taken at once and its slot refilled.
 *  - rdma: over the real verbs API, a QP looped back to itself with `depth` 4 KiB RDMA WRITEs
 *    always posted (the data ring and the send queue stay full), in signaled chains of depth/2
 *    as ib_write_bw posts them; each completed chain is reposted.
 * Completed operations are added to the control record (Control.ts) for the neighbour to count.
 * Mode `hog` is the control: the guest spins its vCPU as `kick` does but never touches its
 * device, so the neighbour's loss beside it is the CPU a spinning guest takes on this machine.
 */

import { openBlkfront } from '../../frontend/blk/BlkConnect.js';
import * as ibv from '../../frontend/verbs/index.js';
import type { ParavirtProvider } from '../../frontend/verbs/paravirt/ParavirtProvider.js';
import { BlkifOp } from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SLOT_WORDS, encodeBlkifRequest } from '../../protocol/blkif/BlkifSlot.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { emptyWc, SendFlags, WcStatus, WrOpcode } from '../../protocol/rdma/Verbs.js';
import { DOM0, type DomId, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../protocol/Types.js';
import { FairWord, type FloodMode } from './Control.js';
import { loopbackQp } from './LoopbackQp.js';

/** Arguments of the program. */
export interface FlooderArgs {
  readonly backend: 'blk' | 'rdma';
  readonly mode: FloodMode;
  readonly ctl: SharedArrayBuffer;
  /** rdma: WRs kept posted (default 64). */
  readonly depth?: number;
}

/** What the program returns. */
export interface FlooderResult {
  readonly ops: number;
  readonly kicks: number;
}

/** Notifications per loop turn in `kick` mode. */
const KICKS_PER_TURN = 64;
/** Longest a flood may run if the neighbour never finishes. */
const MAX_MS = 120_000;

async function blk(env: DomainEnv, a: FlooderArgs, ctl: Int32Array): Promise<FlooderResult> {
  const hc = env.hypercalls;
  const att = env.devices.find((d) => d.kind === 'nvme');
  if (att === undefined) throw pvError('PV_ERR_CONFIG', 'the flooder has no vbd');
  const backend = (att.backendDomid ?? DOM0) as DomId;
  const vbd = await openBlkfront(hc, { backend, devid: att.devid ?? 0 });
  const f = vbd.front;
  const ring = f.ring;
  const page = hc.memory.allocPages(1);
  const gref = hc.grant.grantAccess(backend, gfnOf(page), false);
  const blocks = Math.floor(vbd.info.sectors / 8);
  const ev = hc.evtchn;
  let x = 0x9e3779b9;
  let ops = 0;
  let kicks = 0;
  let id = 0;
  const deadline = performance.now() + MAX_MS;
  // ORDERING: seq-cst load of the neighbour's DONE.
  while (Atomics.load(ctl, FairWord.DONE) === 0 && performance.now() < deadline) {
    let got = 0;
    while (ring.unconsumedResponses() > 0) {
      ring.consumeResponse();
      got++;
    }
    if (got > 0) {
      ops += got;
      // ORDERING: seq-cst add; the neighbour loads it at both ends of its timed phase.
      Atomics.add(ctl, FairWord.FLOOD_OPS, got);
    }
    while (!ring.isFull()) {
      const w = ring.nextRequestSlot();
      ring.words.fill(0, w, w + BLKIF_SLOT_WORDS);
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const sector = ((x >>> 0) % blocks) * 8;
      encodeBlkifRequest(ring.words, w, {
        op: BlkifOp.READ,
        idLo: id++ >>> 0,
        idHi: 0xf100d,
        sectorLo: sector,
        sectorHi: 0,
        handle: 0,
        segs: [{ gref, first: 0, last: 7 }],
      });
      ring.commitRequest();
    }
    f.push();
    // ORDERING: publish that the ring is full (once).
    if (Atomics.load(ctl, FairWord.FLOODING) === 0) Atomics.store(ctl, FairWord.FLOODING, 1);
    if (a.mode === 'kick') {
      for (let k = 0; k < KICKS_PER_TURN; k++) ev.notify(f.port);
      kicks += KICKS_PER_TURN;
      continue;
    }
    // Sleep until a response comes (as blkfront's wait does).
    const snapshot = ev.wakeSnapshot();
    ev.testAndClearPending(f.port);
    if (ring.finalCheckForResponses()) continue;
    ev.waitForEvent(snapshot, { spinBudget: 0, timeoutMs: 5 });
  }
  // Let the backend answer what is on the ring before the orderly close.
  const drainBy = performance.now() + 5000;
  while ((ring.reqProdPvt - ring.rspCons) >>> 0 > 0 && performance.now() < drainBy) {
    while (ring.unconsumedResponses() > 0) ring.consumeResponse();
    if ((ring.reqProdPvt - ring.rspCons) >>> 0 > 0) await new Promise((r) => setTimeout(r, 1));
  }
  await vbd.close();
  hc.grant.endAccess(gref);
  hc.memory.freePages(page, 1);
  // ORDERING: seq-cst store for the report.
  Atomics.store(ctl, FairWord.KICKS_K, Math.floor(kicks / 1000));
  return { ops, kicks };
}

async function rdma(env: DomainEnv, a: FlooderArgs, ctl: Int32Array): Promise<FlooderResult> {
  const ctx = await ibv.openDevice(env);
  const depth = a.depth ?? 64;
  let ops = 0;
  let kicks = 0;
  try {
    const { buf, mr, cq, qp } = loopbackQp(ctx, 2 * PAGE_SIZE, depth);
    const port = (ctx.provider as ParavirtProvider).channel.refs.port;
    // As ib_write_bw does (perftest's --cq-mod): WRs go in chains of `batch`, and only the last
    // of each chain is signaled, so one CQE retires the chain. The guest then spends little CPU
    // per WR and keeps its queue full with the least effort — the strongest flood a guest on a
    // 2-core machine can sustain without taking the CPU the backend and the neighbour run on.
    const batch = Math.max(1, depth >> 1);
    const chain = Array.from({ length: batch }, (_, i) => ({
      wrId: i,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: i === batch - 1 ? SendFlags.SIGNALED : 0,
      sgList: [{ addr: buf, length: PAGE_SIZE, lkey: mr.lkey }],
      remoteAddr: (buf + PAGE_SIZE) as GuestPhysAddr,
      rkey: mr.rkey,
    }));
    const wcs = Array.from({ length: depth }, emptyWc);
    let posted = 0;
    const deadline = performance.now() + MAX_MS;
    // ORDERING: seq-cst load of the neighbour's DONE.
    while (Atomics.load(ctl, FairWord.DONE) === 0 && performance.now() < deadline) {
      while (posted + batch <= depth) {
        ibv.postSend(qp, chain);
        posted += batch;
      }
      // ORDERING: publish that the queue is full (once).
      if (Atomics.load(ctl, FairWord.FLOODING) === 0) Atomics.store(ctl, FairWord.FLOODING, 1);
      const n = ibv.pollCq(cq, depth, wcs);
      for (let i = 0; i < n; i++) {
        if (wcs[i].status !== WcStatus.SUCCESS)
          throw pvError('PV_ERR_RDMA_BAD_STATE', `flood WR status ${wcs[i].status}`);
      }
      posted -= n * batch;
      ops += n * batch;
      // ORDERING: seq-cst add; the neighbour loads it at both ends of its timed phase.
      if (n > 0) Atomics.add(ctl, FairWord.FLOOD_OPS, n * batch);
      if (a.mode === 'kick') {
        for (let k = 0; k < KICKS_PER_TURN; k++) env.hypercalls.evtchn.notify(port);
        kicks += KICKS_PER_TURN;
      } else if (posted + batch > depth) {
        // The queue is full: sleep until a chain completes instead of spinning. The flooder
        // stands for a guest on its own vCPU; spinning would only take this 2-core machine's CPU
        // from the backend and the neighbour (CPU scheduling, not backend fairness). The
        // backend still always has at least `depth − batch` of its WRs queued.
        ibv.waitCq(cq, { timeoutMs: 5, spinBudget: 0 });
      }
    }
    // Reap what is still posted before closing.
    const drainBy = performance.now() + 5000;
    while (posted > 0 && performance.now() < drainBy) {
      const n = ibv.pollCq(cq, depth, wcs);
      posted -= n * batch;
      if (n === 0) ibv.waitCq(cq, { timeoutMs: 5 });
    }
  } finally {
    await ibv.closeDevice(ctx);
  }
  // ORDERING: seq-cst store for the report.
  Atomics.store(ctl, FairWord.KICKS_K, Math.floor(kicks / 1000));
  return { ops, kicks };
}

/** Spins until the neighbour is done, with no I/O at all (the `hog` control). */
function hog(ctl: Int32Array): FlooderResult {
  // ORDERING: seq-cst store: the "flood" (a busy vCPU) is on.
  Atomics.store(ctl, FairWord.FLOODING, 1);
  const deadline = performance.now() + MAX_MS;
  // ORDERING: seq-cst load of the neighbour's DONE.
  while (Atomics.load(ctl, FairWord.DONE) === 0 && performance.now() < deadline) {
    // Busy: the work a kicking guest does, minus the kicks.
  }
  return { ops: 0, kicks: 0 };
}

export default async function main(env: DomainEnv): Promise<FlooderResult> {
  const a = env.args as unknown as FlooderArgs;
  const ctl = new Int32Array(a.ctl);
  if (a.mode === 'hog') return hog(ctl);
  return a.backend === 'rdma' ? rdma(env, a, ctl) : blk(env, a, ctl);
}
