/**
 * `EvtchnOps` for one domain over the host's shared `EvtchnSpace` (Xen `event_channel.h`,
 * 2-level ABI semantics; reference protocol.md §3).
 *
 * Every call runs in the calling thread, as a hypercall runs on the calling vCPU: no messages,
 * only `Atomics` on the shared words. The domain id is fixed at construction and every port
 * number is a port of this domain, so a domain can reach another domain's ports only through
 * what the protocol allows: binding to a port that accepts it, and notifying its bound peer.
 *
 * Fast path: `notify` on an already-pending peer is one load and one exchange; on an idle peer
 * it is an exchange, a mask load, an add and a load of the waiter count. `Atomics.notify`
 * (a kick, DESIGN §4) is issued only when a thread of the peer domain is inside `waitForEvent`.
 */

import { pvError } from '../../protocol/errors.js';
import type { EvtchnOps, WaitOptions } from '../../protocol/Hypercalls.js';
import { DomainCounter } from '../../protocol/monitor/MonitorLayout.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import type { DomId, EvtchnPort } from '../../protocol/Types.js';
import { adaptiveWait } from '../../protocol/wait.js';
import {
  BindBits,
  bindDom,
  bindPort,
  bindWord,
  Delivery,
  DomainWord,
  type EvtchnPortStatus,
  type EvtchnSpace,
  EvtchnState,
  PortWord,
} from './EvtchnSpace.js';

/**
 * Per-domain notify counters, plain fields so counting costs one add. Not shared memory: each
 * `SimEvtchnOps` counts what its own thread sent. Example snapshot:
 * `{ "sent": 10, "woke": 7, "coalesced": 3, "masked": 1, "kicks": 2 }`.
 */
export class EvtchnCounters {
  /** `notify` calls. */
  sent = 0;
  /** Notifies that set the peer pending from 0 (the ones that can wake it; includes masked). */
  woke = 0;
  /** Notifies that found the peer already pending and were absorbed by the earlier event. */
  coalesced = 0;
  /** Of `woke`: the peer port was masked, so the wake waits for its unmask. */
  masked = 0;
  /** Of `woke`: a peer thread was in waitForEvent, so `Atomics.notify` was issued. */
  kicks = 0;

  /** A plain-object snapshot. */
  snapshot(): Record<string, number> {
    return { sent: this.sent, woke: this.woke, coalesced: this.coalesced, masked: this.masked, kicks: this.kicks };
  }
}

/** One domain's event-channel hypercalls over the host's shared `EvtchnSpace`. */
export class SimEvtchnOps implements EvtchnOps {
  /** The calling domain; every port number passed in is one of its ports. */
  readonly domid: DomId;
  /** The host's shared event-channel state. */
  readonly space: EvtchnSpace;
  /** Notify counters of this instance. */
  readonly counters = new EvtchnCounters();

  private readonly _words: Int32Array;
  private readonly _ports: number;
  private readonly _wake: number;
  private readonly _waiters: number;
  /** Next-fit start for port allocation: a just-closed port is reused last, so a late notify
   * from its old peer lands on a closed port rather than on a new channel. */
  private _nextPort = 1;

  /** Monitor counters of the domain (DomainCounter order): shared when the host has a monitor. */
  private readonly _mon: Float64Array;

  /**
   * Binds the ops to `domid` (which must have state in `space`). `monitor`: the domain's
   * counters in the host's monitor buffer (this thread is their only writer); absent, private.
   */
  constructor(domid: DomId, space: EvtchnSpace, monitor?: Float64Array) {
    space.checkDomain(domid);
    this._mon = monitor ?? new Float64Array(DomainCounter.COUNT);
    this.domid = domid;
    this.space = space;
    this._words = space.words;
    this._ports = space.config.portsPerDomain;
    this._wake = space.domainIndex(domid) + DomainWord.WAKE;
    this._waiters = space.domainIndex(domid) + DomainWord.WAITERS;
  }

  /** `EVTCHNOP_alloc_unbound`: claims a free local port that only `remote` may bind to. */
  allocUnbound(remote: DomId): EvtchnPort {
    this.space.checkDomain(remote);
    this._checkSelfAlive();
    const port = this._claimPort();
    // ORDERING: seq-cst store publishes the port (reserved -> unbound) after its bits were
    // cleared; a binder's CAS can only succeed on this exact value.
    Atomics.store(this._words, this.space.portIndex(this.domid, port), bindWord(EvtchnState.UNBOUND, remote, 0));
    return port as EvtchnPort;
  }

  /**
   * `EVTCHNOP_bind_interdomain`: links a new local port to `remotePort` of `remote`, which must be
   * unbound and accept this domain (else PV_ERR_EVTCHN_BAD_STATE). The new port starts pending
   * (XE:92), so a handler must re-check its ring after binding.
   */
  bindInterdomain(remote: DomId, remotePort: EvtchnPort): EvtchnPort {
    const space = this.space;
    space.checkPort(remotePort);
    if (!space.isAlive(remote)) throw pvError('PV_ERR_NO_DOMAIN', `domain ${remote} is not running`);
    this._checkSelfAlive();
    const w = this._words;
    const port = this._claimPort();
    const local = space.portIndex(this.domid, port);
    // ORDERING: publish our end before linking the remote one, so from the instant the CAS below
    // succeeds both ends are consistent; until then nobody else knows `port`.
    Atomics.store(w, local + PortWord.BIND, bindWord(EvtchnState.INTERDOMAIN, remote, remotePort));
    const expected = bindWord(EvtchnState.UNBOUND, this.domid, 0);
    // ORDERING: one seq-cst CAS checks "unbound AND accepts us" and links the remote end; the
    // owner's close or another binder either wins before us (we fail) or after (sees interdomain).
    const seen = Atomics.compareExchange(
      w,
      space.portIndex(remote, remotePort) + PortWord.BIND,
      expected,
      bindWord(EvtchnState.INTERDOMAIN, this.domid, port),
    );
    if (seen !== expected) {
      // ORDERING: release our half link; the remote end never pointed at it.
      Atomics.store(w, local + PortWord.BIND, EvtchnState.CLOSED);
      throw pvError('PV_ERR_EVTCHN_BAD_STATE', describeRefusal(seen, this.domid, remote, remotePort));
    }
    space.setPending(this.domid, port);
    return port as EvtchnPort;
  }

  /** `EVTCHNOP_send`: sets the peer pending; wakes its domain unless already pending or masked. */
  notify(port: EvtchnPort): void {
    const i = this._index(port);
    // ORDERING: seq-cst load of our BIND word; pairs with the CAS in bind/close that wrote it.
    const bind = Atomics.load(this._words, i + PortWord.BIND);
    if ((bind & BindBits.STATE_MASK) !== EvtchnState.INTERDOMAIN) {
      throw pvError('PV_ERR_EVTCHN_BAD_STATE', `port ${port} of domain ${this.domid} is not interdomain`);
    }
    const c = this.counters;
    c.sent++;
    this._mon[DomainCounter.NOTIFIES]++;
    // INVARIANT: an interdomain BIND word names a validated peer (written by bindInterdomain).
    const delivery = this.space.setPending(bindDom(bind), bindPort(bind));
    if (delivery === Delivery.COALESCED) {
      c.coalesced++;
      return;
    }
    c.woke++;
    if (delivery === Delivery.MASKED) c.masked++;
    else if (delivery === Delivery.KICKED) c.kicks++;
  }

  /** `EVTCHNOP_close`: frees the port; an interdomain peer goes back to unbound, pending. */
  close(port: EvtchnPort): void {
    const i = this._index(port);
    // ORDERING: seq-cst load; only this domain (or the host) moves a port to or from closed/reserved.
    const state = Atomics.load(this._words, i + PortWord.BIND) & BindBits.STATE_MASK;
    if (state === EvtchnState.CLOSED || state === EvtchnState.RESERVED) {
      throw pvError('PV_ERR_EVTCHN_BAD_STATE', `port ${port} of domain ${this.domid} is not open`);
    }
    this.space.closePort(this.domid, port);
  }

  /** Masks the port: notifies keep it pending but do not wake (the edge is lost until unmask). */
  mask(port: EvtchnPort): void {
    // ORDERING: seq-cst store; a notifier that loads MASK after it does not wake us.
    Atomics.store(this._words, this._index(port) + PortWord.MASK, 1);
  }

  /** `EVTCHNOP_unmask`: if the port was masked and is pending, the domain is woken now. */
  unmask(port: EvtchnPort): void {
    const i = this._index(port);
    // ORDERING: seq-cst exchange then load of PENDING; pairs with setPending's exchange(PENDING)
    // then load(MASK) (Dekker): an event raised while masked is woken here or by its notifier.
    if (Atomics.exchange(this._words, i + PortWord.MASK, 0) === 0) return;
    // ORDERING: see the exchange above.
    if (Atomics.load(this._words, i + PortWord.PENDING) !== 0) this.space.wake(this.domid);
  }

  /** Clears and returns the pending bit; call it before scanning the ring, then re-check. */
  testAndClearPending(port: EvtchnPort): boolean {
    // ORDERING: seq-cst exchange pairs with setPending's exchange: a notify after this clear
    // finds 0 and wakes again; one before it is reported here.
    return Atomics.exchange(this._words, this._index(port) + PortWord.PENDING, 0) !== 0;
  }

  /** Reads the pending bit without clearing it. */
  isPending(port: EvtchnPort): boolean {
    // ORDERING: seq-cst load pairs with setPending's exchange.
    return Atomics.load(this._words, this._index(port) + PortWord.PENDING) !== 0;
  }

  /** This domain's wake word; take it before checking ports, then pass it to waitForEvent. */
  wakeSnapshot(): number {
    // ORDERING: seq-cst load pairs with wake()'s add; a notify after this snapshot changes WAKE.
    return Atomics.load(this._words, this._wake);
  }

  /**
   * Spins `spinBudget` polls, then sleeps until the wake word differs from `snapshot` or
   * `timeoutMs` passes. True if it changed (a futex wake: re-check ports, it may be spurious).
   */
  waitForEvent(snapshot: number, opts: WaitOptions): boolean {
    // Stage ledger: the whole wait, waiter bookkeeping included, is IDLE (protocol/wait.ts).
    const prev = stages.enter(Stage.IDLE);
    try {
      return this._wait(snapshot, opts);
    } finally {
      stages.enter(prev);
    }
  }

  private _wait(snapshot: number, opts: WaitOptions): boolean {
    const w = this._words;
    // Spin phase (with a zero budget: one poll). Spinners do not count as sleepers, so a notify
    // while we only spin costs the notifier no Atomics.notify.
    if (adaptiveWait(w, this._wake, snapshot, opts.spinBudget, 0) === 'changed') return true;
    if (opts.timeoutMs <= 0) return false;
    // ORDERING: register as a sleeper before Atomics.wait re-checks WAKE; pairs with wake()'s
    // add(WAKE) then load(WAITERS), see EvtchnSpace.wake.
    Atomics.add(w, this._waiters, 1);
    try {
      return adaptiveWait(w, this._wake, snapshot, 0, opts.timeoutMs) === 'changed';
    } finally {
      // ORDERING: after waking; a notifier that still sees us only pays for a no-op notify.
      Atomics.sub(w, this._waiters, 1);
    }
  }

  /** Wakes this domain's waiters with no event (control-plane work for the domain's loop). */
  kickSelf(): void {
    this.space.wake(this.domid);
  }

  /** `EVTCHNOP_status` of one of this domain's ports. */
  status(port: EvtchnPort): EvtchnPortStatus {
    return this.space.status(this.domid, port);
  }

  /** Word index of one of our ports; PV_ERR_EVTCHN_BAD_PORT for 0, out of range or non-integers. */
  private _index(port: number): number {
    if ((port | 0) !== port || port < 1 || port >= this._ports) this.space.checkPort(port);
    return this.space.portIndex(this.domid, port);
  }

  private _checkSelfAlive(): void {
    if (!this.space.isAlive(this.domid)) {
      throw pvError('PV_ERR_NO_DOMAIN', `domain ${this.domid} is not running (no resetDomain, or closed)`);
    }
  }

  /** Claims a closed port (closed -> reserved) with a bounded next-fit search; bits cleared. */
  private _claimPort(): number {
    const w = this._words;
    const usable = this._ports - 1;
    let port = this._nextPort;
    for (let n = 0; n < usable; n++) {
      const i = this.space.portIndex(this.domid, port);
      const next = port + 1 < this._ports ? port + 1 : 1;
      // ORDERING: CAS against another thread of this domain claiming the same port; binders
      // cannot see a reserved port (their CAS expects unbound).
      if (Atomics.compareExchange(w, i + PortWord.BIND, EvtchnState.CLOSED, EvtchnState.RESERVED) === 0) {
        // ORDERING: clear stale bits (a late notify from an old peer) before the seq-cst store that
        // publishes the port, which orders these stores before any peer can use it.
        Atomics.store(w, i + PortWord.PENDING, 0);
        Atomics.store(w, i + PortWord.MASK, 0);
        this._nextPort = next;
        return port;
      }
      port = next;
    }
    throw pvError('PV_ERR_EVTCHN_NO_SPACE', `domain ${this.domid} has no free port (${usable} in use)`);
  }
}

/** Why a bind was refused, for the error message. */
function describeRefusal(seen: number, self: number, remote: number, remotePort: number): string {
  const state = seen & BindBits.STATE_MASK;
  const where = `port ${remotePort} of domain ${remote}`;
  if (state === EvtchnState.UNBOUND) return `${where} accepts domain ${bindDom(seen)}, not ${self}`;
  if (state === EvtchnState.INTERDOMAIN) return `${where} is already bound to ${bindDom(seen)}:${bindPort(seen)}`;
  return `${where} is not unbound`;
}
