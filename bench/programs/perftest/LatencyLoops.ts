/**
 * perftest's latency loops (reference §1.4). The client timestamps every post; a sample is the
 * delta between consecutive posts, i.e. one full iteration:
 *
 *  - `write_lat` (run_iter_lat_write): ping-pong of RDMA WRITEs. Each side writes its buffer
 *    into the peer's second half, the last byte carrying the message count, and waits until its
 *    own last byte shows the peer's count (spinning, then sleeping on that word: the NIC wakes it).
 *  - `send_lat` (run_iter_lat_send): ping-pong of SENDs. Both sides pre-posted receives; the
 *    client sends first, the server answers when its RECV completes; each consumed receive is
 *    posted again at once.
 *  - `read_lat` (run_iter_lat): the client posts one signaled RDMA READ and polls its completion
 *    before posting the next; the server only serves.
 *
 * Under -D the client runs until the duration is over (DurationClock) and the server of a
 * ping-pong answers until the client's done notice arrives.
 */

import * as ibv from '../../../frontend/verbs/index.js';
import { SendFlags, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { adaptiveWait } from '../../../protocol/wait.js';
import { DurationClock } from './DurationClock.js';
import { check, drainSends, pollSends, recvWr, type Session, YIELD_MS, yieldToEventLoop } from './Session.js';

/** What a latency loop measured (client) or did (server). */
export interface LatencyOutcome {
  /** Iterations run (round trips or READs). */
  readonly iters: number;
  /** Iteration mode, client: iters − 1 deltas between posts, µs. */
  readonly rttUs?: number[];
  readonly windowIters?: number;
  readonly windowSeconds?: number;
}

/** Signaled sends a ping-pong side may leave unpolled before it must reap them. */
const MAX_OUTSTANDING = 16;

/** How one ping-pong moves a message: post it, notice the peer's, or sleep until it may come. */
interface PingPongOps {
  post(n: number): void;
  /** Consumes message `n` of the peer if it has arrived. */
  arrived(n: number): boolean;
  /** Spins, then sleeps up to `timeoutMs` until message `n` may have arrived. */
  wait(n: number, timeoutMs: number): void;
}

function writeOps(s: Session): PingPongOps {
  const mem = s.ctx.memory.view(s.buf, 2 * s.half);
  const last = s.size - 1;
  const pollAt = s.half + s.size - 1;
  // The Int32 word holding the polled byte: where the NIC's write lands last and notifies.
  const wordIdx = (mem.byteOffset + pollAt) >> 2;
  const words = new Int32Array(mem.buffer);
  const wr: ibv.SendWr = {
    wrId: 1,
    opcode: WrOpcode.RDMA_WRITE,
    sendFlags: SendFlags.SIGNALED | s.inline,
    sgList: [{ addr: s.buf, length: s.size, lkey: s.mr.lkey }],
    remoteAddr: s.remoteAddr + s.half,
    rkey: s.remoteRkey,
  };
  return {
    post(n) {
      mem[last] = (n + 1) & 0xff;
      ibv.postSend(s.qp, wr);
    },
    arrived: (n) => mem[pollAt] === ((n + 1) & 0xff),
    wait(n, timeoutMs) {
      const want = (n + 1) & 0xff;
      // ORDERING: snapshot the word, re-check the byte, then wait for the word to change;
      // the NIC stores the payload before it notifies the word, so no wake-up is lost.
      const w = Atomics.load(words, wordIdx);
      if (mem[pollAt] !== want) adaptiveWait(words, wordIdx, w, s.spinBudget, timeoutMs);
    },
  };
}

function sendOps(s: Session): PingPongOps {
  const wr: ibv.SendWr = {
    wrId: 2,
    opcode: WrOpcode.SEND,
    sendFlags: SendFlags.SIGNALED | s.inline,
    sgList: [{ addr: s.buf, length: s.size, lkey: s.mr.lkey }],
  };
  const rwc = [ibv.emptyWc()];
  const again = recvWr(s, 3);
  return {
    post: () => ibv.postSend(s.qp, wr),
    arrived() {
      if (ibv.pollCq(s.rcq, 1, rwc) === 0) return false;
      check(rwc[0]);
      // Replace the consumed receive at once: the queue never runs dry, whatever the run length.
      ibv.postRecv(s.qp, again);
      return true;
    },
    wait(_n, timeoutMs) {
      ibv.waitCq(s.rcq, { timeoutMs, spinBudget: s.spinBudget });
    },
  };
}

/**
 * The ping-pong both sides run: the client posts when it holds every reply, the server when it
 * owes one. Iteration mode stops at `iters`; under -D the client stops at the end of the duration
 * (after a complete round trip) and the server when the client's done notice has arrived.
 */
async function pingPong(s: Session, ops: PingPongOps): Promise<LatencyOutcome> {
  const client = s.role === 'client';
  const a = s.args;
  const clock =
    a.durationS === undefined ? undefined : new DurationClock(performance.now(), a.durationS, a.marginS ?? 0);
  const serveUntilDone = clock !== undefined && !client;
  let limit = clock === undefined ? a.iters : Number.POSITIVE_INFINITY;
  const posts = clock === undefined && client ? new Float64Array(a.iters) : undefined;
  let scnt = 0;
  let rcnt = 0;
  let outstanding = 0;
  let yieldAt = performance.now() + YIELD_MS;
  for (;;) {
    if (scnt < limit && outstanding < MAX_OUTSTANDING && (client ? rcnt === scnt : rcnt > scnt)) {
      if (posts) posts[scnt] = performance.now();
      ops.post(scnt);
      scnt++;
      outstanding++;
    }
    if (client ? rcnt < scnt : rcnt < limit) {
      if (ops.arrived(rcnt)) {
        rcnt++;
        if (clock && client && rcnt === scnt && !clock.tick(performance.now(), rcnt)) limit = scnt;
      } else if (outstanding === 0) ops.wait(rcnt, serveUntilDone ? YIELD_MS : 1000);
    }
    if (outstanding > 0) outstanding -= pollSends(s);
    if (client) {
      if (scnt >= limit && rcnt === scnt) break;
    } else if (serveUntilDone ? s.peerDone && rcnt === scnt : rcnt === limit && scnt === limit) break;
    if (serveUntilDone && performance.now() >= yieldAt) {
      await yieldToEventLoop();
      yieldAt = performance.now() + YIELD_MS;
    }
  }
  drainSends(s, outstanding, a.test);
  return outcome(client ? scnt : rcnt, posts, clock);
}

/** read_lat: one signaled READ at a time, its completion polled before the next post. */
function readLat(s: Session): LatencyOutcome {
  const a = s.args;
  if (s.role === 'server') return { iters: 0 };
  const clock =
    a.durationS === undefined ? undefined : new DurationClock(performance.now(), a.durationS, a.marginS ?? 0);
  const posts = clock === undefined ? new Float64Array(a.iters) : undefined;
  const wr: ibv.SendWr = {
    wrId: 4,
    opcode: WrOpcode.RDMA_READ,
    sendFlags: SendFlags.SIGNALED,
    sgList: [{ addr: s.buf, length: s.size, lkey: s.mr.lkey }],
    remoteAddr: s.remoteAddr,
    rkey: s.remoteRkey,
  };
  let n = 0;
  for (;;) {
    if (posts) {
      if (n === a.iters) break;
      posts[n] = performance.now();
    }
    ibv.postSend(s.qp, wr);
    while (pollSends(s) === 0) {
      if (!ibv.waitCq(s.scq, { timeoutMs: 1000, spinBudget: s.spinBudget }))
        s.env.log('read_lat: no completion for 1 s');
    }
    n++;
    if (clock && !clock.tick(performance.now(), n)) break;
  }
  return outcome(n, posts, clock);
}

function outcome(iters: number, posts: Float64Array | undefined, clock: DurationClock | undefined): LatencyOutcome {
  if (clock) return { iters, windowIters: clock.windowIters, windowSeconds: clock.windowSeconds };
  if (!posts) return { iters };
  const rttUs: number[] = [];
  for (let i = 1; i < posts.length; i++) rttUs.push((posts[i] - posts[i - 1]) * 1000);
  return { iters, rttUs };
}

/** Runs the latency test named in `s.args.test` (one of write_lat, send_lat, read_lat). */
export async function runLatency(s: Session): Promise<LatencyOutcome> {
  switch (s.args.test) {
    case 'write_lat':
      return pingPong(s, writeOps(s));
    case 'send_lat':
      return pingPong(s, sendOps(s));
    default:
      return readLat(s);
  }
}
