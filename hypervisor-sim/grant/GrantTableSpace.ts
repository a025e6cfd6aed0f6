/**
 * The grant tables of every domain of one host, in ONE SharedArrayBuffer, so that every thread
 * (each domain worker and the host) sees every table without a message (DESIGN §1 "grant table",
 * reference protocol.md §2).
 *
 * Domain `d`'s table is entries `[d * E, (d + 1) * E)` (E = `entriesPerDomain`); a `GrantRef`
 * indexes it. Each entry is the Xen v1 shared entry (`grant_entry_v1_t`, XG:115) followed by the
 * hypervisor-private part of Xen's "active entry" (pin counts and its lock, XGTC:346); the
 * byte layout table is at `GrantWord`.
 *
 * Invariant (held under the entry lock): GTF_reading is set iff read pins + write pins > 0, and
 * GTF_writing iff write pins > 0. Pins are only taken after the flags were validated and are
 * raised *before* the status bits are set and lowered *before* they are cleared, so an end
 * access that sees the bits clear also sees the pins at zero (XSA-218: pin accounting and flag
 * clearing must not leave a window where the grant looks free while still mapped).
 */

import { pvError } from '../../protocol/errors.js';
import { DOMID_MAX, type DomId } from '../../protocol/Types.js';
import { breakLocksOf, lockEntry, unlockEntry } from './EntryLock.js';

/** Grant type: unused entry (Xen `GTF_invalid`). */
export const GTF_invalid = 0;
/** Grant type: the grantee may map or copy the frame (Xen `GTF_permit_access`). */
export const GTF_permit_access = 1;
/** Mask of the two type bits. */
export const GTF_type_mask = 3;
/** Subflag set by the granter: the grantee may only read (Xen `GTF_readonly`, bit 2). */
export const GTF_readonly = 1 << 2;
/** Status set by the hypervisor while the frame is mapped or copied from (Xen `GTF_reading`, bit 3). */
export const GTF_reading = 1 << 3;
/** Status set by the hypervisor while the frame is mapped writable or copied to (Xen `GTF_writing`, bit 4). */
export const GTF_writing = 1 << 4;
/**
 * pvio-only (bit 15, unused by Xen v1): the granter has claimed a free entry and is filling it.
 * The type bits are still GTF_invalid, so the hypervisor refuses it like any unused entry.
 */
export const GTF_PV_CLAIMED = 1 << 15;
/** Refs 0–7 are reserved (0 console, 1 xenstore); grantAccess never hands them out (XG). */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
/** Bounded CAS retries against a guest rewriting its entry (Xen `_set_status_v1`: 5, XGTC:755). */
export const MAX_GRANT_RETRIES = 5;
/** Most pins of one kind per entry (Xen packs 8-bit counters and checks overflow; pvio uses u16). */
export const MAX_PINS = 0xffff;

/**
 * Int32 word index of each field inside an entry (byte offset / 4). The entry layout:
 *
 * ```
 * offset  size  field        writer                                  reader
 * 0       2     flags (u16)  granter: type, GTF_readonly (grant, end)   granter, hypervisor
 *                            hypervisor: GTF_reading/GTF_writing
 * 2       2     domid (u16)  granter (grantee's domid)                  hypervisor
 * 4       4     frame (u32)  granter (gfn in the granter's memory)      hypervisor
 * 8       4     read pins    hypervisor, under lock                     hypervisor, granter (endAccess)
 * 12      4     write pins   hypervisor, under lock                     hypervisor, granter (endAccess)
 * 16      4     lock         hypervisor (owner domid + 1 | CONTENDED)   hypervisor
 * ```
 * Entry = 20 bytes = 5 Int32 words. Word 0 packs flags | domid << 16 (little-endian, as on every
 * platform Node runs on, so bytes 0–7 are exactly Xen's 8-byte v1 entry); one word is what lets
 * the hypervisor CAS the status bits against the granter's end-access CAS (XG "end an unused
 * grant: read flags, require !(reading|writing), cmpxchg(flags, 0)").
 */
export const enum GrantWord {
  FLAGS_DOMID = 0,
  FRAME = 1,
  READ_PINS = 2,
  WRITE_PINS = 3,
  LOCK = 4,
}
/** Int32 words per entry. */
export const GRANT_ENTRY_WORDS = 5;
/** Bytes per entry: 8 shared (Xen v1) + 12 hypervisor-private. */
export const GRANT_ENTRY_SIZE = GRANT_ENTRY_WORDS * 4;

/** One row of the entry layout (the `GrantWord` table as data, for the layout test). */
export interface GrantFieldLayout {
  readonly field: string;
  readonly offset: number;
  readonly size: number;
  readonly writer: 'granter' | 'hypervisor' | 'both';
}
/** The entry layout, byte offsets; a test checks it for overlaps, alignment and total size. */
export const GRANT_ENTRY_LAYOUT: readonly GrantFieldLayout[] = [
  { field: 'flags', offset: GrantWord.FLAGS_DOMID * 4, size: 2, writer: 'both' },
  { field: 'domid', offset: GrantWord.FLAGS_DOMID * 4 + 2, size: 2, writer: 'granter' },
  { field: 'frame', offset: GrantWord.FRAME * 4, size: 4, writer: 'granter' },
  { field: 'readPins', offset: GrantWord.READ_PINS * 4, size: 4, writer: 'hypervisor' },
  { field: 'writePins', offset: GrantWord.WRITE_PINS * 4, size: 4, writer: 'hypervisor' },
  { field: 'lock', offset: GrantWord.LOCK * 4, size: 4, writer: 'hypervisor' },
];

/** Lock owner used by the host thread (not a domain: above every domid + 1). */
export const HOST_LOCK_OWNER = 0xffff;

/** Sizes of the grant space. */
export interface GrantSpaceConfig {
  /** Domains 0 … maxDomains − 1 have a table. */
  readonly maxDomains: number;
  /** Entries per domain table, reserved refs included. */
  readonly entriesPerDomain: number;
}

/** What `releaseDomain` did. */
export interface GrantReleaseReport {
  /** Grants the dead domain made that were not mapped: now ended. */
  readonly endedGrants: number;
  /** Grants the dead domain made that a live domain still maps: left pinned until it unmaps. */
  readonly stillMapped: number;
  /** Pins the dead domain held as grantee, dropped. */
  readonly droppedPins: number;
  /** Entry locks the dead domain held when it died, broken. */
  readonly brokenLocks: number;
}

/** A decoded copy of one entry (tests and debugging; racy by nature). */
export interface GrantEntrySnapshot {
  readonly flags: number;
  readonly domid: number;
  readonly frame: number;
  readonly readPins: number;
  readonly writePins: number;
  readonly lock: number;
}

/** The host-wide grant space (entry layout at `GrantWord`). */
export class GrantTableSpace {
  /** The shared buffer; post it with `config` to another thread and attach with the constructor. */
  readonly buffer: SharedArrayBuffer;
  /** Sizes, to post alongside the buffer. */
  readonly config: GrantSpaceConfig;
  /** The whole space as Int32 words; every shared field is accessed through `Atomics`. */
  readonly words: Int32Array;

  /** Bytes needed for `cfg`: maxDomains × entriesPerDomain × GRANT_ENTRY_SIZE. */
  static bytesFor(cfg: GrantSpaceConfig): number {
    checkConfig(cfg);
    return cfg.maxDomains * cfg.entriesPerDomain * GRANT_ENTRY_SIZE;
  }

  /** Allocates a zeroed space (every entry GTF_invalid, no pins, unlocked). */
  static create(cfg: GrantSpaceConfig): GrantTableSpace {
    return new GrantTableSpace(new SharedArrayBuffer(GrantTableSpace.bytesFor(cfg)), cfg);
  }

  /** Attaches to a space created in another thread; `cfg` must be the one it was created with. */
  constructor(buffer: SharedArrayBuffer, cfg: GrantSpaceConfig) {
    const bytes = GrantTableSpace.bytesFor(cfg);
    if (buffer.byteLength !== bytes) {
      throw pvError('PV_ERR_CONFIG', `grant space is ${buffer.byteLength} bytes, config needs ${bytes}`);
    }
    this.buffer = buffer;
    this.config = { maxDomains: cfg.maxDomains, entriesPerDomain: cfg.entriesPerDomain };
    this.words = new Int32Array(buffer);
  }

  /**
   * Word index of entry `ref` of `domid`'s table. Both numbers may come from a guest:
   * `PV_ERR_GRANT_BAD_DOMAIN` if the domain has no table, `PV_ERR_GRANT_BAD_REF` if the ref is
   * not an index into it.
   */
  entryBase(domid: number, ref: number): number {
    const { maxDomains, entriesPerDomain } = this.config;
    if (!Number.isInteger(domid) || domid < 0 || domid >= maxDomains) {
      throw pvError('PV_ERR_GRANT_BAD_DOMAIN', `domain ${domid} has no grant table`);
    }
    if (!Number.isInteger(ref) || ref < 0 || ref >= entriesPerDomain) {
      throw pvError('PV_ERR_GRANT_BAD_REF', `grant ref ${ref} outside the ${entriesPerDomain}-entry table`);
    }
    return (domid * entriesPerDomain + ref) * GRANT_ENTRY_WORDS;
  }

  /** Decodes one entry (racy snapshot; for tests and debugging). */
  snapshot(domid: number, ref: number): GrantEntrySnapshot {
    const w = this.words;
    const base = this.entryBase(domid, ref);
    // ORDERING: independent seq-cst loads; the snapshot is not atomic as a whole.
    const word0 = Atomics.load(w, base + GrantWord.FLAGS_DOMID);
    return {
      flags: word0 & 0xffff,
      domid: word0 >>> 16,
      // ORDERING: see above.
      frame: Atomics.load(w, base + GrantWord.FRAME),
      // ORDERING: see above.
      readPins: Atomics.load(w, base + GrantWord.READ_PINS),
      // ORDERING: see above.
      writePins: Atomics.load(w, base + GrantWord.WRITE_PINS),
      // ORDERING: see above.
      lock: Atomics.load(w, base + GrantWord.LOCK),
    };
  }

  /** Takes the hypervisor lock of the entry at `base` (`owner` = domid + 1 or HOST_LOCK_OWNER). */
  lock(base: number, owner: number): void {
    lockEntry(this.words, base + GrantWord.LOCK, owner);
  }

  /** Releases the lock taken by `lock`. */
  unlock(base: number): void {
    unlockEntry(this.words, base + GrantWord.LOCK);
  }

  /**
   * Cleans up after a domain died (its worker has exited; call only then). Idempotent.
   *  1. Breaks entry locks it held (it may have died inside a critical section).
   *  2. Drops every pin it held as grantee: only the grantee can map or copy a grant, so pins on
   *     entries whose grantee is `dead` are its, and its maptrack died with its thread.
   *  3. Ends every grant it made that nobody maps. Mapped ones stay pinned (Xen never revokes a
   *     mapping, §2.3) and are counted in `stillMapped`; call again after the mapper unmapped.
   * Pins on an entry whose domid field the granter rewrote while pinned are not found here; that
   * only keeps the rewriting granter's own grant busy.
   */
  releaseDomain(dead: DomId): GrantReleaseReport {
    if (!Number.isInteger(dead) || dead < 0 || dead > DOMID_MAX) {
      throw pvError('PV_ERR_INVALID_ARG', `cannot release domain ${dead}: not a domain id`);
    }
    const w = this.words;
    const { maxDomains, entriesPerDomain } = this.config;
    const total = maxDomains * entriesPerDomain;
    const brokenLocks = breakLocksOf(w, GrantWord.LOCK, GRANT_ENTRY_WORDS, total, dead + 1);
    let droppedPins = 0;
    for (let base = 0; base < total * GRANT_ENTRY_WORDS; base += GRANT_ENTRY_WORDS) {
      // Plain (unordered) read as a pre-filter over every entry of the host: an entry naming
      // another grantee is skipped. Pins of `dead` stay put (only it could change them), and the
      // decision is re-made under the lock below, so a stale read can only cost a lock.
      const word0 = w[base + GrantWord.FLAGS_DOMID];
      if (word0 >>> 16 !== dead) continue;
      if (
        (word0 & (GTF_reading | GTF_writing)) === 0 &&
        w[base + GrantWord.READ_PINS] + w[base + GrantWord.WRITE_PINS] === 0
      )
        continue;
      this.lock(base, HOST_LOCK_OWNER);
      try {
        // ORDERING: under the entry lock no pin or unpin runs concurrently.
        if (Atomics.load(w, base + GrantWord.FLAGS_DOMID) >>> 16 !== dead) continue;
        // ORDERING: see above.
        droppedPins += Atomics.exchange(w, base + GrantWord.READ_PINS, 0);
        // ORDERING: see above.
        droppedPins += Atomics.exchange(w, base + GrantWord.WRITE_PINS, 0);
        // ORDERING: pins are zero before the status bits clear (file-comment invariant); AND
        // cannot livelock against the granter and keeps its other bits.
        Atomics.and(w, base + GrantWord.FLAGS_DOMID, ~(GTF_reading | GTF_writing));
      } finally {
        this.unlock(base);
      }
    }
    let endedGrants = 0;
    let stillMapped = 0;
    if (dead < maxDomains) {
      for (let ref = 0; ref < entriesPerDomain; ref++) {
        const base = this.entryBase(dead, ref);
        // Plain pre-filter for free entries: a dead granter writes nothing more.
        if (w[base + GrantWord.FLAGS_DOMID] === 0) continue;
        this.lock(base, HOST_LOCK_OWNER);
        try {
          // Under the lock no pin can start between this check and the store.
          if (this._pins(base) > 0) {
            stillMapped++;
          } else {
            // ORDERING: the granter is dead and pins need the lock we hold: nobody else writes.
            Atomics.store(w, base + GrantWord.FLAGS_DOMID, 0);
            endedGrants++;
          }
        } finally {
          this.unlock(base);
        }
      }
    }
    return { endedGrants, stillMapped, droppedPins, brokenLocks };
  }

  private _pins(base: number): number {
    const w = this.words;
    // ORDERING: seq-cst loads; callers either hold the entry lock or only pre-filter.
    return Atomics.load(w, base + GrantWord.READ_PINS) + Atomics.load(w, base + GrantWord.WRITE_PINS);
  }
}

function checkConfig(cfg: GrantSpaceConfig): void {
  const { maxDomains, entriesPerDomain } = cfg;
  if (!Number.isInteger(maxDomains) || maxDomains < 1 || maxDomains > DOMID_MAX + 1) {
    throw pvError('PV_ERR_CONFIG', `maxDomains must be an integer in [1, ${DOMID_MAX + 1}], got ${maxDomains}`);
  }
  // Refs are u32 but the whole space must stay addressable by an Int32Array index.
  if (
    !Number.isInteger(entriesPerDomain) ||
    entriesPerDomain <= GNTTAB_NR_RESERVED_ENTRIES ||
    maxDomains * entriesPerDomain * GRANT_ENTRY_WORDS > 2 ** 31 - 1
  ) {
    throw pvError(
      'PV_ERR_CONFIG',
      `entriesPerDomain must be an integer > ${GNTTAB_NR_RESERVED_ENTRIES} that keeps the space under 2^31 words, got ${entriesPerDomain}`,
    );
  }
}
