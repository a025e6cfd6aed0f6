/**
 * The adversarial actions of the rdma target, one function per kind of case. Each writes into
 * the adversary's own rings exactly what a hostile guest could, lets the backend serve, and
 * returns what it put in front of the backend and what the guest-visible checks found:
 * exactly-once answers (ExactlyOnce.ts), responses that echo the request and have zero padding,
 * and — for index jumps — that the ring was halted rather than served.
 */

import { codeFromStatus, ERROR_CATALOGUE } from '../../protocol/errors.js';
import type { CtrlCodec } from '../../protocol/rdma/pv/CtrlCodec.js';
import { readCtrlSlot, writeCtrlSlot } from '../../protocol/rdma/pv/CtrlCodec.js';
import { decodeDataResponse, emptyDataResponse, PvDataRspWord } from '../../protocol/rdma/pv/DataSlot.js';
import { PV_CTRL_SLOT_WORDS, PV_DATA_SLOT_WORDS } from '../../protocol/rdma/pv/PvConstants.js';
import { join64 } from '../../protocol/rdma/Wqe.js';
import type { FrontRing } from '../../protocol/ring/FrontRing.js';
import { RingWord } from '../../protocol/ring/Layout.js';
import { auditCounts, auditPadding } from '../core/ExactlyOnce.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import type { Mutator } from '../core/Mutator.js';
import type { Adversary } from './Adversary.js';
import { type CtrlRequestBytes, genCtrlRequest } from './CtrlGen.js';
import { genDataSlot, type Victim } from './DataGen.js';

/** What a case function needs from the target. */
export interface CaseEnv {
  readonly adv: Adversary;
  readonly victim: Victim;
  readonly codec: CtrlCodec;
  readonly mutator: Mutator;
  /** One serving round of the backend (never throws: a throw is recorded by the target). */
  serve(): void;
  /** Rings halted so far. */
  halted(): number;
  /** Requests the backend deferred for the adversary so far (backpressure). */
  deferrals(): number;
  nextSeq(): number;
}

/** What one action did. */
export interface ActionResult {
  requests: number;
  violations: Violation[];
  /** The backend ended one of the adversary's rings (legitimately or not; the target decides). */
  halted: boolean;
  /**
   * The backend holds a request deferred (the adversary overfilled its own device queue or
   * bounce space): its ring waits behind it, which is backpressure on that guest only.
   */
  stalled?: boolean;
}

const KNOWN_STATUS = new Set<number>(Object.values(ERROR_CATALOGUE).map((e) => e.status));

/** rsp_prod of a ring, as the guest sees it. */
function rspProd(ring: FrontRing): number {
  // ORDERING: seq-cst load of the backend's published producer.
  return Atomics.load(ring.words, RingWord.RSP_PROD) >>> 0;
}

/** Serves until `want` responses are published past `from`, the ring halts, or progress stops. */
function serveUntil(env: CaseEnv, ring: FrontRing, from: number, want: number, halts0: number): void {
  let idle = 0;
  let last = rspProd(ring);
  for (let i = 0; i < 400 && idle < 40; i++) {
    if ((rspProd(ring) - from) >>> 0 >= want || env.halted() > halts0) return;
    env.serve();
    const now = rspProd(ring);
    idle = now === last ? idle + 1 : 0;
    last = now;
  }
}

/** Takes `n` responses off the front ring (keeps its private indices in step). */
function consume(ring: FrontRing, n: number): void {
  for (let i = 0; i < n; i++) ring.consumeResponse();
}

/**
 * A batch of hostile data requests (random and structured), optionally with the mutator
 * rewriting the slots (and the indirect page) while the backend reads them.
 */
export function dataCase(env: CaseEnv, rng: Rng, withMutator: boolean): ActionResult {
  const n = 1 + rng.below(env.adv.provider.channel.data.freeRequests());
  const slots: Int32Array[] = [];
  for (let k = 0; k < n; k++) {
    const q = new Int32Array(PV_DATA_SLOT_WORDS);
    genDataSlot(rng, q, env.adv, env.victim);
    slots.push(q);
  }
  return dataBatch(env, slots, withMutator ? rng.u32() : undefined);
}

/**
 * Publishes `slots` (each PV_DATA_SLOT_WORDS words, at most the ring's free slots) on the
 * adversary's data ring, serves (with the mutator running if `mutatorSeed` is given), and checks
 * the answers: exactly one per request unless the ring was halted; without the mutator each
 * response echoes its request's op, QP and wr_id, carries a catalogue status and zero padding.
 */
export function dataBatch(env: CaseEnv, slots: readonly Int32Array[], mutatorSeed?: number): ActionResult {
  const { adv } = env;
  const ring = adv.provider.channel.data;
  adv.provider.channel.drainData();
  const before = rspProd(ring);
  const halts0 = env.halted();
  const n = slots.length;
  for (const q of slots) {
    const w = ring.nextRequestSlot();
    ring.words.set(q, w);
    ring.commitRequest();
  }
  ring.pushRequests();
  const reqProd = (before + n) >>> 0;
  const deferrals0 = env.deferrals();
  if (mutatorSeed !== undefined) {
    env.mutator.run([adv.dataSlotRange(), adv.indirectRange(), adv.bufRange()], mutatorSeed);
    for (let i = 0; i < 3; i++) env.serve();
    env.mutator.pause();
  }
  serveUntil(env, ring, before, n, halts0);
  const after = rspProd(ring);
  const halted = env.halted() > halts0;
  // A request still deferred is owed, not lost: the ring waits behind it (backpressure).
  const stalled = !halted && (after - before) >>> 0 < n && env.deferrals() > deferrals0;
  const v = auditCounts('rdma', 'data', { rspBefore: before, reqProd, rspAfter: after, halted: halted || stalled });
  const answered = Math.min((after - before) >>> 0, n);
  if (mutatorSeed === undefined) {
    const r = emptyDataResponse();
    for (let k = 0; k < answered; k++) {
      const w = ring.responseSlot();
      const q = slots[k];
      decodeDataResponse(ring.words, w, r);
      const wrId = join64(q[4], q[5] & 0x1fffff);
      if (r.op !== (q[0] & 0xff) || ring.words[w + PvDataRspWord.QP] !== q[1] || r.wrId !== wrId) {
        v.push({
          signature: 'rdma/data:response-mismatch',
          detail: `response ${k}: op ${r.op} qp ${r.qp} wr_id ${r.wrId}, request op ${q[0] >>> 0} qp ${q[1] >>> 0} wr_id ${wrId}`,
        });
      }
      if (r.status > 0 || !(r.status === 0 || KNOWN_STATUS.has(r.status))) {
        v.push({ signature: 'rdma/data:unknown-status', detail: `response ${k}: status ${r.status}` });
      }
      const pad = auditPadding('rdma', 'data', ring.words, w, PvDataRspWord.PAD, PV_DATA_SLOT_WORDS);
      if (pad) v.push(pad);
      if (((ring.words[w] >>> 8) & 0xff) !== 0) {
        v.push({ signature: 'rdma/data:dirty-padding', detail: `response ${k}: pad byte is not 0` });
      }
      ring.consumeResponse();
    }
  } else {
    consume(ring, answered);
  }
  return { requests: n, violations: v, halted, stalled };
}

/** One or two hostile control requests (the control ring has two slots). */
export function ctrlCase(env: CaseEnv, rng: Rng, withMutator: boolean): ActionResult {
  const ring = env.adv.provider.channel.ctrl;
  while (ring.unconsumedResponses() > 0) ring.consumeResponse();
  const n = 1 + rng.below(ring.freeRequests());
  const reqs: CtrlRequestBytes[] = [];
  for (let k = 0; k < n; k++) reqs.push(genCtrlRequest(rng, env.adv, env.codec, env.nextSeq()));
  return ctrlBatch(env, reqs, withMutator ? rng.u32() : undefined);
}

/**
 * Publishes `reqs` (at most the control ring's free slots) on the adversary's control ring,
 * serves (with the mutator rewriting the indirect page if `mutatorSeed` is given), and checks
 * the answers: exactly one per request unless halted, each a decodable response with zero
 * bytes after the message, the request's seq when it was well-formed, and a status that
 * matches its catalogue code.
 */
export function ctrlBatch(env: CaseEnv, reqs: readonly CtrlRequestBytes[], mutatorSeed?: number): ActionResult {
  const { adv } = env;
  const ring = adv.provider.channel.ctrl;
  while (ring.unconsumedResponses() > 0) ring.consumeResponse();
  const before = rspProd(ring);
  const halts0 = env.halted();
  const n = reqs.length;
  for (const g of reqs) {
    const w = ring.nextRequestSlot();
    writeCtrlSlot(ring.words, w, g.bytes);
    if (g.lengthWord !== undefined) ring.words[w] = g.lengthWord | 0;
    ring.commitRequest();
  }
  ring.pushRequests();
  if (mutatorSeed !== undefined) {
    env.mutator.run([adv.indirectRange()], mutatorSeed);
    env.serve();
    env.mutator.pause();
  }
  serveUntil(env, ring, before, n, halts0);
  const after = rspProd(ring);
  const halted = env.halted() > halts0;
  const v = auditCounts('rdma', 'ctrl', { rspBefore: before, reqProd: (before + n) >>> 0, rspAfter: after, halted });
  const answered = Math.min((after - before) >>> 0, n);
  for (let k = 0; k < answered; k++) {
    const w = ring.responseSlot();
    try {
      const bytes = readCtrlSlot(ring.words, w);
      const rsp = env.codec.decodeResponse(bytes);
      const seq = reqs[k].seq;
      if (seq !== undefined && rsp.seq !== seq) {
        v.push({ signature: 'rdma/ctrl:wrong-seq', detail: `response ${k}: seq ${rsp.seq}, request seq ${seq}` });
      }
      if (rsp.status !== 0 && codeFromStatus(rsp.status) !== rsp.code) {
        v.push({ signature: 'rdma/ctrl:bad-status', detail: `status ${rsp.status} with code ${rsp.code}` });
      }
      const used = 1 + Math.ceil(bytes.length / 4);
      const tailAt = ring.words.byteOffset + (w + 1) * 4 + bytes.length;
      const tail = new Uint8Array(ring.words.buffer, tailAt, 4 * used - 4 - bytes.length);
      const pad = tail.some((b) => b !== 0)
        ? { signature: 'rdma/ctrl:dirty-padding', detail: 'bytes after the message in its last word' }
        : auditPadding('rdma', 'ctrl', ring.words, w, used, PV_CTRL_SLOT_WORDS);
      if (pad) v.push(pad);
    } catch (err) {
      v.push({ signature: 'rdma/ctrl:undecodable-response', detail: String(err).slice(0, 200) });
    }
    ring.consumeResponse();
  }
  return { requests: n, violations: v, halted };
}

/**
 * XSA-39: a producer index the ring cannot hold (beyond the response window, or behind the
 * consumer). The backend must halt that ring without answering anything.
 */
export function jumpCase(env: CaseEnv, rng: Rng): ActionResult {
  const ring = env.adv.provider.channel.data;
  env.adv.provider.channel.drainData();
  const before = rspProd(ring);
  const halts0 = env.halted();
  const size = ring.size;
  const evil = rng.pick([
    before + size + 1 + rng.below(1000),
    before + 0x80000000,
    before - 1,
    before - 1 - rng.below(size),
    before + rng.edgeU32(),
  ]);
  const jump = ((evil >>> 0) - before) >>> 0;
  if (jump <= size) return { requests: 0, violations: [], halted: false }; // a legal index after all
  // ORDERING: seq-cst store of a hostile req_prod (what a guest's plain store would publish).
  Atomics.store(ring.words, RingWord.REQ_PROD, evil | 0);
  for (let i = 0; i < 4; i++) env.serve();
  const halted = env.halted() > halts0;
  const v: Violation[] = [];
  if (!halted) {
    v.push({ signature: 'rdma/ring:overflow-not-halted', detail: `req_prod ${evil >>> 0} with rsp_prod ${before}` });
  }
  if (rspProd(ring) !== before) {
    v.push({ signature: 'rdma/ring:answered-bogus-index', detail: `rsp_prod moved to ${rspProd(ring)}` });
  }
  return { requests: 1, violations: v, halted: true };
}

/**
 * Teardown with work in flight (XSA-331/350/371): a batch of requests is published and served
 * for one round only — some consumed, some posted to the device, some still on the ring — and
 * the target then closes the adversary's device under it and checks nothing stays mapped.
 */
export function inFlightCase(env: CaseEnv, rng: Rng): ActionResult {
  const { adv } = env;
  const ring = adv.provider.channel.data;
  adv.provider.channel.drainData();
  const n = 1 + rng.below(ring.freeRequests());
  const q = new Int32Array(PV_DATA_SLOT_WORDS);
  for (let k = 0; k < n; k++) {
    q.fill(0);
    genDataSlot(rng, q, adv, env.victim);
    ring.words.set(q, ring.nextRequestSlot());
    ring.commitRequest();
  }
  ring.pushRequests();
  env.serve();
  return { requests: n, violations: [], halted: false };
}

/** Event flooding (XSA-332): many notifications with nothing or a full ring behind them. */
export function floodCase(env: CaseEnv, rng: Rng): ActionResult {
  const port = env.adv.provider.channel.refs.port;
  const ev = env.adv.dom.hc.evtchn;
  const kicks = 100 + rng.below(1000);
  for (let i = 0; i < kicks; i++) ev.notify(port);
  env.serve();
  const r = dataCase(env, rng, false);
  for (let i = 0; i < kicks; i++) ev.notify(port);
  env.serve();
  return r;
}
