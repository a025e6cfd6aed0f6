/**
 * The event-channel state of every domain of one host, in ONE `SharedArrayBuffer`, so every domain
 * thread reads and writes every port with `Atomics` and no messages (Xen keeps the same state in
 * hypervisor memory, under per-domain locks; here the locks become single-word CAS transitions).
 *
 * ```
 * offset             size  field             writer                          reader
 * --- header (64 B, once) ----------------------------------------------------------------------
 * 0                  4     MAGIC             create()                        attach (constructor)
 * 4                  4     MAX_DOMAINS       create()                        attach
 * 8                  4     PORTS_PER_DOMAIN  create()                        attach
 * 12                 52    pad               zero                            -
 * --- domain d, at 64 + d * D, D = 64 + P * 16 ---------------------------------------------------
 * +0                 4     WAKE              notifiers, unmask, kickSelf,    d's waitForEvent
 *                                            host (close/reset)
 * +4                 4     WAITERS           d's waitForEvent (add/sub)      notifiers (skip notify at 0)
 * +8                 4     ALIVE             host (resetDomain/closeDomain)  alloc, bind
 * +12                52    pad               zero                            - (WAKE gets its own line)
 * --- port p of domain d, at 64 + d * D + 64 + p * 16 --------------------------------------------
 * +0                 4     BIND              owner (alloc, bind, close),     everyone
 *                                            peer (bind links, close
 *                                            unlinks), host (closeDomain)
 * +4                 4     PENDING           peer notify, bind, unlink -> 1  owner, notifiers
 *                                            owner testAndClear -> 0
 * +8                 4     MASK              owner                           notifiers
 * +12                4     reserved          zero                            - (a port is 16 B: index = shift)
 * ```
 * Total = 64 + maxDomains * (64 + portsPerDomain * 16). Port 0 exists in memory but is never
 * allocated: it is invalid, as in Xen.
 *
 * BIND packs the port's state with its remote end, so that "unbound AND accepts the caller" is
 * checked and turned into "interdomain with the caller" by one compare-exchange, and a notifier
 * always reads a peer (domain, port) pair that belongs together:
 * ```
 * bit  31  30 .......... 17  16 ........... 2  1 .. 0
 *      0   remote port (14)  remote domid (15) state
 * ```
 * closed = 0; unbound = (remote domid that may bind, port 0); interdomain = (peer domid, peer
 * port); reserved = 3, a port being set up by its owner that nobody else may bind or notify.
 * Invariant: if X.p is interdomain(Y, q) and Y.q is interdomain(X, p) the channel is linked; a
 * half link exists only inside a bind that has not returned and is undone by that bind.
 */

import { pvError } from '../../protocol/errors.js';
import { DOMID_MAX, type DomId, type EvtchnPort } from '../../protocol/Types.js';

/** Sizes of the space: how many domains and how many ports (port 0 included) each has. */
export interface EvtchnSpaceConfig {
  /** Domain ids 0 .. maxDomains − 1 have event-channel state here. */
  maxDomains: number;
  /** Ports per domain, port 0 included (so portsPerDomain − 1 are usable). */
  portsPerDomain: number;
}

/** Byte offsets of the header fields. */
export const enum EvtchnHeader {
  MAGIC = 0,
  MAX_DOMAINS = 4,
  PORTS_PER_DOMAIN = 8,
  /** Header size; padded to a 64-byte line so domain blocks start line-aligned. */
  SIZE = 64,
}

/** Byte offsets inside a domain block. */
export const enum DomainField {
  WAKE = 0,
  WAITERS = 4,
  ALIVE = 8,
  /** The port array starts here: the hot WAKE word shares its line with no port. */
  PORTS = 64,
}

/** Byte offsets inside a port record. */
export const enum PortField {
  BIND = 0,
  PENDING = 4,
  MASK = 8,
  RESERVED = 12,
  SIZE = 16,
}

/** Int32 indices (byte offset / 4) of the domain fields, relative to the domain's first word. */
export const enum DomainWord {
  WAKE = 0,
  WAITERS = 1,
  ALIVE = 2,
  PORTS = 16,
}

/** Int32 indices of the port fields, relative to the port's first word. */
export const enum PortWord {
  BIND = 0,
  PENDING = 1,
  MASK = 2,
  SIZE = 4,
}

/** Port states (Xen `ECS_FREE`, `ECS_UNBOUND`, `ECS_INTERDOMAIN`, `ECS_RESERVED`). */
export const enum EvtchnState {
  CLOSED = 0,
  UNBOUND = 1,
  INTERDOMAIN = 2,
  RESERVED = 3,
}

/** Bit fields of the BIND word. */
export const enum BindBits {
  STATE_MASK = 0x3,
  DOM_SHIFT = 2,
  DOM_MASK = 0x7fff,
  PORT_SHIFT = 17,
  PORT_MASK = 0x3fff,
}

/** 'EVTC': marks an initialised space, so attaching to a foreign buffer fails loudly. */
export const EVTCHN_MAGIC = 0x45565443;
/** Ports per domain the BIND word can name (14 bits; Xen's 2-level ABI has 4096). */
export const MAX_PORTS_PER_DOMAIN = 1 << 14;
/** Domains the BIND word can name (15 bits cover every domid up to DOMID_MAX). */
export const MAX_EVTCHN_DOMAINS = DOMID_MAX + 1;
/** Retries of a CAS loop on a word other domains may change (Xen bounds such loops, XGTC:755). */
export const MAX_CAS_RETRIES = 16;

/** What `setPending` did; notify turns it into counters. */
export const enum Delivery {
  /** Already pending: coalesced into the earlier event (XE2L test_and_set). */
  COALESCED = 0,
  /** Set pending, but the port is masked: the wake waits for unmask. */
  MASKED = 1,
  /** Set pending and bumped the wake word; nobody was waiting, so no `Atomics.notify`. */
  WOKEN = 2,
  /** Set pending, bumped the wake word and `Atomics.notify`-ed a waiting thread. */
  KICKED = 3,
}

/** State names for `status()`. */
export type EvtchnStateName = 'closed' | 'unbound' | 'interdomain' | 'reserved';
const STATE_NAMES: readonly EvtchnStateName[] = ['closed', 'unbound', 'interdomain', 'reserved'];

/** `EVTCHNOP_status`: one port as seen at one instant. Remote fields are 0 when closed. */
export interface EvtchnPortStatus {
  readonly state: EvtchnStateName;
  /** unbound: the domain that may bind; interdomain: the peer. */
  readonly remoteDom: DomId;
  /** interdomain: the peer's port. */
  readonly remotePort: EvtchnPort;
  readonly pending: boolean;
  readonly masked: boolean;
}

/** Packs a BIND word; `dom` and `port` must already be validated against the config. */
export function bindWord(state: EvtchnState, dom: number, port: number): number {
  return state | (dom << BindBits.DOM_SHIFT) | (port << BindBits.PORT_SHIFT);
}

/** Remote domid of a BIND word. */
export function bindDom(bind: number): number {
  return (bind >>> BindBits.DOM_SHIFT) & BindBits.DOM_MASK;
}

/** Remote port of a BIND word. */
export function bindPort(bind: number): number {
  return (bind >>> BindBits.PORT_SHIFT) & BindBits.PORT_MASK;
}

/** The host's event-channel state; one instance per thread, all over the same buffer. */
export class EvtchnSpace {
  /** The shared buffer; hand it and `config` to a worker, which attaches with the constructor. */
  readonly buffer: SharedArrayBuffer;
  /** The sizes this space was created with (a plain object, safe to post). */
  readonly config: EvtchnSpaceConfig;
  /** The whole space as Int32 words; every field is read and written through `Atomics`. */
  readonly words: Int32Array;
  /** Int32 words per domain block. */
  readonly domainWords: number;

  /** Bytes needed for `cfg` (see the layout table). */
  static bytesFor(cfg: EvtchnSpaceConfig): number {
    checkConfig(cfg);
    return EvtchnHeader.SIZE + cfg.maxDomains * (DomainField.PORTS + cfg.portsPerDomain * PortField.SIZE);
  }

  /** Allocates and initialises a space; every domain starts dead with every port closed. */
  static create(cfg: EvtchnSpaceConfig): EvtchnSpace {
    const buffer = new SharedArrayBuffer(EvtchnSpace.bytesFor(cfg));
    const words = new Int32Array(buffer);
    // ORDERING: init before the buffer is posted to any worker; postMessage orders it.
    Atomics.store(words, EvtchnHeader.MAX_DOMAINS >> 2, cfg.maxDomains);
    Atomics.store(words, EvtchnHeader.PORTS_PER_DOMAIN >> 2, cfg.portsPerDomain);
    Atomics.store(words, EvtchnHeader.MAGIC >> 2, EVTCHN_MAGIC);
    return new EvtchnSpace(buffer, cfg);
  }

  /** Attaches to a space made by `create` (in this or another thread); the config must match. */
  constructor(buffer: SharedArrayBuffer, cfg: EvtchnSpaceConfig) {
    const bytes = EvtchnSpace.bytesFor(cfg);
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== bytes) {
      throw pvError('PV_ERR_CONFIG', `event-channel space must be a SharedArrayBuffer of ${bytes} bytes`);
    }
    this.buffer = buffer;
    this.config = { maxDomains: cfg.maxDomains, portsPerDomain: cfg.portsPerDomain };
    this.words = new Int32Array(buffer);
    this.domainWords = (DomainField.PORTS >> 2) + cfg.portsPerDomain * PortWord.SIZE;
    const w = this.words;
    // ORDERING: seq-cst loads of words written once before the buffer was shared.
    if (
      Atomics.load(w, EvtchnHeader.MAGIC >> 2) !== EVTCHN_MAGIC ||
      Atomics.load(w, EvtchnHeader.MAX_DOMAINS >> 2) !== cfg.maxDomains ||
      Atomics.load(w, EvtchnHeader.PORTS_PER_DOMAIN >> 2) !== cfg.portsPerDomain
    ) {
      throw pvError('PV_ERR_CONFIG', 'buffer is not an event-channel space created with this config');
    }
  }

  /** First word of domain `domid`'s block. Unchecked: callers validate `domid`. */
  domainIndex(domid: number): number {
    return (EvtchnHeader.SIZE >> 2) + domid * this.domainWords;
  }

  /** First word (BIND) of port `port` of `domid`. Unchecked: callers validate both. */
  portIndex(domid: number, port: number): number {
    return this.domainIndex(domid) + DomainWord.PORTS + port * PortWord.SIZE;
  }

  /** Throws PV_ERR_NO_DOMAIN unless `domid` has state in this space. */
  checkDomain(domid: number): void {
    if ((domid | 0) !== domid || domid < 0 || domid >= this.config.maxDomains) {
      throw pvError('PV_ERR_NO_DOMAIN', `domain ${domid} has no event channels (maxDomains ${this.config.maxDomains})`);
    }
  }

  /** Throws PV_ERR_EVTCHN_BAD_PORT unless `port` is a usable port number (1 .. P − 1). */
  checkPort(port: number): void {
    if ((port | 0) !== port || port < 1 || port >= this.config.portsPerDomain) {
      throw pvError('PV_ERR_EVTCHN_BAD_PORT', `port ${port} is not in [1, ${this.config.portsPerDomain})`);
    }
  }

  /** True between `resetDomain` and `closeDomain`. */
  isAlive(domid: number): boolean {
    this.checkDomain(domid);
    // ORDERING: seq-cst load pairs with the host's store in resetDomain/closeDomain.
    return Atomics.load(this.words, this.domainIndex(domid) + DomainWord.ALIVE) !== 0;
  }

  /**
   * Sets a port pending and wakes its domain unless it was already pending or is masked (Xen
   * `evtchn_2l_set_pending`). Unchecked: the indices come from validated or hypervisor-written words.
   */
  setPending(domid: number, port: number): Delivery {
    const w = this.words;
    const i = this.portIndex(domid, port);
    // ORDERING: seq-cst RMW pairs with the owner's testAndClearPending exchange: each clear is
    // followed by at most one 0 -> 1 transition, so only the first notify after a clear wakes.
    if (Atomics.exchange(w, i + PortWord.PENDING, 1) !== 0) return Delivery.COALESCED;
    // ORDERING: load after our exchange; pairs with unmask's exchange(MASK, 0) then load(PENDING)
    // (Dekker): either we see the port unmasked and wake, or unmask sees it pending and wakes.
    if (Atomics.load(w, i + PortWord.MASK) !== 0) return Delivery.MASKED;
    return this.wake(domid) ? Delivery.KICKED : Delivery.WOKEN;
  }

  /** Bumps `domid`'s wake word and notifies it if a thread is in waitForEvent; true if notified. */
  wake(domid: number): boolean {
    const w = this.words;
    const d = this.domainIndex(domid);
    // ORDERING: seq-cst add, then the load of WAITERS below. Pairs with waitForEvent's
    // add(WAITERS) then Atomics.wait's atomic re-check of WAKE: either we see a waiter and
    // notify, or its re-check sees our bump and it never sleeps. No lost wake-up either way.
    Atomics.add(w, d + DomainWord.WAKE, 1);
    // ORDERING: see the add above; skipping notify here is what keeps an unheard notify cheap.
    if (Atomics.load(w, d + DomainWord.WAITERS) === 0) return false;
    // ORDERING: wakes every thread of the domain sleeping on WAKE; each re-checks its ports.
    Atomics.notify(w, d + DomainWord.WAKE);
    return true;
  }

  /**
   * Closes one port (EVTCHNOP_close): an interdomain peer goes back to unbound (accepting a new
   * bind from `domid`) and is set pending, so a peer asleep in waitForEvent notices at once (Xen
   * does not raise it; pvio does, and by Xen's rules it is a spurious event handlers tolerate).
   * Returns the state the port was closed from. Unchecked indices; the caller checks ownership.
   */
  closePort(domid: number, port: number): EvtchnState {
    const w = this.words;
    const i = this.portIndex(domid, port);
    for (let tries = 0; tries < MAX_CAS_RETRIES; tries++) {
      // ORDERING: seq-cst load, then CAS on the same word: a peer's bind (unbound -> interdomain)
      // or close (interdomain -> unbound) in between makes the CAS fail and we re-read.
      const bind = Atomics.load(w, i + PortWord.BIND);
      const state = (bind & BindBits.STATE_MASK) as EvtchnState;
      if (state === EvtchnState.CLOSED) return state;
      // ORDERING: see the load above.
      if (Atomics.compareExchange(w, i + PortWord.BIND, bind, EvtchnState.CLOSED) !== bind) continue;
      // INVARIANT: an interdomain BIND word was written by bind with a validated peer.
      if (state === EvtchnState.INTERDOMAIN) this._unlinkPeer(domid, port, bindDom(bind), bindPort(bind));
      return state;
    }
    throw pvError('PV_ERR_EVTCHN_BAD_STATE', `port ${port} of domain ${domid} kept changing state while closing`);
  }

  /**
   * Host side, after a domain's threads have stopped: marks it dead (binds to it are refused),
   * closes every port (peers go back to unbound, pending and woken) and wakes its own waiters.
   * Returns how many ports were open.
   */
  closeDomain(domid: DomId): number {
    this.checkDomain(domid);
    const w = this.words;
    const d = this.domainIndex(domid);
    // ORDERING: seq-cst store before the sweep; a bind that loads ALIVE afterwards is refused, one
    // that loaded it before can only CAS a port the sweep has not closed yet, and the sweep sees it.
    Atomics.store(w, d + DomainWord.ALIVE, 0);
    let open = 0;
    for (let p = 1; p < this.config.portsPerDomain; p++) {
      if (this.closePort(domid, p) !== EvtchnState.CLOSED) open++;
      const i = this.portIndex(domid, p);
      // ORDERING: the port is closed; stale bits are also cleared again when it is next claimed.
      Atomics.store(w, i + PortWord.PENDING, 0);
      Atomics.store(w, i + PortWord.MASK, 0);
    }
    this.wake(domid);
    return open;
  }

  /**
   * Host side, when a domain is created (before its worker starts): closes anything left from a
   * previous domain with this id, clears its waiter count, and marks it alive.
   */
  resetDomain(domid: DomId): void {
    this.closeDomain(domid);
    const d = this.domainIndex(domid);
    // ORDERING: no thread of the new domain exists yet; WAKE keeps counting so stale snapshots differ.
    Atomics.store(this.words, d + DomainWord.WAITERS, 0);
    // ORDERING: seq-cst store; pairs with the ALIVE load in bind/alloc.
    Atomics.store(this.words, d + DomainWord.ALIVE, 1);
  }

  /** `EVTCHNOP_status` for any domain's port (host, tests, debugging). */
  status(domid: number, port: number): EvtchnPortStatus {
    this.checkDomain(domid);
    this.checkPort(port);
    const w = this.words;
    const i = this.portIndex(domid, port);
    // ORDERING: independent seq-cst loads; a snapshot, not a consistent cut across the three words.
    const bind = Atomics.load(w, i + PortWord.BIND);
    return {
      state: STATE_NAMES[bind & BindBits.STATE_MASK],
      remoteDom: bindDom(bind) as DomId,
      remotePort: bindPort(bind) as EvtchnPort,
      pending: Atomics.load(w, i + PortWord.PENDING) !== 0,
      masked: Atomics.load(w, i + PortWord.MASK) !== 0,
    };
  }

  /** Undoes the peer's half of a closed link, if it still points at (domid, port). */
  private _unlinkPeer(domid: number, port: number, peerDom: number, peerPort: number): void {
    const expected = bindWord(EvtchnState.INTERDOMAIN, domid, port);
    const unbound = bindWord(EvtchnState.UNBOUND, domid, 0);
    // ORDERING: CAS so a peer that closed its end concurrently (or rebound it) is left alone; the
    // seq-cst CAS orders the unlink before setPending, so a woken peer sees its port unbound.
    const seen = Atomics.compareExchange(this.words, this.portIndex(peerDom, peerPort), expected, unbound);
    if (seen === expected) this.setPending(peerDom, peerPort);
  }
}

function checkConfig(cfg: EvtchnSpaceConfig): void {
  const { maxDomains, portsPerDomain } = cfg;
  if (!Number.isInteger(maxDomains) || maxDomains < 1 || maxDomains > MAX_EVTCHN_DOMAINS) {
    throw pvError('PV_ERR_CONFIG', `maxDomains must be an integer in [1, ${MAX_EVTCHN_DOMAINS}], got ${maxDomains}`);
  }
  if (!Number.isInteger(portsPerDomain) || portsPerDomain < 2 || portsPerDomain > MAX_PORTS_PER_DOMAIN) {
    throw pvError(
      'PV_ERR_CONFIG',
      `portsPerDomain must be an integer in [2, ${MAX_PORTS_PER_DOMAIN}] (port 0 is reserved), got ${portsPerDomain}`,
    );
  }
}
