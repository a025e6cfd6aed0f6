/**
 * The adversary's actions, one per case (BlkTarget.ts picks it), each ending with its ring
 * audited. An action returns how many adversarial requests it put in front of the backend and
 * whether the ring must be replaced (halted for a protocol violation, or clobbered by a READ
 * the guest aimed at its own ring).
 *
 * - `batch`: 1–32 hostile slots (BlkSlotGen.ts) after forging the guest's raw grant entries; with
 *   `mutate`, the mutator Worker rewrites the slots' bodies and the indirect pages while the
 *   backend serves them (XSA-155): ids and operations stay put (words 0–3), so exactly-once and
 *   the echo are still checked, the status only as "not EOPNOTSUPP unless the op says so".
 * - `flood`: every free slot filled with cheap valid requests and the event channel notified
 *   hundreds of times, for several rounds (XSA-332/391/392); the honest neighbour is audited by
 *   the caller with a one-round budget.
 * - `stale`: req_prod moved forward over slots the guest did not rewrite (old requests and
 *   responses): legal, each must be answered as the model says.
 * - `overflow`: req_prod moved more than a ring's worth away (forward, or behind the consumer):
 *   XSA-39 — the backend must halt this ring, answer nothing more on it, and serve the others.
 */

import type { BlkBackend } from '../../backend/blk/BlkBackend.js';
import { BLKIF_SLOT_WORDS } from '../../protocol/blkif/BlkifSlot.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import type { Mutator, WordRange } from '../core/Mutator.js';
import type { AdvConnection } from './AdvConnection.js';
import type { AdvGuest } from './AdvGuest.js';
import { auditBatch } from './BlkAudit.js';
import type { BlkOracle, SlotExpect } from './BlkOracle.js';
import { cheapSlot, type GenContext, hostileSlot } from './BlkSlotGen.js';

/** What an action sees. */
export interface ActionWorld {
  readonly rng: Rng;
  readonly ctx: GenContext;
  readonly adv: AdvGuest;
  readonly conn: AdvConnection;
  readonly oracle: BlkOracle;
  readonly backend: BlkBackend;
  readonly mutator: Mutator | undefined;
  /** Case seed (the high id word, so responses of one case cannot pass for another's). */
  readonly seed: number;
  /** Serves rounds until no work is left (at most `max`); returns the rounds that did work. */
  serve(max: number): number;
  /** Halts of the adversary's ring since the connection was made, with their codes. */
  halts(): string[];
}

/** What an action did. */
export interface ActionResult {
  readonly requests: number;
  readonly violations: Violation[];
  /** The ring is dead or garbage: the caller reconnects a fresh adversary. */
  readonly reconnect: boolean;
  /** The guest READ into its own ring (the batch's answers were not checked). */
  readonly clobbered?: boolean;
}

const sent = new Int32Array(512 * BLKIF_SLOT_WORDS);

/** Writes `k` slots with `gen`, then expects them (the model reads what the backend will). */
function produce(a: ActionWorld, k: number, gen: typeof hostileSlot): SlotExpect[] {
  const { conn } = a;
  const first = conn.reqProd;
  for (let i = 0; i < k; i++) {
    const w = conn.slot(conn.reqProd);
    gen(a.ctx, conn.words, w);
    conn.words[w + 2] = (first + i) | 0;
    conn.words[w + 3] = a.seed | 0;
    conn.reqProd = (conn.reqProd + 1) >>> 0;
  }
  return expectRange(a, first, k);
}

/** The model's expectations for published-to-be slots `[first, first + k)`. */
function expectRange(a: ActionWorld, first: number, k: number): SlotExpect[] {
  const { conn } = a;
  a.oracle.begin(new Set(conn.ringFrames), a.ctx.sectors, a.ctx.ratio, a.ctx.readOnly);
  const out: SlotExpect[] = [];
  for (let i = 0; i < k; i++) {
    const w = conn.slot(first + i);
    sent.set(conn.words.subarray(w, w + BLKIF_SLOT_WORDS), i * BLKIF_SLOT_WORDS);
    out.push(a.oracle.expect(conn.words, w, i));
  }
  return out;
}

/** Publishes, serves and audits one batch. */
function finish(a: ActionWorld, rspBefore: number, expects: SlotExpect[], rounds: number): ActionResult {
  const { conn } = a;
  const haltsBefore = a.halts().length;
  conn.publish(conn.reqProd);
  if (a.rng.chance(0.5)) a.ctx.adv.dom.evtchn.notify(conn.port);
  a.serve(rounds);
  const halted = a.halts().length > haltsBefore;
  if (a.oracle.clobbered) {
    // The guest READ disk data over its own ring: nothing on it means anything any more.
    return { requests: expects.length, violations: [], reconnect: true, clobbered: true };
  }
  const violations = auditBatch(conn, rspBefore, expects, halted, sent);
  if (halted) {
    violations.push({
      signature: 'blk/ring:spurious-halt',
      detail: `the ring was halted (${a.halts().at(-1)}) though the guest published only ${expects.length} slots`,
    });
  }
  return { requests: expects.length, violations, reconnect: halted };
}

/** 1–32 hostile slots after forging grant entries, maybe with the mutator running. */
export function batch(a: ActionWorld, mutate: boolean): ActionResult {
  const { conn, rng } = a;
  const rspBefore = conn.rspProd();
  a.adv.forge(rng);
  const room = conn.size - conn.outstanding();
  // Mostly full batches (more of the ring per case), sometimes 1–4 slots (short reproducers).
  const k = Math.min(room, rng.chance(0.2) ? 1 + rng.below(4) : 8 + rng.below(25));
  const expects = produce(a, k, hostileSlot);
  const m = a.mutator;
  if (mutate && m !== undefined) {
    const ranges: WordRange[] = [];
    const ringWord = conn.ringAddr / 4;
    for (let i = 0; i < k; i++) ranges.push({ word: ringWord + conn.slot(rspBefore + i) + 4, words: 24 });
    for (let p = 0; p < a.adv.indFrames.length; p++) ranges.push({ word: a.adv.indWord(p), words: 1024 });
    // Under mutation the bodies are unknowable: only the operation byte still decides EOPNOTSUPP.
    for (const e of expects) if (e.expect !== 'eopnotsupp') e.expect = 'any';
    // Wait at most 2 ms for the Worker to wake: on a busy machine the run just overlaps less.
    m.run(ranges, a.seed, 2);
    try {
      return finish(a, rspBefore, expects, 8);
    } finally {
      m.pause();
    }
  }
  return finish(a, rspBefore, expects, 8);
}

/** Publishes the given slot words as they are (ids overwritten): for property tests. */
export function explicit(a: ActionWorld, slots: readonly Int32Array[]): ActionResult {
  const { conn } = a;
  const rspBefore = conn.rspProd();
  const k = Math.min(slots.length, conn.size - conn.outstanding());
  let next = 0;
  const copy = (_c: GenContext, dst: Int32Array, w: number): void => {
    dst.fill(0, w, w + BLKIF_SLOT_WORDS);
    dst.set(slots[next++].subarray(0, BLKIF_SLOT_WORDS), w);
  };
  return finish(a, rspBefore, produce(a, k, copy), 8);
}

/** Fills the ring with cheap valid requests and notifies, for several rounds. */
export function flood(a: ActionWorld): ActionResult {
  const { conn, rng } = a;
  let requests = 0;
  const violations: Violation[] = [];
  const rounds = 1 + rng.below(3);
  for (let r = 0; r < rounds; r++) {
    const rspBefore = conn.rspProd();
    const k = conn.size - conn.outstanding();
    const expects = produce(a, k, cheapSlot);
    for (let i = 0; i < 50; i++) a.ctx.adv.dom.evtchn.notify(conn.port);
    const res = finish(a, rspBefore, expects, Math.ceil(k / 64) + 2);
    requests += res.requests;
    violations.push(...res.violations);
    if (res.reconnect) return { requests, violations, reconnect: true };
  }
  return { requests, violations, reconnect: false };
}

/** Publishes 1..64 slots the guest did not rewrite. */
export function stale(a: ActionWorld): ActionResult {
  const { conn, rng } = a;
  const rspBefore = conn.rspProd();
  const room = conn.size - conn.outstanding();
  // At most 64: a whole 512-slot ring of the same leftovers says little more than 64 of them.
  const j = 1 + rng.below(Math.min(room, 64));
  const expects = expectRange(a, conn.reqProd, j);
  conn.reqProd = (conn.reqProd + j) >>> 0;
  return finish(a, rspBefore, expects, Math.ceil(j / 64) + 2);
}

/** Publishes a producer more than a ring away: the ring must be halted, nothing answered. */
export function overflow(a: ActionWorld): ActionResult {
  const { conn, rng } = a;
  const rspBefore = conn.rspProd();
  const span = 0x100000000 - conn.size - 1;
  const delta = rng.chance(0.5) ? conn.size + 1 + rng.below(span) : 0x100000000 - 1 - rng.below(64);
  const haltsBefore = a.halts().length;
  conn.publish((rspBefore + delta) >>> 0);
  a.serve(2);
  const violations: Violation[] = [];
  const halts = a.halts().slice(haltsBefore);
  if (halts.length === 0) {
    violations.push({
      signature: 'blk/ring:overflow-not-detected',
      detail: `req_prod ${(rspBefore + delta) >>> 0} with rsp_prod ${rspBefore} on a ${conn.size}-slot ring was served`,
    });
  } else if (!halts[0].includes('PV_ERR_RING_PROD_OVERFLOW')) {
    violations.push({ signature: 'blk/ring:wrong-halt', detail: halts[0] });
  }
  if (conn.rspProd() !== rspBefore) {
    violations.push({
      signature: 'blk/ring:served-after-overflow',
      detail: `rsp_prod moved ${rspBefore} → ${conn.rspProd()} after an overflowing req_prod`,
    });
  }
  return { requests: 1, violations, reconnect: true };
}
