/**
 * The per-batch checks of the adversary's ring, on what the guest sees after serving: every
 * published request answered exactly once (counts: ExactlyOnce.ts), each response naming a
 * request that was published and not yet answered, its operation echoed, its padding zero
 * (byte 9 and bytes 12–15, XSA-216), and its status the one the model (BlkOracle.ts) predicts.
 *
 * Signatures: `blk/adv:double-response`, `blk/adv:unanswered-request`, `blk/adv:dirty-padding`,
 * `blk/rsp:unknown-id`, `blk/rsp:wrong-op`, `blk/status:accepted-invalid` (OKAY where the model
 * says ERROR — the backend served something it must refuse), `blk/status:refused-valid`,
 * `blk/status:wrong-code` (any other status mismatch).
 */

import { auditCounts, auditPadding } from '../core/ExactlyOnce.js';
import type { Violation } from '../core/FuzzTarget.js';
import type { AdvConnection } from './AdvConnection.js';
import type { Expect, SlotExpect } from './BlkOracle.js';

const OKAY = 0;
const ERROR = -1;
const EOPNOTSUPP = -2;

function accepts(e: Expect, status: number): boolean {
  switch (e) {
    case 'ok':
      return status === OKAY;
    case 'error':
      return status === ERROR;
    case 'eopnotsupp':
      return status === EOPNOTSUPP;
    default:
      return status === OKAY || status === ERROR;
  }
}

function statusSignature(e: Expect, status: number): string {
  if (e === 'error' && status === OKAY) return 'blk/status:accepted-invalid';
  if (e === 'ok' && status === ERROR) return 'blk/status:refused-valid';
  return 'blk/status:wrong-code';
}

/** Hex of the first words of a slot, for the reproducer's detail. */
export function slotHex(words: Int32Array, w: number, n = 8): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((words[w + i] >>> 0).toString(16));
  return out.join(' ');
}

/**
 * Audits the responses `[rspBefore, rsp_prod)` against `expects` (in publication order) and
 * advances `conn.rspCons` past them. `halted`: the backend halted this ring in the batch.
 */
export function auditBatch(
  conn: AdvConnection,
  rspBefore: number,
  expects: readonly SlotExpect[],
  halted: boolean,
  /** The published request words, 28 per slot in batch order (for the details). */
  sent: Int32Array,
): Violation[] {
  const rspAfter = conn.rspProd();
  const out = auditCounts('blk', 'adv', { rspBefore, reqProd: conn.reqProd, rspAfter, halted });
  const answered = Math.min((rspAfter - rspBefore) >>> 0, expects.length);
  const byId = new Map<string, SlotExpect[]>();
  for (const e of expects) {
    const key = `${e.idLo}:${e.idHi}`;
    const list = byId.get(key);
    if (list === undefined) byId.set(key, [e]);
    else list.push(e);
  }
  const words = conn.words;
  for (let i = 0; i < answered; i++) {
    const w = conn.slot(rspBefore + i);
    const w2 = words[w + 2];
    const pad = auditPadding('blk', 'adv', words, w, 3, 4);
    if (pad !== undefined) out.push(pad);
    if (((w2 >>> 8) & 0xff) !== 0) {
      out.push({
        signature: 'blk/adv:dirty-padding',
        detail: `response byte 9 is 0x${((w2 >>> 8) & 0xff).toString(16)}`,
      });
    }
    const idLo = words[w] >>> 0;
    const idHi = words[w + 1] >>> 0;
    const op = w2 & 0xff;
    const status = w2 >> 16;
    const list = byId.get(`${idLo}:${idHi}`);
    if (list === undefined || list.length === 0) {
      out.push({
        signature: 'blk/rsp:unknown-id',
        detail: `response ${i} id ${idHi.toString(16)}:${idLo.toString(16)} names no outstanding request`,
      });
      continue;
    }
    let at = list.findIndex((e) => e.op === op && accepts(e.expect, status));
    if (at < 0) at = 0;
    const e = list[at];
    list.splice(at, 1);
    if (e.op !== op) {
      out.push({
        signature: 'blk/rsp:wrong-op',
        detail: `response op ${op} to a request with op ${e.op}: ${slotHex(sent, e.pos * 28)}`,
      });
    } else if (!accepts(e.expect, status)) {
      out.push({
        signature: statusSignature(e.expect, status),
        detail: `status ${status}, the model says ${e.expect}, request words: ${slotHex(sent, e.pos * 28, 16)}`,
      });
    }
  }
  conn.rspCons = rspAfter;
  return out;
}
