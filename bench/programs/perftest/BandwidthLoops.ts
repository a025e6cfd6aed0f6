/**
 * perftest's bandwidth loops (run_iter_bw / run_iter_bw_server). The client keeps `txDepth`
 * messages of `size` bytes in flight — RDMA WRITEs (write_bw), RDMA READs of the server's buffer
 * (read_bw) or SENDs (send_bw) — signaling every `cqMod`-th and the last, until `iters` have
 * completed, recording every post and completion time for perftest's peak.
 *
 * The write_bw and read_bw servers only serve. The send_bw server keeps `rxDepth` receives
 * posted (perftest's rx depth, 512), posts each consumed one again as soon as it polls it, and
 * returns credits: after each batch it RDMA-WRITEs its running count of re-posted receives into
 * the client's credit word, and the client never posts SEND k unless k < rxDepth + credits, so a
 * SEND always finds a receive. perftest needs no credits because real HCAs retry RNR forever
 * (rnr_retry 7); pvio's NIC gives up after 7 × min_rnr_timer (≈ 1 ms), shorter than a time
 * slice the scheduler may take from the server thread. The credits make the client stall where
 * the hardware would have stalled, instead of failing.
 *
 * Under -D the client posts until the duration is over (then up to the next signaled message,
 * so a CQE covers everything posted) and counts the messages completed inside the window.
 */

import * as ibv from '../../../frontend/verbs/index.js';
import { SendFlags, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import { adaptiveWait } from '../../../protocol/wait.js';
import { DurationClock } from './DurationClock.js';
import { check, drainSends, pollSends, recvWr, type Session, YIELD_MS, yieldToEventLoop } from './Session.js';

/** What a bandwidth loop measured (client) or did (server). */
export interface BandwidthOutcome {
  /** Messages completed (client) or received (send_bw server). */
  readonly iters: number;
  readonly seconds?: number;
  readonly tposted?: number[];
  readonly tcompleted?: number[];
  readonly windowIters?: number;
  readonly windowSeconds?: number;
}

/** Credit WRITEs the send_bw server may have in flight (later ones carry newer counts anyway). */
const MAX_CREDIT_WRITES = 8;

/**
 * The credit word: 8 bytes at the start of the client's second half, `[count, ~count]` as two
 * Int32s. The pair makes a torn copy detectable (the reader keeps its last good count); the NIC
 * notifies the word holding the last byte it wrote, the check word, which is what a blocked
 * client sleeps on.
 */
function creditView(s: Session, at: GuestPhysAddr): { words: Int32Array; idx: number } {
  const mem = s.ctx.memory.view(at, 8);
  return { words: new Int32Array(mem.buffer), idx: mem.byteOffset >> 2 };
}

function messageWr(s: Session, id: number): ibv.SendWr {
  const sgList = [{ addr: s.buf, length: s.size, lkey: s.mr.lkey }];
  const remote = { remoteAddr: s.remoteAddr, rkey: s.remoteRkey };
  if (s.args.test === 'read_bw') return { wrId: id, opcode: WrOpcode.RDMA_READ, sendFlags: 0, sgList, ...remote };
  if (s.args.test === 'send_bw') return { wrId: id, opcode: WrOpcode.SEND, sendFlags: 0, sgList };
  return { wrId: id, opcode: WrOpcode.RDMA_WRITE, sendFlags: 0, sgList, ...remote };
}

function client(s: Session): BandwidthOutcome {
  const a = s.args;
  const { txDepth, cqMod, wcs } = s;
  // RDMA READ carries no inline payload (the data comes back from the peer).
  const inline = a.test === 'read_bw' ? 0 : s.inline;
  const c = a.test === 'send_bw' ? creditView(s, (s.buf + s.half) as GuestPhysAddr) : undefined;
  let credits = 0;
  if (c) {
    // ORDERING: zeroed before our first SEND, hence before the server's first credit WRITE.
    Atomics.store(c.words, c.idx, 0);
    Atomics.store(c.words, c.idx + 1, 0);
  }
  /** Messages we may have posted in all: unlimited, or rxDepth + the credits returned. */
  const allowed = (): number => {
    if (!c) return Number.POSITIVE_INFINITY;
    // ORDERING: seq-cst loads; a mismatched pair is a copy in progress: keep the last good count.
    const v = Atomics.load(c.words, c.idx);
    if ((v ^ Atomics.load(c.words, c.idx + 1)) === -1) credits = v >>> 0;
    return s.rxDepth + credits;
  };
  const clock =
    a.durationS === undefined ? undefined : new DurationClock(performance.now(), a.durationS, a.marginS ?? 0);
  let limit = clock === undefined ? a.iters : Number.POSITIVE_INFINITY;
  const posts = clock === undefined ? new Float64Array(a.iters) : undefined;
  const comps = clock === undefined ? new Float64Array(a.iters) : undefined;
  const wrs = Array.from({ length: txDepth }, (_, i) => messageWr(s, i));
  let posted = 0;
  let completed = 0;
  let signaledUpTo = 0; // one past the last signaled message
  const t0 = performance.now();
  while (posted < limit || completed < posted) {
    const room = allowed();
    while (posted < limit && posted - completed < txDepth && posted < room) {
      const w = wrs[posted % txDepth];
      // Signal every cqMod-th WR and the last one, as perftest does.
      const signaled = (posted + 1) % cqMod === 0 || posted + 1 === limit;
      w.sendFlags = (signaled ? SendFlags.SIGNALED : 0) | inline;
      w.wrId = posted;
      if (posts) posts[posted] = performance.now();
      ibv.postSend(s.qp, w);
      posted++;
      if (signaled) signaledUpTo = posted;
    }
    const n = ibv.pollCq(s.scq, wcs.length, wcs);
    const now = n > 0 ? performance.now() : 0;
    for (let i = 0; i < n; i++) {
      check(wcs[i]);
      const upTo = wcs[i].wrId + 1;
      if (comps) for (let k = completed; k < upTo; k++) comps[k] = now;
      completed = upTo;
    }
    if (n > 0 && clock && limit === Number.POSITIVE_INFINITY && !clock.tick(now, completed)) {
      // Stop at the next signaled message, so one CQE covers everything posted.
      limit = Math.ceil(posted / cqMod) * cqMod;
    }
    if (n > 0) continue;
    if (signaledUpTo > completed) {
      if (!ibv.waitCq(s.scq, { timeoutMs: 1000, spinBudget: s.spinBudget })) {
        s.env.log(`${a.test}: no completion for 1 s (posted ${posted}, completed ${completed})`);
      }
    } else if (c && posted >= room) {
      // Out of credits with no CQE to come: sleep until the server's next credit WRITE lands.
      // ORDERING: snapshot the check word, re-read the pair, then wait for the word to change.
      const w = Atomics.load(c.words, c.idx + 1);
      if (allowed() === room) adaptiveWait(c.words, c.idx + 1, w, s.spinBudget, 1000);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (clock) return { iters: completed, seconds, windowIters: clock.windowIters, windowSeconds: clock.windowSeconds };
  return { iters: completed, seconds, tposted: Array.from(posts ?? []), tcompleted: Array.from(comps ?? []) };
}

/** send_bw server: replaces every consumed receive and returns credits until the client is done. */
async function sendServer(s: Session): Promise<BandwidthOutcome> {
  const wcs = s.wcs;
  const again = Array.from({ length: wcs.length }, (_, i) => recvWr(s, i));
  // The credit pair is written from the start of our (otherwise unused) first half.
  const src = creditView(s, s.buf);
  const creditWr: ibv.SendWr = {
    wrId: 0,
    opcode: WrOpcode.RDMA_WRITE,
    sendFlags: SendFlags.SIGNALED,
    sgList: [{ addr: s.buf, length: 8, lkey: s.mr.lkey }],
    remoteAddr: s.remoteAddr + s.half,
    rkey: s.remoteRkey,
  };
  let reposted = 0;
  let returned = 0;
  let outstanding = 0;
  let yieldAt = performance.now() + YIELD_MS;
  while (!s.peerDone) {
    const n = ibv.pollCq(s.rcq, wcs.length, wcs);
    if (n > 0) {
      for (let i = 0; i < n; i++) check(wcs[i]);
      // One doorbell for the whole batch.
      ibv.postRecv(s.qp, n === again.length ? again : again.slice(0, n));
      reposted += n;
    }
    if (outstanding > 0) outstanding -= pollSends(s);
    if (returned !== reposted && outstanding < MAX_CREDIT_WRITES) {
      // ORDERING: the receives were posted above, before the count that grants them is stored;
      // a WRITE still queued may read this newer pair, which is as true.
      Atomics.store(src.words, src.idx, reposted | 0);
      Atomics.store(src.words, src.idx + 1, ~reposted);
      ibv.postSend(s.qp, creditWr);
      returned = reposted;
      outstanding++;
    }
    if (n === 0) {
      // Credits waiting for a free WRITE slot: wait for a credit WRITE to complete instead.
      const cq = returned !== reposted ? s.scq : s.rcq;
      ibv.waitCq(cq, { timeoutMs: YIELD_MS, spinBudget: s.spinBudget });
    }
    if (performance.now() >= yieldAt) {
      await yieldToEventLoop();
      yieldAt = performance.now() + YIELD_MS;
    }
  }
  drainSends(s, outstanding, 'send_bw server');
  return { iters: reposted };
}

/** Runs the bandwidth test named in `s.args.test` (one of write_bw, read_bw, send_bw). */
export async function runBandwidth(s: Session): Promise<BandwidthOutcome> {
  if (s.role === 'client') return client(s);
  if (s.args.test === 'send_bw') return sendServer(s);
  return { iters: 0 };
}
