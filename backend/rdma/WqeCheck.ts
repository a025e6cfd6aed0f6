/**
 * Validation of a guest's WQE on the backend's PRIVATE copy of a data-ring slot (the RingServer
 * copied the slot once; nothing here reads shared memory). Returns 0 or the catalogue status the
 * request is answered with, and sanitises the copy in place so only what was checked reaches the
 * device: words of SGEs beyond num_sge, the remote address of a SEND and the immediate of a
 * non-IMM opcode are zeroed. Sanitising is idempotent, so a deferred request re-checks the same.
 *
 * Send rules: opcode ∈ {RDMA_WRITE, RDMA_WRITE_WITH_IMM, SEND, SEND_WITH_IMM, RDMA_READ};
 * flags ⊆ {FENCE, SIGNALED, SOLICITED, INLINE}; pad byte 0; INLINE: not RDMA_READ, num_sge 0,
 * inline_len ≤ the QP's max_inline_data; otherwise num_sge ≤ the QP's max_send_sge and each used
 * SGE address a safe integer. Receive rules: num_sge ≤ max_recv_sge, pad bytes 0, used SGE
 * addresses safe. Keys are NOT checked here: they pass through unchanged to the NIC, which
 * checks that an MR's PD matches the QP's PD (another guest's lkey fails there with
 * LOC_PROT_ERR, in order) — except in copy mode, where CopyEngine resolves lkeys itself.
 * Allocation-free.
 */

import { ERROR_CATALOGUE } from '../../protocol/errors.js';
import { type QpCap, SendFlags, WrOpcode } from '../../protocol/rdma/Verbs.js';
import { MAX_RECV_SGE, MAX_SEND_SGE, RecvWqeWord, SendWqeWord, SGE_WORDS } from '../../protocol/rdma/Wqe.js';

const BAD_WR = ERROR_CATALOGUE.PV_ERR_RDMA_BAD_WR.status;
const BAD_LENGTH = ERROR_CATALOGUE.PV_ERR_BAD_LENGTH.status;
const BAD_MEMORY = ERROR_CATALOGUE.PV_ERR_RDMA_BAD_MEMORY.status;
/** Send flags a guest may set. */
const FLAGS_MASK = SendFlags.FENCE | SendFlags.SIGNALED | SendFlags.SOLICITED | SendFlags.INLINE;
/** High word of an address at or above this is not a safe integer (2^53). */
const UNSAFE_HI = 0x200000;

/** Zeroes SGE slots from `from` to `max` (exclusive) of the SGE area at word `base`. */
function zeroSges(q: Int32Array, base: number, from: number, max: number): void {
  for (let i = from * SGE_WORDS; i < max * SGE_WORDS; i++) q[base + i] = 0;
}

/** True when the used SGEs' addresses are safe integers. */
function sgeAddrsSafe(q: Int32Array, base: number, nsge: number): boolean {
  for (let i = 0; i < nsge; i++) if (q[base + i * SGE_WORDS + 1] >>> 0 >= UNSAFE_HI) return false;
  return true;
}

/** Checks a send WQE at word `w` of the private copy against the QP's granted caps. */
export function checkSendWqe(q: Int32Array, w: number, cap: QpCap): number {
  const opw = q[w + SendWqeWord.OP_FLAGS_NSGE];
  const op = opw & 0xff;
  const flags = (opw >>> 8) & 0xff;
  const nsge = (opw >>> 16) & 0xff;
  if (opw >>> 24 !== 0) return BAD_WR;
  if (op > WrOpcode.RDMA_READ) return BAD_WR;
  if ((flags & ~FLAGS_MASK) !== 0) return BAD_WR;
  const rdma = op === WrOpcode.RDMA_WRITE || op === WrOpcode.RDMA_WRITE_WITH_IMM || op === WrOpcode.RDMA_READ;
  const base = w + SendWqeWord.SGE;
  if ((flags & SendFlags.INLINE) !== 0) {
    if (op === WrOpcode.RDMA_READ || nsge !== 0) return BAD_WR;
    if (q[w + SendWqeWord.INLINE_LEN] >>> 0 > cap.maxInlineData) return BAD_LENGTH;
  } else {
    if (nsge > cap.maxSendSge) return BAD_LENGTH;
    if (!sgeAddrsSafe(q, base, nsge)) return BAD_MEMORY;
    q[w + SendWqeWord.INLINE_LEN] = 0;
    zeroSges(q, base, nsge, MAX_SEND_SGE);
  }
  if (rdma) {
    if (q[w + SendWqeWord.RADDR_HI] >>> 0 >= UNSAFE_HI) return BAD_WR;
  } else {
    q[w + SendWqeWord.RADDR_LO] = 0;
    q[w + SendWqeWord.RADDR_HI] = 0;
    q[w + SendWqeWord.RKEY] = 0;
  }
  if (op !== WrOpcode.RDMA_WRITE_WITH_IMM && op !== WrOpcode.SEND_WITH_IMM) q[w + SendWqeWord.IMM] = 0;
  return 0;
}

/** Checks a receive WQE at word `w` of the private copy against the QP's granted caps. */
export function checkRecvWqe(q: Int32Array, w: number, cap: QpCap): number {
  const nw = q[w + RecvWqeWord.NSGE];
  const nsge = nw & 0xff;
  if (nw >>> 8 !== 0 || q[w + RecvWqeWord.PAD] !== 0) return BAD_WR;
  if (nsge > cap.maxRecvSge) return BAD_LENGTH;
  const base = w + RecvWqeWord.SGE;
  if (!sgeAddrsSafe(q, base, nsge)) return BAD_MEMORY;
  zeroSges(q, base, nsge, MAX_RECV_SGE);
  return 0;
}
