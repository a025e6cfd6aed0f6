/**
 * The per-entry hypervisor lock of the grant space (Xen's active-entry spinlock, XGTC:346).
 *
 * Why a lock and not one CAS: a pin changes two words (the pin count, then the status bits in
 * the shared flags word) and an unpin changes them back. Done lock-free, an unpin that drops the
 * last pin and a map that takes a new one can interleave so the status bits end up clear while a
 * pin is held — the XSA-218 window where the granter sees its grant free while it is mapped.
 * Only hypervisor code takes this lock; the granter's own grant/end-access CAS never does, so a
 * hostile guest cannot hold it.
 *
 * Word: `0` = free, else `owner | CONTENDED?` where `owner` is the holder's domid + 1 (or the
 * host's id), so `releaseDomain` can break the locks of a domain whose worker died inside a
 * critical section. The algorithm is Drepper's futex mutex ("Futexes Are Tricky", mutex 3):
 * spin a little with CAS, then mark the word contended and `Atomics.wait`; unlock notifies only
 * when the word was marked. Critical sections are a few loads and stores and never nest.
 */

import { Stage, stages } from '../../protocol/stage/StageLedger.js';

/** Set in a lock word when some thread may be sleeping on it. */
export const LOCK_CONTENDED = 1 << 16;
/** Low bits of a lock word: the holder (domid + 1, or the host's id). */
export const LOCK_OWNER_MASK = 0xffff;
/**
 * The owner id a thread takes device locks under (1 … 0xffff): derived from its Worker threadId,
 * so the host can break the locks of a thread it killed (`breakLocksOf`) knowing only that id.
 */
export function threadLockOwner(threadId: number): number {
  return (threadId % 0xfffe) + 1;
}

/** Polls before sleeping: longer than a critical section, far shorter than a wake-up (DESIGN §4). */
const LOCK_SPINS = 100;
/** Sleep slice; a defence against a lost wake-up, not a timing assumption. */
const LOCK_WAIT_MS = 10;

/** Takes the lock at word `index` for `owner` (1 … 0xffff). */
export function lockEntry(words: Int32Array, index: number, owner: number): void {
  // ORDERING: seq-cst CAS acquires; every access in the critical section is ordered after it.
  if (Atomics.compareExchange(words, index, 0, owner) === 0) return;
  lockSlow(words, index, owner);
}

function lockSlow(words: Int32Array, index: number, owner: number): void {
  // Stage ledger: waiting for the holder is IDLE (contention only: the fast path never gets here).
  const prev = stages.enter(Stage.IDLE);
  try {
    spinOrSleep(words, index, owner);
  } finally {
    stages.enter(prev);
  }
}

function spinOrSleep(words: Int32Array, index: number, owner: number): void {
  for (let i = 0; i < LOCK_SPINS; i++) {
    // ORDERING: test before test-and-set keeps the cache line shared while it is held.
    if (Atomics.load(words, index) === 0 && Atomics.compareExchange(words, index, 0, owner) === 0) return;
  }
  for (;;) {
    // ORDERING: seq-cst load; the CASes below decide.
    let seen = Atomics.load(words, index);
    if (seen === 0) {
      // Acquire as contended: other sleepers may exist, so our unlock must notify.
      // ORDERING: seq-cst CAS acquires, as on the fast path.
      if (Atomics.compareExchange(words, index, 0, owner | LOCK_CONTENDED) === 0) return;
      continue;
    }
    if ((seen & LOCK_CONTENDED) === 0) {
      // ORDERING: the holder's unlock exchange sees this bit and notifies.
      if (Atomics.compareExchange(words, index, seen, seen | LOCK_CONTENDED) !== seen) continue;
      seen |= LOCK_CONTENDED;
    }
    // ORDERING: wait re-checks the word atomically, so an unlock after our load is not lost.
    Atomics.wait(words, index, seen, LOCK_WAIT_MS);
  }
}

/** Releases the lock at word `index`. */
export function unlockEntry(words: Int32Array, index: number): void {
  // ORDERING: seq-cst exchange releases: the critical section's stores precede it.
  const prev = Atomics.exchange(words, index, 0);
  // ORDERING: notify after the release store, so the woken thread finds the word free.
  if ((prev & LOCK_CONTENDED) !== 0) Atomics.notify(words, index, 1);
}

/**
 * Frees every lock held by `owner` in `count` entries of `stride` words (lock at `offset`), for a
 * holder that died. Returns how many were broken. Only call when the owner cannot run again.
 */
export function breakLocksOf(words: Int32Array, offset: number, stride: number, count: number, owner: number): number {
  let broken = 0;
  for (let i = offset, n = 0; n < count; n++, i += stride) {
    // Plain (unordered) read as a pre-filter: the scan covers every entry of the host (≈ 0.5 M
    // on a default host) and almost none is held by `owner`; an Atomics.load each made a domain's
    // teardown cost tens of ms. A lock word the dead owner holds stays so (it writes no more), so
    // the filter cannot miss one; whatever it passes is re-read atomically below.
    if ((words[i] & LOCK_OWNER_MASK) !== owner) continue;
    // ORDERING: the dead owner writes no more; a waiter may still add LOCK_CONTENDED, so CAS in a
    // loop, bounded because that bit is the only change anyone else can make.
    for (let tries = 0; tries < 3; tries++) {
      const seen = Atomics.load(words, i);
      if ((seen & LOCK_OWNER_MASK) !== owner) break;
      // ORDERING: seq-cst CAS releases the lock as an unlock would.
      if (Atomics.compareExchange(words, i, seen, 0) === seen) {
        broken++;
        // ORDERING: wake every sleeper; they re-contend for the now free word.
        Atomics.notify(words, i);
        break;
      }
    }
  }
  return broken;
}
