/**
 * Pinning and unpinning a grant entry: the hypervisor half of map, unmap and copy (Xen
 * `_set_status_v1` + active-entry pin counting, reference protocol.md §2.2).
 *
 * A pin is taken under the entry lock in this order: validate the shared flags (type, grantee,
 * permission) → raise the pin count → CAS the status bits into the flags word, re-validating
 * whatever the guest wrote if the CAS loses (bounded: the guest can rewrite its entry faster
 * than we CAS) → read the frame. An unpin lowers the pin count first and clears the status bits
 * after. See GrantTableSpace's file comment for why this order closes the XSA-218 window.
 */

import { pvError } from '../../protocol/errors.js';
import type { DomId } from '../../protocol/Types.js';
import {
  type GrantTableSpace,
  GrantWord,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_type_mask,
  GTF_writing,
  MAX_GRANT_RETRIES,
  MAX_PINS,
} from './GrantTableSpace.js';

/** Names a pinned entry in error messages. */
export interface EntryName {
  readonly granter: DomId;
  readonly ref: number;
}

/**
 * Checks one value of an entry's flags word for a pin by `grantee`; throws the Xen status as a
 * typed error: unused or ended → BAD_REF, other grantee → BAD_DOMAIN, write on a read-only grant →
 * PERMISSION.
 */
function checkFlags(word0: number, grantee: DomId, write: boolean, name: EntryName): void {
  if ((word0 & GTF_type_mask) !== GTF_permit_access) {
    throw pvError('PV_ERR_GRANT_BAD_REF', `grant ${name.ref} of domain ${name.granter} is not granted`);
  }
  if (word0 >>> 16 !== grantee) {
    throw pvError(
      'PV_ERR_GRANT_BAD_DOMAIN',
      `grant ${name.ref} of domain ${name.granter} is for domain ${word0 >>> 16}, not ${grantee}`,
    );
  }
  if (write && (word0 & GTF_readonly) !== 0) {
    throw pvError('PV_ERR_GRANT_PERMISSION', `grant ${name.ref} of domain ${name.granter} is read-only`);
  }
}

/**
 * Pins entry `base` for `grantee` (a write pin when `write`, else a read pin) and returns the
 * frame it grants. On any error nothing stays pinned.
 */
export function pinGrant(
  space: GrantTableSpace,
  base: number,
  grantee: DomId,
  write: boolean,
  name: EntryName,
): number {
  const w = space.words;
  const flagsIdx = base + GrantWord.FLAGS_DOMID;
  const pinIdx = base + (write ? GrantWord.WRITE_PINS : GrantWord.READ_PINS);
  const status = write ? GTF_reading | GTF_writing : GTF_reading;
  space.lock(base, grantee + 1);
  try {
    // ORDERING: read the guest-written word once; every decision below uses this copy.
    let word0 = Atomics.load(w, flagsIdx);
    checkFlags(word0, grantee, write, name);
    // ORDERING: pin counts change only under the lock, so load + store cannot lose an update.
    const pins = Atomics.load(w, pinIdx);
    if (pins >= MAX_PINS) {
      throw pvError('PV_ERR_LIMIT', `grant ${name.ref} of domain ${name.granter} has ${pins} pins`);
    }
    // ORDERING: the pin is visible before the status bits, so an end access racing us either
    // sees the pin or finds the flags word changed under its CAS.
    Atomics.store(w, pinIdx, pins + 1);
    for (let tries = 1; (word0 & status) !== status; tries++) {
      // ORDERING: seq-cst CAS against the granter's end-access CAS on the same word; success
      // also re-validates the flags after pinning (they are still the value we checked).
      const seen = Atomics.compareExchange(w, flagsIdx, word0, word0 | status);
      if (seen === word0) break;
      word0 = seen;
      try {
        if (tries >= MAX_GRANT_RETRIES) {
          throw pvError('PV_ERR_GRANT_BAD_REF', `grant ${name.ref} of domain ${name.granter}: flags keep changing`);
        }
        checkFlags(word0, grantee, write, name);
      } catch (err) {
        // ORDERING: our status bits were never set, so dropping the pin restores the entry.
        Atomics.store(w, pinIdx, pins);
        throw err;
      }
    }
    // ORDERING: the granter stored the frame before publishing the flags we validated (seq-cst),
    // so this load sees it.
    return Atomics.load(w, base + GrantWord.FRAME);
  } finally {
    space.unlock(base);
  }
}

/**
 * Drops one pin of entry `base` taken by `pinGrant` for `grantee`, clearing the status bits
 * when the last pin of their kind goes. A pin already dropped (by `releaseDomain`) is ignored.
 */
export function unpinGrant(space: GrantTableSpace, base: number, grantee: DomId, write: boolean): void {
  const w = space.words;
  const pinIdx = base + (write ? GrantWord.WRITE_PINS : GrantWord.READ_PINS);
  space.lock(base, grantee + 1);
  try {
    // ORDERING: pins change only under the lock.
    const pins = Atomics.load(w, pinIdx);
    if (pins === 0) return;
    // ORDERING: lower the pin before clearing the bits (GrantTableSpace invariant, XSA-218).
    Atomics.store(w, pinIdx, pins - 1);
    // ORDERING: under the lock, as above.
    const readPins = Atomics.load(w, base + GrantWord.READ_PINS);
    // ORDERING: under the lock, as above.
    const writePins = Atomics.load(w, base + GrantWord.WRITE_PINS);
    let clear = 0;
    if (writePins === 0) clear |= GTF_writing;
    if (readPins + writePins === 0) clear |= GTF_reading;
    // ORDERING: an atomic AND cannot livelock against the granter and keeps its own bits.
    if (clear !== 0) Atomics.and(w, base + GrantWord.FLAGS_DOMID, ~clear);
  } finally {
    space.unlock(base);
  }
}
