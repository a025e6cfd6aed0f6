/**
 * Copy mode's side of a guest CQ: the backend is the producer of the guest's ring (grant-mapped
 * for us, not for the device), with the format and protocol of Cq.ts. The guest's CONS word is
 * the guest's to write, garbage included: `produceCqe` masks every index, so a hostile consumer
 * index only makes that guest's own ring look full or empty.
 *
 * A lost completion — dropped here on a full guest ring, or by the NIC on a full device ring — is
 * a CQ error, as an HCA's CQ overrun is: the guest's ring is flagged (its pollCq reports
 * PV_ERR_RDMA_QUEUE_FULL once drained) and every QP feeding the CQ goes to ERR.
 */

import { CqWord, produceCqe } from '../../protocol/rdma/Cq.js';
import { QpAttrMask, QpState, type Wc } from '../../protocol/rdma/Verbs.js';
import type { CqRec, GuestSession } from './GuestSession.js';

/**
 * Appends `wc` to the guest's ring of `cq`; on a full ring drops it and puts the CQ in error.
 * Returns false when the CQE was dropped.
 */
export function produceGuestCqe(s: GuestSession, cq: CqRec, wc: Wc): boolean {
  // INVARIANT: copy-mode CQs always have guestWords (ResourceCommands.createCq).
  const p = produceCqe(cq.guestWords as Int32Array, cq.entries, cq.prod, wc);
  if (p >= 0) {
    cq.prod = p;
    return true;
  }
  overflowGuestCq(s, cq);
  return false;
}

/** Flags the guest's ring and sends the QPs that feed `cq` to ERR (once per CQ). */
export function overflowGuestCq(s: GuestSession, cq: CqRec): void {
  // ORDERING: seq-cst store; the guest's pollCq loads OVERFLOW after finding the ring empty.
  Atomics.store(cq.guestWords as Int32Array, CqWord.OVERFLOW, 1);
  if (cq.overflows++ > 0) return;
  for (const [, qp] of s.qps.entries()) {
    if (qp.sendCq !== cq && qp.recvCq !== cq) continue;
    try {
      s.driver.modifyQp(qp.qpn, { qpState: QpState.ERR }, QpAttrMask.STATE);
    } catch {
      // Already in ERR or gone: nothing more to do.
    }
  }
}
