/**
 * The host's RDMA fabric: which NIC answers to which port id, the one lock every NIC of the host
 * takes to run commands and work requests, and the wire model.
 *
 * Why one lock per host: a work request touches two NICs' state at once (the requester's send
 * queue and CQ, the responder's receive queue, MR table and CQ), and either NIC may be run by
 * any thread (inline in a doorbell writer, or a dedicated device thread). A single host-wide
 * lock makes every WR atomic with respect to every other WR and command, the way one wire
 * serialises packets; it is released while a WR waits for the wire or for an RNR retry, so a
 * slow transfer never blocks the other NICs.
 *
 * Lock buffer (Int32 words; one per host, shared by all its NICs in all threads):
 * ```
 * word  field        writer                        reader
 * 0     LOCK         lockEntry/unlockEntry         same (futex mutex, EntryLock.ts)
 * 1     WAKE_SEQ     doorbells of NICs whose engine sleeps on the fabric    engine
 * 2-15  reserved     -                             -
 * ```
 * Every thread builds its own `RnicFabric` over the same buffer and adds its own `RnicDevice`
 * objects for every NIC of the host, so `get(port)` is the peer NIC attached in this thread.
 * A port id no NIC of this host has may belong to a NIC of ANOTHER host process: when the
 * thread's fabric has a `remote` (RemoteWire.ts, a domain thread of a host with
 * `wireMailboxes`), the requester ships the request there as a wire packet instead.
 */

import { threadId } from 'node:worker_threads';
import { pvError } from '../../../protocol/errors.js';
import type { SendWqe } from '../../../protocol/rdma/Wqe.js';
import { lockEntry, threadLockOwner, unlockEntry } from '../../grant/EntryLock.js';
import type { RnicCtx } from './RnicContext.js';
import type { RnicDevice } from './RnicDevice.js';

// The device-thread loop lives in RnicEngine.ts; it is re-exported here because host plumbing
// imports it with the fabric it runs on.
export { runRnicEngine, type StopWord, stopRnicEngine } from './RnicEngine.js';

/** Timing model of the wire between two NICs (DESIGN §6). */
export interface WireProfile {
  readonly name: string;
  /** One-way latency of a message, ns. */
  readonly latencyNs: number;
  /** Bandwidth, bytes per ns (= GB/s); Infinity for none. */
  readonly bytesPerNs: number;
}

/** No wire cost: isolates software costs. */
export const WIRE_IDEAL: WireProfile = { name: 'ideal', latencyNs: 0, bytesPerNs: Number.POSITIVE_INFINITY };

/**
 * InfiniBand EDR (100 Gb/s = 12.5 bytes/ns), ≈ 600 ns one-way: the order of a published
 * `ib_write_lat` half round trip on ConnectX-4/5 EDR (0.6–1.0 µs), reference §6.
 */
export const WIRE_IB_EDR: WireProfile = { name: 'ib-edr', latencyNs: 600, bytesPerNs: 12.5 };

/**
 * The requester half for a peer NIC of another host (RemoteWire.ts). Called like SendPath's local
 * transfer: fabric lock held, the WR's SGEs translated into `ctx.loc`; returns a WcStatus, or
 * Responder.ABANDONED when the QP changed while the lock was released. Never throws.
 */
export interface RemotePeer {
  transfer(ctx: RnicCtx, qpn: number, q: number, epoch: number, wqe: SendWqe): number;
}

/** Word indices of the lock buffer. */
export const enum FabricWord {
  LOCK = 0,
  WAKE_SEQ = 1,
  WORDS = 16,
}

/** Below this a modeled delay is spun (an Atomics.wait timeout is far coarser). */
const SPIN_BELOW_NS = 5000;
/** Lock owner id of this thread (1 … 0xffff, as EntryLock requires). */
const LOCK_OWNER = threadLockOwner(threadId);
/** Word nobody notifies: sleeping on it is a timed sleep. */
const SLEEP_WORD = new Int32Array(new SharedArrayBuffer(4));

/** The host's NIC directory, lock and wire, as attached in one thread. */
export class RnicFabric {
  /** The lock buffer (post it to other threads). */
  readonly buffer: SharedArrayBuffer;
  /** Its words (LOCK, WAKE_SEQ). */
  readonly words: Int32Array;
  readonly wire: WireProfile;
  /** Where requests to a port of no NIC of this host go (another host process), if anywhere. */
  remote: RemotePeer | undefined;
  private readonly _ports = new Map<number, RnicDevice>();

  /** A new lock buffer: one per host. */
  static createLock(): SharedArrayBuffer {
    return new SharedArrayBuffer(FabricWord.WORDS * 4);
  }

  constructor(lock: SharedArrayBuffer, wire: WireProfile = WIRE_IDEAL) {
    if (lock.byteLength < FabricWord.WORDS * 4) {
      throw pvError('PV_ERR_CONFIG', `fabric lock buffer must be ≥ ${FabricWord.WORDS * 4} bytes`);
    }
    if (!(wire.latencyNs >= 0) || !(wire.bytesPerNs > 0)) {
      throw pvError('PV_ERR_CONFIG', `wire ${wire.name}: latency must be ≥ 0 and bandwidth > 0`);
    }
    this.buffer = lock;
    this.words = new Int32Array(lock);
    this.wire = wire;
  }

  /**
   * Registers a NIC attached in this thread (RnicDevice's constructor does it). Adding the same
   * object twice is a no-op; another NIC on a taken port id is `PV_ERR_CONFIG`.
   */
  add(dev: RnicDevice): void {
    const cur = this._ports.get(dev.portId);
    if (cur === dev) return;
    if (cur !== undefined) throw pvError('PV_ERR_CONFIG', `port ${dev.portId} already belongs to ${cur.name}`);
    this._ports.set(dev.portId, dev);
  }

  /** The NIC with port id `portId` in this thread, if any. */
  get(portId: number): RnicDevice | undefined {
    return this._ports.get(portId);
  }

  /** Every NIC attached in this thread. */
  devices(): RnicDevice[] {
    return [...this._ports.values()];
  }

  /** Takes the host lock (not re-entrant). */
  lock(): void {
    lockEntry(this.words, FabricWord.LOCK, LOCK_OWNER);
  }

  /** Releases the host lock. */
  unlock(): void {
    unlockEntry(this.words, FabricWord.LOCK);
  }

  /** Modeled wire time of `bytes` in ns (0 on the ideal wire). */
  wireNs(bytes: number): number {
    const w = this.wire;
    const xfer = w.bytesPerNs === Number.POSITIVE_INFINITY ? 0 : bytes / w.bytesPerNs;
    return w.latencyNs + xfer;
  }
}

/**
 * Waits `ns` of real time: spins on the clock below 5 µs (an Atomics.wait sleep overshoots by
 * tens of µs), sleeps in Atomics.wait above, then spins off the remainder.
 */
export function delayNs(ns: number): void {
  if (!(ns > 0)) return;
  const end = performance.now() + ns / 1e6;
  if (ns > SPIN_BELOW_NS) {
    // ORDERING: nobody stores to or notifies SLEEP_WORD; this is a plain timed sleep.
    Atomics.wait(SLEEP_WORD, 0, 0, (ns - SPIN_BELOW_NS) / 1e6);
  }
  while (performance.now() < end) {
    // spin: the remaining time is shorter than a sleep's overshoot
  }
}
