/**
 * perftest's six RC tests as one guest program, unchanged across transports: `write_lat`,
 * `write_bw`, `read_lat`, `read_bw`, `send_lat`, `send_bw` (ib_*_lat / ib_*_bw). Two guests,
 * "server" and "client", exchange QPN/rkey/address through the store (perftest's out-of-band
 * exchange), pre-post receives when the test uses SEND, meet once more when both QPs are in RTS,
 * run the test's loop (perftest/LatencyLoops.ts, perftest/BandwidthLoops.ts), and trade an end
 * record before closing so neither tears down a QP the other still uses. Servers that loop until
 * the client is finished (send_bw; the ping-pongs under -D) learn it from a one-way "done" notice
 * the client publishes after its loop (Session.ts, `needsDoneNotice`).
 *
 * Returns raw samples (µs) or timestamps and totals; statistics are computed by the caller.
 */

import * as ibv from '../../frontend/verbs/index.js';
import { pvError } from '../../protocol/errors.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { Access, SendFlags } from '../../protocol/rdma/Verbs.js';
import { stages } from '../../protocol/stage/StageLedger.js';
import { runBandwidth } from './perftest/BandwidthLoops.js';
import { runLatency } from './perftest/LatencyLoops.js';
import {
  DEF_RX_DEPTH,
  LAT_SPIN_BUDGET,
  needsDoneNotice,
  type PerftestArgs,
  type PerftestResult,
  type PerftestTestName,
  recvWr,
  type Session,
} from './perftest/Session.js';

export type { PerftestArgs, PerftestResult, PerftestTestName } from './perftest/Session.js';

const ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
/** How long an exchange may wait for the peer; the scenario's own timeout is the real bound. */
const DAY_MS = 86_400_000;
const TESTS: readonly PerftestTestName[] = ['write_lat', 'write_bw', 'read_lat', 'read_bw', 'send_lat', 'send_bw'];

function validate(a: PerftestArgs): void {
  if (!TESTS.includes(a.test)) throw pvError('PV_ERR_INVALID_ARG', `unknown perftest test '${String(a.test)}'`);
  if (!Number.isInteger(a.size) || a.size < 1) throw pvError('PV_ERR_INVALID_ARG', `size ${a.size} must be ≥ 1`);
  if (a.durationS === undefined && (!Number.isInteger(a.iters) || a.iters < 3)) {
    // A latency row needs iters − 1 > LAT_MEASURE_TAIL samples; bandwidth at least one message.
    throw pvError('PV_ERR_INVALID_ARG', `iters ${a.iters} must be an integer ≥ 3 (or give durationS)`);
  }
}

async function openSession(env: DomainEnv, a: PerftestArgs): Promise<Session> {
  const role = (env.args as { self: 'client' | 'server' }).self;
  const peers = (env.args as { peers: Record<string, number> }).peers;
  const peer = peers[role === 'client' ? 'server' : 'client'];
  const size = a.size;
  const isBw = a.test.endsWith('_bw');
  const usesRecv = a.test.startsWith('send_');
  // INVARIANT: validate() ran, so under iteration mode a.iters ≥ 3 bounds the clamps below.
  const cap = a.durationS === undefined ? a.iters : Number.POSITIVE_INFINITY;
  const txDepth = Math.min(a.txDepth ?? (isBw ? 128 : 1), cap);
  const cqMod = Math.max(1, Math.min(a.cqMod ?? 100, txDepth));
  const rxDepth = usesRecv ? (a.rxDepth ?? DEF_RX_DEPTH) : 0;
  const tag = a.tag ?? `${a.test}-${size}`;
  const inlineSize = a.test.startsWith('read_') ? 0 : (a.inlineSize ?? 0);

  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const half = Math.ceil(Math.max(size, 64) / 4096) * 4096;
  const buf = ctx.allocBuffer(2 * half);
  const mr = ibv.regMr(pd, buf, 2 * half, ACCESS);
  const scq = ibv.createCq(ctx, Math.max(txDepth * 2, 16));
  // Room for every posted receive: a CQ that overflows loses completions (and fails the run).
  const rcq = ibv.createCq(ctx, Math.max(rxDepth + 16, 16));
  const qp = ibv.createQp(pd, {
    sendCq: scq,
    recvCq: rcq,
    cap: {
      maxSendWr: Math.max(txDepth, 16),
      maxRecvWr: Math.max(rxDepth, 16),
      maxSendSge: 1,
      maxRecvSge: 1,
      maxInlineData: inlineSize,
    },
    sqSigAll: false,
  });
  const remote = await ibv.exchangeConnInfo(env, {
    peerDomid: peer,
    name: `pt-${tag}`,
    info: { lid: ctx.portId, qpn: qp.qpNum, rkey: mr.rkey, addr: buf },
  });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, ACCESS);

  let peerDone = false;
  let doneError: unknown;
  let doneP: Promise<void> | undefined;
  // The peer may be a whole run away (a long -n or -D): wait as long as the scenario lets us.
  const exchange = (name: string) =>
    ibv.exchangeConnInfo(env, { peerDomid: peer, name: `pt-${tag}-${name}`, info: { [name]: 1 }, timeoutMs: DAY_MS });
  const s: Session = {
    env,
    args: a,
    role,
    tag,
    ctx,
    mr,
    buf,
    half,
    size,
    scq,
    rcq,
    qp,
    remoteAddr: remote.addr,
    remoteRkey: remote.rkey,
    inline: size <= inlineSize ? SendFlags.INLINE : 0,
    txDepth,
    cqMod,
    rxDepth,
    spinBudget: a.spinBudget ?? (isBw ? ibv.DEFAULT_SPIN_BUDGET : LAT_SPIN_BUDGET),
    wcs: Array.from({ length: 64 }, () => ibv.emptyWc()),
    done() {
      doneP ??= exchange('done').then(
        () => {
          peerDone = true;
        },
        (err: unknown) => {
          doneError = err;
          throw err;
        },
      );
      return doneP;
    },
    get peerDone() {
      if (doneError !== undefined) throw doneError;
      return peerDone;
    },
    end: () => exchange('end').then(() => {}),
  };
  // Receives go up before the peer may send: the RTS exchange below orders them before any SEND.
  const initial = Array.from({ length: rxDepth }, (_, i) => recvWr(s, i));
  if (initial.length > 0) ibv.postRecv(qp, initial);
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: `pt-${tag}-rts`, info: { ready: 1 } });
  return s;
}

export default async function main(env: DomainEnv): Promise<PerftestResult> {
  const a = env.args as unknown as PerftestArgs;
  validate(a);
  const s = await openSession(env, a);
  const notice = needsDoneNotice(a);
  // The server watches for the notice while it loops; a failure surfaces through s.peerDone.
  if (notice && s.role === 'server') s.done().catch(() => {});
  // The per-stage breakdown (pvio compare, instrumented runs) covers the measured loop only, not
  // device setup and the store exchange. The client measures, so its loop is the window (a passive
  // server's loop may end first); both calls do nothing unless the host enabled the ledgers.
  if (s.role === 'client') stages.openWindow();
  const r = a.test.endsWith('_lat') ? await runLatency(s) : await runBandwidth(s);
  if (s.role === 'client') stages.closeWindow();
  if (notice && s.role === 'client') await s.done();
  await s.end();
  await ibv.closeDevice(s.ctx);
  const { iters: ran, ...measured } = r;
  return {
    role: s.role,
    transport: s.ctx.transport,
    test: a.test,
    size: a.size,
    iters: a.durationS === undefined ? a.iters : ran,
    // Only the client measures; the server's loop counts are of no use to the caller.
    ...(s.role === 'client' ? measured : {}),
  };
}
