/**
 * One side of the tcp transport tests: a Worker that plays a guest domain. It owns a real
 * SharedArrayGuestMemory, builds a DomainEnv around it (memory is all the tcp provider uses; the
 * other hypercalls throw if touched), loads the provider through `createProvider` exactly as the
 * verbs layer does, and then executes RPCs from the test: set up PD/MR/CQ/QP, connect, post work
 * requests, poll CQ rings with the Cq.ts functions, fill and verify buffers. Every wait is bounded.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { TcpProvider } from '../../../../../frontend/verbs/tcp/TcpProvider.js';
import { createProvider } from '../../../../../frontend/verbs/tcp/TcpProvider.js';
import { SharedArrayGuestMemory } from '../../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { toWireError } from '../../../../../protocol/errors.js';
import type { Hypercalls } from '../../../../../protocol/Hypercalls.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { CqWord, cqBytes, pollCqes, releaseCqes } from '../../../../../protocol/rdma/Cq.js';
import {
  emptyWc,
  type QpAttr,
  QpAttrMask,
  QpState,
  type RecvWr,
  type SendWr,
  type Wc,
} from '../../../../../protocol/rdma/Verbs.js';
import type { DomId, GuestPhysAddr } from '../../../../../protocol/Types.js';
import { adaptiveWait } from '../../../../../protocol/wait.js';
import { fillPattern, firstMismatch } from './pattern.js';

/** workerData of a peer. */
export interface PeerData {
  readonly memBytes: number;
  readonly name: string;
}

/** An endpoint created by `setup`. */
export interface Endpoint {
  readonly pd: number;
  readonly qp: number;
  readonly qpNum: number;
  readonly buf: number;
  readonly bufBytes: number;
  readonly mr: number;
  readonly lkey: number;
  readonly rkey: number;
  readonly sendCq: number;
  readonly recvCq: number;
}

/** Arguments of `setup`. */
export interface SetupArgs {
  readonly bufBytes: number;
  readonly access: number;
  readonly cqEntries: number;
  readonly sendWr: number;
  readonly recvWr: number;
  readonly sigAll: boolean;
}

/** Arguments of `connect` (RESET → INIT → RTR → RTS). */
export interface ConnectArgs {
  readonly qp: number;
  readonly destQpNum: number;
  readonly dlid: number;
  readonly access: number;
  readonly rnrRetry?: number;
  readonly minRnrTimer?: number;
  readonly retryCnt?: number;
  readonly timeout?: number;
  /** Stop after this state (default RTS). */
  readonly upTo?: QpState;
}

interface CqState {
  readonly words: Int32Array;
  readonly entries: number;
  cons: number;
}

const memory = { current: undefined as SharedArrayGuestMemory | undefined };
const cqs = new Map<number, CqState>();
let provider: TcpProvider;

function unavailable<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get() {
      throw new Error(`${what} is not available to the tcp test peer`);
    },
  });
}

/** RESET → INIT → RTR → RTS with the attributes RC requires. */
function connect(a: ConnectArgs): void {
  const up = a.upTo ?? QpState.RTS;
  const init: QpAttr = { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: a.access };
  provider.modifyQp(a.qp, init, QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS);
  if (up === QpState.INIT) return;
  const rtr: QpAttr = {
    qpState: QpState.RTR,
    pathMtu: 5,
    destQpNum: a.destQpNum,
    rqPsn: 0,
    maxDestRdAtomic: 1,
    minRnrTimer: a.minRnrTimer ?? 1,
    ahAttr: { dlid: a.dlid },
  };
  provider.modifyQp(
    a.qp,
    rtr,
    QpAttrMask.STATE |
      QpAttrMask.AV |
      QpAttrMask.PATH_MTU |
      QpAttrMask.DEST_QPN |
      QpAttrMask.RQ_PSN |
      QpAttrMask.MAX_DEST_RD_ATOMIC |
      QpAttrMask.MIN_RNR_TIMER,
  );
  if (up === QpState.RTR) return;
  const rts: QpAttr = {
    qpState: QpState.RTS,
    sqPsn: 0,
    maxRdAtomic: 1,
    retryCnt: a.retryCnt ?? 7,
    rnrRetry: a.rnrRetry ?? 7,
    timeout: a.timeout ?? 8,
  };
  provider.modifyQp(
    a.qp,
    rts,
    QpAttrMask.STATE |
      QpAttrMask.SQ_PSN |
      QpAttrMask.MAX_QP_RD_ATOMIC |
      QpAttrMask.RETRY_CNT |
      QpAttrMask.RNR_RETRY |
      QpAttrMask.TIMEOUT,
  );
}

function setup(a: SetupArgs): Endpoint {
  const mem = memory.current!;
  const pd = provider.allocPd();
  const buf = mem.allocPages(Math.ceil(a.bufBytes / 4096));
  const mr = provider.regMr(pd, buf, a.bufBytes, a.access);
  const sendCq = provider.createCq(a.cqEntries);
  const recvCq = provider.createCq(a.cqEntries);
  for (const cq of [sendCq, recvCq]) {
    cqs.set(cq.handle, {
      words: new Int32Array(mem.buffer, cq.ring, cqBytes(cq.entries) / 4),
      entries: cq.entries,
      cons: 0,
    });
  }
  const cap = { maxSendWr: a.sendWr, maxRecvWr: a.recvWr, maxSendSge: 5, maxRecvSge: 3, maxInlineData: 64 };
  const qp = provider.createQp({ pd, sendCq: sendCq.handle, recvCq: recvCq.handle, cap, sqSigAll: a.sigAll });
  return {
    pd,
    qp: qp.handle,
    qpNum: qp.qpNum,
    buf,
    bufBytes: a.bufBytes,
    mr: mr.handle,
    lkey: mr.lkey,
    rkey: mr.rkey,
    sendCq: sendCq.handle,
    recvCq: recvCq.handle,
  };
}

/** Polls `count` completions from a CQ ring, sleeping on PROD between polls; bounded. */
function poll(cqn: number, count: number, timeoutMs: number): Wc[] {
  const cq = cqs.get(cqn);
  if (!cq) throw new Error(`no CQ ${cqn}`);
  const got: Wc[] = [];
  const scratch = [emptyWc()];
  const deadline = performance.now() + timeoutMs;
  while (got.length < count) {
    if (pollCqes(cq.words, cq.entries, cq.cons, scratch, 1) === 1) {
      cq.cons = (cq.cons + 1) >>> 0;
      releaseCqes(cq.words, cq.cons);
      got.push({ ...scratch[0] });
      continue;
    }
    const left = deadline - performance.now();
    if (left <= 0) break;
    // ORDERING: arm, then re-check PROD inside adaptiveWait (Dekker pair with produceCqe).
    Atomics.store(cq.words, CqWord.ARMED, 1);
    adaptiveWait(cq.words, CqWord.PROD, cq.cons | 0, 200, Math.min(left, 50));
  }
  return got;
}

/** CQ header words the tests look at. */
function cqInfo(cqn: number): { prod: number; cons: number; overflow: number } {
  const cq = cqs.get(cqn)!;
  return {
    // ORDERING: seq-cst loads of words the NIC publishes with Atomics.store.
    prod: Atomics.load(cq.words, CqWord.PROD) >>> 0,
    cons: cq.cons,
    // ORDERING: seq-cst load; the NIC sets OVERFLOW before dropping a CQE.
    overflow: Atomics.load(cq.words, CqWord.OVERFLOW),
  };
}

function waitStat(index: number, atLeast: number, timeoutMs: number): boolean {
  const deadline = performance.now() + timeoutMs;
  while (provider.stats()[index] < atLeast) {
    if (performance.now() > deadline) return false;
  }
  return true;
}

type Handler = (a: never) => unknown;

const handlers: Record<string, Handler> = {
  setup: (a: SetupArgs) => setup(a),
  connect: (a: ConnectArgs) => connect(a),
  modify: (a: { qp: number; attr: QpAttr; mask: number }) => provider.modifyQp(a.qp, a.attr, a.mask),
  regMr: (a: { pd: number; addr: number; len: number; access: number }) =>
    provider.regMr(a.pd, a.addr as GuestPhysAddr, a.len, a.access),
  deregMr: (a: { mr: number }) => provider.deregMr(a.mr),
  fill: (a: { addr: number; len: number; seed: number; from?: number }) =>
    fillPattern(memory.current!.bytes, a.addr, a.len, a.seed, a.from),
  verify: (a: { addr: number; len: number; seed: number; from?: number }) =>
    firstMismatch(memory.current!.bytes, a.addr, a.len, a.seed, a.from),
  post: (a: { qp: number; wrs: SendWr[] }) => {
    for (const wr of a.wrs) provider.postSend(a.qp, wr);
    provider.flush();
  },
  postRecv: (a: { qp: number; wrs: RecvWr[] }) => {
    for (const wr of a.wrs) provider.postRecv(a.qp, wr);
    provider.flush();
  },
  /** Waits until counter `stat` reaches `atLeast`, then posts the receives at once (RNR recovery). */
  postRecvWhen: (a: { qp: number; wrs: RecvWr[]; stat: number; atLeast: number }) => {
    if (!waitStat(a.stat, a.atLeast, 10_000)) throw new Error('counter never reached');
    for (const wr of a.wrs) provider.postRecv(a.qp, wr);
    provider.flush();
  },
  poll: (a: { cq: number; count: number; timeoutMs?: number }) => poll(a.cq, a.count, a.timeoutMs ?? 15_000),
  cqInfo: (a: { cq: number }) => cqInfo(a.cq),
  /** Waits (bounded, 1 ms naps) for a CQ's overflow flag; returns it. */
  waitOverflow: (a: { cq: number }) => {
    const nap = new Int32Array(new SharedArrayBuffer(4));
    // ORDERING: a 1 ms nap on a private word nobody notifies (the flag has no wake-up of its own).
    for (let i = 0; i < 10_000 && cqInfo(a.cq).overflow === 0; i++) Atomics.wait(nap, 0, 0, 1);
    return cqInfo(a.cq).overflow;
  },
  query: (a: { qp: number }) => provider.queryQp(a.qp),
  stats: () => provider.stats(),
  destroyQp: (a: { qp: number }) => provider.destroyQp(a.qp),
  freePages: () => memory.current!.freePageCount(),
  close: async () => {
    await provider.close();
    return memory.current!.freePageCount();
  },
};

async function main(data: PeerData): Promise<void> {
  const port = parentPort!;
  const mem = SharedArrayGuestMemory.create(1 as DomId, data.memBytes);
  memory.current = mem;
  const hypercalls: Hypercalls = {
    domid: 1 as DomId,
    memory: mem,
    grant: unavailable('grant'),
    evtchn: unavailable('evtchn'),
    store: unavailable('store'),
  };
  const logs: string[] = [];
  const env: DomainEnv = {
    domid: 1 as DomId,
    name: data.name,
    hypercalls,
    devices: [],
    args: {},
    log: (line) => logs.push(line),
  };
  provider = (await createProvider(env, { device: 'rnic-tcp', kind: 'rdma-nic', transport: 'tcp' })) as TcpProvider;
  port.on('message', async (m: { id: number; op: string; args: never }) => {
    try {
      const value = await handlers[m.op](m.args);
      port.postMessage({ id: m.id, ok: true, value, logs: logs.splice(0) });
    } catch (err) {
      port.postMessage({ id: m.id, ok: false, error: toWireError(err), logs: logs.splice(0) });
    }
  });
  port.postMessage({ id: 0, ok: true, value: { port: provider.portId, freePages: mem.freePageCount() } });
}

if (!isMainThread) void main(workerData as PeerData);
