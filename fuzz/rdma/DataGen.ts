/**
 * Generators of data-ring slots (DataSlot.ts layout: op, qp, two reserved words, then a send
 * WQE's 28 used words or a receive WQE's 16). Three flavours, mixed per slot:
 *  - random: every word random, sometimes with a valid op and QP handle so the WQE checks run;
 *  - structured: a well-formed POST_SEND or POST_RECV on the adversary's own QPs, then a few
 *    fields replaced by hostile values — opcodes and flags outside the whitelist, SGE counts
 *    beyond the QP's caps, addresses near 2^53 and 2^64, lengths near 2^32, keys of the
 *    read-only MR, of the honest guests, or invented;
 *  - foreign: aimed at the honest guests' handles, keys and addresses.
 */

import { PvDataOp, PvDataReqWord } from '../../protocol/rdma/pv/DataSlot.js';
import { PV_DATA_SLOT_WORDS } from '../../protocol/rdma/pv/PvConstants.js';
import { SendFlags, WrOpcode } from '../../protocol/rdma/Verbs.js';
import { RecvWqeWord, SendWqeWord, SGE_WORDS } from '../../protocol/rdma/Wqe.js';
import type { Rng } from '../core/FuzzTarget.js';
import type { Adversary } from './Adversary.js';

/** What the generators aim at besides the adversary's own objects. */
export interface Victim {
  readonly qpHandle: number;
  readonly lkey: number;
  readonly rkey: number;
  readonly addr: number;
  readonly length: number;
}

const W = PvDataReqWord.WQE;

/** An address: inside a region, at its edges, beyond it, or hostile. */
function addrNear(rng: Rng, base: number, length: number): number {
  switch (rng.below(6)) {
    case 0:
      return base + rng.below(length);
    case 1:
      return base + length - rng.below(8);
    case 2:
      return base + length + rng.below(4096);
    case 3:
      return Math.max(0, base - 1 - rng.below(4096));
    case 4:
      return rng.pick([0, 2 ** 53 - 1, 2 ** 52, 2 ** 32 - 1, 2 ** 32]);
    default:
      return rng.u32() + rng.below(0x200000) * 0x100000000;
  }
}

function put64(q: Int32Array, at: number, v: number): void {
  q[at] = (v % 0x100000000) | 0;
  q[at + 1] = Math.floor(v / 0x100000000) | 0;
}

/** A length: small, page-sized, or near 2^32. */
function lengthOf(rng: Rng, max: number): number {
  return rng.chance(0.6) ? 1 + rng.below(max) : rng.edgeU32();
}

/** Writes one SGE at word `at`. */
function sge(rng: Rng, q: Int32Array, at: number, adv: Adversary, victim: Victim): void {
  const pick = rng.below(8);
  const own = pick < 5;
  const base = own ? adv.buf : pick === 5 ? adv.roCanary.addr : victim.addr;
  const len = own ? adv.mr.length : pick === 5 ? adv.roMr.length : victim.length;
  put64(q, at, addrNear(rng, base, len));
  q[at + 2] = lengthOf(rng, 8192) | 0;
  q[at + 3] = (own ? adv.mr.lkey : pick === 5 ? adv.roMr.lkey : rng.chance(0.5) ? victim.lkey : rng.edgeU32()) | 0;
}

function structuredSend(rng: Rng, q: Int32Array, adv: Adversary, victim: Victim): void {
  const op = rng.chance(0.9) ? rng.below(5) : rng.edgeU32() & 0xff;
  let flags = rng.chance(0.8) ? SendFlags.SIGNALED : rng.below(256);
  const inline = op !== WrOpcode.RDMA_READ && rng.chance(0.1);
  if (inline) flags |= SendFlags.INLINE;
  const nsge = inline ? 0 : rng.chance(0.85) ? 1 + rng.below(3) : rng.below(256);
  q[W + SendWqeWord.WR_ID_LO] = rng.u32() | 0;
  q[W + SendWqeWord.WR_ID_HI] = rng.below(0x200000);
  q[W + SendWqeWord.OP_FLAGS_NSGE] = op | (flags << 8) | (nsge << 16) | (rng.chance(0.05) ? 1 << 24 : 0);
  q[W + SendWqeWord.IMM] = rng.u32() | 0;
  const remote = rng.below(4);
  if (remote === 0) {
    put64(q, W + SendWqeWord.RADDR_LO, addrNear(rng, victim.addr, victim.length));
    q[W + SendWqeWord.RKEY] = victim.rkey | 0;
  } else if (remote === 1) {
    put64(q, W + SendWqeWord.RADDR_LO, addrNear(rng, adv.roCanary.addr, adv.roMr.length));
    q[W + SendWqeWord.RKEY] = adv.roMr.rkey | 0;
  } else {
    put64(q, W + SendWqeWord.RADDR_LO, addrNear(rng, adv.buf, adv.mr.length));
    q[W + SendWqeWord.RKEY] = (rng.chance(0.9) ? adv.mr.rkey : rng.edgeU32()) | 0;
  }
  q[W + SendWqeWord.INLINE_LEN] = inline ? (rng.chance(0.8) ? rng.below(65) : rng.edgeU32()) | 0 : 0;
  for (let i = 0; i < 5; i++) {
    const at = W + SendWqeWord.SGE + i * SGE_WORDS;
    if (inline) for (let k = 0; k < SGE_WORDS; k++) q[at + k] = rng.u32() | 0;
    else if (i < nsge || rng.chance(0.1)) sge(rng, q, at, adv, victim);
  }
}

function structuredRecv(rng: Rng, q: Int32Array, adv: Adversary, victim: Victim): void {
  const nsge = rng.chance(0.85) ? 1 + rng.below(3) : rng.below(256);
  q[W + RecvWqeWord.WR_ID_LO] = rng.u32() | 0;
  q[W + RecvWqeWord.WR_ID_HI] = rng.below(0x200000);
  q[W + RecvWqeWord.NSGE] = nsge | (rng.chance(0.05) ? 1 << 8 : 0);
  q[W + RecvWqeWord.PAD] = rng.chance(0.05) ? rng.u32() | 0 : 0;
  for (let i = 0; i < 3; i++) if (i < nsge) sge(rng, q, W + RecvWqeWord.SGE + i * SGE_WORDS, adv, victim);
}

/** Fills `q` (one slot, PV_DATA_SLOT_WORDS words, zeroed by the caller) with a hostile request. */
export function genDataSlot(rng: Rng, q: Int32Array, adv: Adversary, victim: Victim): void {
  const kind = rng.below(10);
  if (kind < 2) {
    for (let i = 0; i < PV_DATA_SLOT_WORDS; i++) q[i] = rng.chance(0.3) ? rng.edgeU32() | 0 : rng.u32() | 0;
    if (rng.chance(0.5)) {
      q[PvDataReqWord.OP] = rng.chance(0.5) ? PvDataOp.POST_SEND : PvDataOp.POST_RECV;
      q[PvDataReqWord.QP] = rng.pick(adv.qps).handle;
      q[PvDataReqWord.RESERVED0] = 0;
      q[PvDataReqWord.RESERVED1] = 0;
    }
    return;
  }
  const send = rng.chance(0.6);
  q[PvDataReqWord.OP] = rng.chance(0.95) ? (send ? PvDataOp.POST_SEND : PvDataOp.POST_RECV) : rng.edgeU32() | 0;
  const h = rng.below(20);
  q[PvDataReqWord.QP] = (h === 0 ? victim.qpHandle : h === 1 ? rng.edgeU32() : rng.pick(adv.qps).handle) | 0;
  q[PvDataReqWord.RESERVED0] = rng.chance(0.03) ? rng.u32() | 0 : 0;
  q[PvDataReqWord.RESERVED1] = rng.chance(0.03) ? rng.u32() | 0 : 0;
  if (send) structuredSend(rng, q, adv, victim);
  else structuredRecv(rng, q, adv, victim);
}
