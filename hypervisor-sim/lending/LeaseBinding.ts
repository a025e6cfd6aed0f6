/**
 * Ties a borrower's LentFunction to its lease in the registry, both ways:
 *
 *  - usage: each change of the view's outstanding count is reported with `setInUse`, so the
 *    registry refuses a plain return while requests are in flight. Reports are issued
 *    synchronously at `begin`/`end`, and the registry applies calls in call order (Types.ts), so
 *    a return issued after a `begin` always sees that request;
 *  - end of lease: the registry's 'revoked' event (a forced return, or the lender withdrawing the
 *    device) and its 'returned' event for this lease revoke the view, failing everything still
 *    outstanding with PV_ERR_LEND_REVOKED.
 */

import type { PciFunction } from '../../protocol/Pci.js';
import { type AccessHook, LentFunction } from './LentFunction.js';
import type { DeviceRegistry, Lease, RegistryEvent } from './Types.js';

/** A lent view bound to its lease. */
export interface LeaseBinding {
  readonly lent: LentFunction;
  readonly lease: Lease;
  /** Usage reports the registry refused while the lease was still live (should stay empty). */
  readonly reportErrors: readonly unknown[];
  /** Resolves once every usage report issued so far has been applied. */
  settled(): Promise<void>;
  /** Stops watching the registry (the view itself stays as it is). */
  close(): void;
}

/** Options of `bindLease`. */
export interface BindOptions {
  /** Fabric hook for the view's MMIO (LentFunction.ts). */
  readonly onAccess?: AccessHook;
}

/** Wraps `pci` (the lender's function) in a LentFunction bound to `lease` (see the file comment). */
export function bindLease(
  registry: DeviceRegistry,
  lease: Lease,
  pci: PciFunction,
  opts: BindOptions = {},
): LeaseBinding {
  const reportErrors: unknown[] = [];
  let last: Promise<void> = Promise.resolve();
  const lent: LentFunction = new LentFunction(pci, {
    lease,
    onAccess: opts.onAccess,
    onOutstanding: (n) => {
      // After revocation the lease is gone from the registry: there is nothing left to report.
      if (lent.revoked) return;
      last = registry.setInUse(lease, n).catch((err: unknown) => {
        // A report racing with the lease's end is expected; any other refusal is kept for the caller.
        if (!lent.revoked) reportErrors.push(err);
      });
    },
  });
  const mine = (e: RegistryEvent): boolean =>
    (e.type === 'revoked' || e.type === 'returned') &&
    e.lease.id === lease.id &&
    e.lease.generation === lease.generation;
  const unwatch = registry.watch((e) => {
    if (!mine(e)) return;
    lent.revoke(e.type === 'revoked' ? 'revoked by a forced return' : 'returned to the lender');
  });
  return {
    lent,
    lease,
    reportErrors,
    settled: () => last,
    close: unwatch,
  };
}
