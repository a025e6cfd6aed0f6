/**
 * Layout of the host-wide monitor buffer: one SharedArrayBuffer per host in which every domain
 * thread publishes the cheap counters it already keeps (grant ops, notifies, ring traffic), so a
 * monitor on the main thread (`pvio top`, tests) reads them without messaging anyone and without
 * touching the data path.
 *
 * ```
 * offset              size      field        writer            reader   note
 * 0                   4         magic        host              all      MONITOR_MAGIC ('PVMN')
 * 4                   4         version      host              all      MONITOR_VERSION
 * 8                   4         maxDomains   host              all      D: domain records (index = domid)
 * 12                  4         ringRecords  host              all      R: ring-end records (a pool)
 * 16                  48        pad          -                 -        zero
 * 64                  D*64      domain[D]    see below
 * 64 + D*64           R*96      ring[R]      see below
 * ```
 *
 * Domain record, 64 bytes, index = domid:
 * ```
 * offset  size  field           writer          reader  note
 * 0       4     state           host            all     DomainRecordState; LIVE from create to teardown
 * 4       4     tid             domain thread   host    Linux TID of the domain thread, 0 until it started
 * 8       8     grantMaps       domain thread   host    f64 (DomainCounter order from here on)
 * 16      8     grantUnmaps     domain thread   host    f64
 * 24      8     grantCopies     domain thread   host    f64
 * 32      8     grantCopyBytes  domain thread   host    f64
 * 40      8     notifies        domain thread   host    f64, event-channel sends
 * 48      16    pad             -               -       zero
 * ```
 *
 * Ring-end record, 96 bytes, claimed by any thread with a CAS on `state`:
 * ```
 * offset  size  field         writer   reader  note
 * 0       4     state         claimer  all     0 free, else ringState(owner, RingPhase): CAS 0 → CLAIMING, fields, store LIVE
 * 4       4     gen           claimer  all     bumped at each claim; a reader re-checks it after reading the record
 * 8       4     kind          claimer  all     RING_KINDS index
 * 12      4     owner         claimer  all     domid that writes the counters
 * 16      4     peer          claimer  all     domid at the other end
 * 20      4     end           claimer  all     0 front, 1 back
 * 24      8     pad           -        -       zero
 * 32      56    counters[7]   owner    all     f64 in RingCounter order (protocol/ring/RingCounters.ts)
 * 88      8     pad           -        -       zero
 * ```
 *
 * Why Float64 counters with plain stores, not Int32 with `Atomics.add`: every counter has ONE
 * writer (the thread that owns the ring end or the domain), so no read-modify-write can be lost
 * and the fast path stays one plain load+store (an `Atomics.add` is a locked instruction on
 * every request). Float64 counts exactly to 2^53, so byte counters never wrap (a u32 would wrap
 * in seconds at GB/s). Readers take plain snapshots: a value may be a few increments stale and,
 * in the letter of the ECMAScript memory model, a racing 8-byte read may tear (aligned 8-byte
 * stores are single instructions on x86-64 and arm64, so V8 does not); the monitor is advisory
 * and a viewer computes rates over many increments. The word fields (state, gen, tid) that
 * decide WHICH record is live use Atomics.
 */

import { RingCounter } from '../ring/RingCounters.js';

/** 'PVMN' little-endian. */
export const MONITOR_MAGIC = 0x4e4d5650;
/** Bumped on any layout change. */
export const MONITOR_VERSION = 1;
/** Header bytes before the domain records. */
export const MONITOR_HEADER_BYTES = 64;
/** Bytes of one domain record. */
export const DOMAIN_RECORD_BYTES = 64;
/** Bytes of one ring-end record. */
export const RING_RECORD_BYTES = 96;
/** Default size of the ring-end pool (two ends per ring, a few rings per guest). */
export const DEFAULT_RING_RECORDS = 512;

/** Int32 word indices of the header. */
export const enum MonitorWord {
  MAGIC = 0,
  VERSION = 1,
  MAX_DOMAINS = 2,
  RING_RECORDS = 3,
}

/** Int32 word indices inside a domain record. */
export const enum DomainRecordWord {
  STATE = 0,
  TID = 1,
  /** First Float64 counter, as a byte offset inside the record. */
  COUNTERS_BYTE = 8,
}

/** Domain record state. */
export const enum DomainRecordState {
  FREE = 0,
  LIVE = 1,
}

/** Float64 counters of a domain record, in order. */
export const enum DomainCounter {
  GRANT_MAPS = 0,
  GRANT_UNMAPS = 1,
  GRANT_COPIES = 2,
  GRANT_COPY_BYTES = 3,
  NOTIFIES = 4,
  COUNT = 5,
}

/** Int32 word indices inside a ring-end record. */
export const enum RingRecordWord {
  STATE = 0,
  GEN = 1,
  KIND = 2,
  OWNER = 3,
  PEER = 4,
  END = 5,
  /** First Float64 counter, as a byte offset inside the record. */
  COUNTERS_BYTE = 32,
}

/** Phase of a claimed ring record (low two bits of its state word). */
export const enum RingPhase {
  FREE = 0,
  CLAIMING = 1,
  LIVE = 2,
}

/** Ring kinds by code; code 0 is any kind not listed. */
export const RING_KINDS: readonly string[] = [
  'other',
  'blkif',
  'vrdma-ctrl',
  'vrdma-data',
  'io',
  // virtio-rdma's control and data virtqueues (counted as rings: a chain is a request).
  'virtio-ctrl',
  'virtio-data',
];

/** Counters of a ring-end record (the seven RingCounters fields). */
export const RING_RECORD_COUNTERS = RingCounter.COUNT;

/** Code of a ring kind name (0 = 'other'). */
export function ringKindCode(kind: string): number {
  const i = RING_KINDS.indexOf(kind);
  return i < 0 ? 0 : i;
}

/** Name of a ring kind code ('other' for an unknown code). */
export function ringKindName(code: number): string {
  return RING_KINDS[code] ?? 'other';
}

/**
 * State word of a record claimed by `owner`: the owner is in the word itself so that a claim
 * interrupted by the owner's death (between the CAS and the fields) can still be released by
 * the host, which only knows the dead domid.
 */
export function ringState(owner: number, phase: RingPhase): number {
  return ((owner + 1) << 2) | phase;
}

/** Owner domid named by a non-free state word. */
export function ringStateOwner(state: number): number {
  return (state >>> 2) - 1;
}

/** Phase of a state word. */
export function ringStatePhase(state: number): RingPhase {
  return (state & 3) as RingPhase;
}

/** Total bytes of a monitor buffer. */
export function monitorBytes(maxDomains: number, ringRecords: number): number {
  return MONITOR_HEADER_BYTES + maxDomains * DOMAIN_RECORD_BYTES + ringRecords * RING_RECORD_BYTES;
}

/** Byte offset of the domain record of `domid`. */
export function domainRecordByte(domid: number): number {
  return MONITOR_HEADER_BYTES + domid * DOMAIN_RECORD_BYTES;
}

/** Byte offset of ring-end record `index`. */
export function ringRecordByte(maxDomains: number, index: number): number {
  return MONITOR_HEADER_BYTES + maxDomains * DOMAIN_RECORD_BYTES + index * RING_RECORD_BYTES;
}
