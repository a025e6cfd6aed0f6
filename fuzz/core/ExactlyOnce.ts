/**
 * The exactly-once and response-hygiene checks of a case, on what the guest can see: its ring
 * header and the response slots. Shared by every target (a Xen-style ring is the same for all).
 *
 *  - more responses than requests published → `<prefix>/<ring>:double-response`
 *    (a request answered twice, or a response invented);
 *  - fewer, while the ring was not halted for a protocol violation → `<prefix>/<ring>:unanswered-request`;
 *  - a response slot whose padding is not zero → `<prefix>/<ring>:dirty-padding` (XSA-216).
 */

import type { Violation } from './FuzzTarget.js';

/** The indices of one ring around a case. */
export interface RingCount {
  /** `rsp_prod` before the case's requests were published. */
  readonly rspBefore: number;
  /** `req_prod` the guest published (the last value). */
  readonly reqProd: number;
  /** `rsp_prod` after serving. */
  readonly rspAfter: number;
  /** The backend halted the ring (a legitimate answer to a protocol violation). */
  readonly halted: boolean;
}

/** Checks the counts; see the file comment. */
export function auditCounts(prefix: string, ring: string, c: RingCount): Violation[] {
  const asked = (c.reqProd - c.rspBefore) >>> 0;
  const answered = (c.rspAfter - c.rspBefore) >>> 0;
  if (answered > asked) {
    return [
      {
        signature: `${prefix}/${ring}:double-response`,
        detail: `${answered} responses to ${asked} requests (rsp_prod ${c.rspBefore} → ${c.rspAfter}, req_prod ${c.reqProd})`,
      },
    ];
  }
  if (!c.halted && answered < asked) {
    return [
      {
        signature: `${prefix}/${ring}:unanswered-request`,
        detail: `${asked - answered} of ${asked} requests never answered and the ring was not halted`,
      },
    ];
  }
  return [];
}

/** Checks that words `[from, to)` of the response slot at word `w` are zero. */
export function auditPadding(
  prefix: string,
  ring: string,
  words: Int32Array,
  w: number,
  from: number,
  to: number,
): Violation | undefined {
  for (let i = from; i < to; i++) {
    if (words[w + i] !== 0) {
      return {
        signature: `${prefix}/${ring}:dirty-padding`,
        detail: `response word ${i} is 0x${(words[w + i] >>> 0).toString(16)}, not 0`,
      };
    }
  }
  return undefined;
}
