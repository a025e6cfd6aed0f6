/**
 * Ends grants that a backend may still have mapped, the way Linux's
 * `gnttab_end_foreign_access` does after XSA-396: try to end each one, and retry the ones still
 * in use later instead of revoking them (which the hypervisor refuses) or reusing their pages.
 * Gives up after `timeoutMs` and reports what is left, so a backend that never unmaps leaks
 * pages rather than hanging the guest.
 */

import type { GrantOps } from '../../protocol/Hypercalls.js';
import type { GrantRef } from '../../protocol/Types.js';

/** Ends every grant in `refs`; resolves with the refs that were still mapped at the deadline. */
export async function endAccessDeferred(
  grant: GrantOps,
  refs: readonly GrantRef[],
  timeoutMs = 5000,
  retryMs = 1,
): Promise<GrantRef[]> {
  let left = [...refs];
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const busy: GrantRef[] = [];
    for (const ref of left) {
      if (grant.isGrantInUse(ref)) busy.push(ref);
      else grant.endAccess(ref);
    }
    left = busy;
    if (left.length === 0 || performance.now() >= deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    retryMs = Math.min(retryMs * 2, 100);
  }
}
