/**
 * The driver domain's ring-serving loop: one thread serves every connected frontend's ring.
 *
 * Per round it takes at most `batchLimit` requests from each ring (bounded work per ring per
 * round), in passes of at most `quantum` requests per ring, publishing each ring's responses
 * after every pass: a request that lands on a quiet ring while a neighbour's ring is full waits
 * behind one pass (`quantum` requests of each busy ring), not behind the neighbour's whole
 * batch, and its response goes out at once (XSA-332/392: a flooding guest cannot starve a
 * neighbour). The notify the frontend asked for (rsp_event) is sent as soon as its ring is
 * empty, else at the end of the round: a ring kept full costs one notify per round. After a
 * pass in which more than one ring had work, the pollers run too (an RDMA backend's doorbells
 * are a poller), so the quiet guest's work reaches the device without waiting for the
 * flooder's batch; a ring served alone keeps whole-round batching. Each request is copied out
 * of the shared slot once before the handler sees it (XSA-155), and the handler writes the
 * response slot. When no ring has work it re-arms every ring's `req_event` with the final
 * check and sleeps on the domain's wake word (spin budget first). A ring whose frontend
 * violates the protocol (producer overflow, XSA-39) is halted and reported; the others go on.
 * The loop yields to the event loop regularly so store watches and control messages are
 * delivered.
 */

import { type ErrorCode, PvError } from '../../protocol/errors.js';
import type { EvtchnOps } from '../../protocol/Hypercalls.js';
import type { BackRing } from '../../protocol/ring/BackRing.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import type { EvtchnPort } from '../../protocol/Types.js';

/**
 * Serves one request. `req` is the backend's private copy; write the whole response slot.
 * Return `false` to defer: the request stays consumed but unanswered, the ring stalls behind it
 * (so per-ring order is kept), and the same private copy is offered again next round — the
 * backpressure a backend applies when a private resource (bounce buffers) is exhausted.
 */
export type RequestHandler = (req: Int32Array, rsp: Int32Array, rspWord: number) => boolean | undefined;

/** Extra work the serving loop runs every round (e.g. draining device completion queues). */
export interface Poller {
  /** Does pending work; returns how much was done. */
  poll(): number;
  /** True while work is in flight that will need polling (the loop then does not sleep long). */
  outstanding(): boolean;
}

/** Called when a ring is halted for a protocol violation. */
export type FatalHandler = (code: ErrorCode, message: string) => void;

/** Tuning of the serving loop. */
export interface RingServerOptions {
  /** Most requests taken from one ring per round. */
  readonly batchLimit?: number;
  /** Most requests taken from one ring per pass of a round (default 1; `batchLimit`: no interleaving). */
  readonly quantum?: number;
  /** Polls of the wake word before sleeping. */
  readonly spinBudget?: number;
  /** Longest sleep before yielding to the event loop (ms). */
  readonly idleTimeoutMs?: number;
  /** Rounds between forced yields to the event loop while busy. */
  readonly yieldEvery?: number;
}

interface ServedRing {
  readonly ring: BackRing;
  readonly port: EvtchnPort;
  readonly handler: RequestHandler;
  readonly onFatal: FatalHandler;
  readonly priv: Int32Array;
  dead: boolean;
  /** A consumed request whose handler deferred it; offered again before anything else. */
  deferred: boolean;
  /** Requests taken in the current round. */
  taken: number;
  /** The frontend asked for a notify (rsp_event passed) that was held back until the round ends. */
  owesNotify: boolean;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class RingServer {
  private readonly _rings = new Map<number, ServedRing>();
  private readonly _pollers = new Map<number, Poller>();
  private _nextId = 1;
  private _running = false;
  private readonly _batchLimit: number;
  private readonly _quantum: number;
  private readonly _spinBudget: number;
  private readonly _idleTimeoutMs: number;
  private readonly _yieldEvery: number;
  /**
   * Rounds served, sleeps taken (and how many ended by timeout), rings halted, requests served,
   * passes in which more than one ring had work (each ran the pollers early).
   */
  readonly stats = { rounds: 0, sleeps: 0, idleTimeouts: 0, halted: 0, requests: 0, contendedPasses: 0 };

  constructor(
    private readonly _evtchn: EvtchnOps,
    opts: RingServerOptions = {},
  ) {
    this._batchLimit = opts.batchLimit ?? 64;
    this._quantum = Math.max(1, Math.min(opts.quantum ?? 1, this._batchLimit));
    this._spinBudget = opts.spinBudget ?? 1000;
    this._idleTimeoutMs = opts.idleTimeoutMs ?? 20;
    this._yieldEvery = opts.yieldEvery ?? 1024;
  }

  /** Starts serving `ring`, notifying `port` when the frontend asked for it. Returns an id. */
  add(ring: BackRing, port: EvtchnPort, handler: RequestHandler, onFatal: FatalHandler = () => {}): number {
    const id = this._nextId++;
    this._rings.set(id, {
      ring,
      port,
      handler,
      onFatal,
      priv: new Int32Array(ring.slotWords),
      dead: false,
      deferred: false,
      taken: 0,
      owesNotify: false,
    });
    // Wake the loop so it picks the new ring up even if it is asleep.
    this._evtchn.kickSelf();
    return id;
  }

  /** Stops serving a ring (after disconnect). */
  remove(id: number): void {
    this._rings.delete(id);
  }

  /** Adds work to run every round; returns an id for `removePoller`. */
  addPoller(p: Poller): number {
    const id = this._nextId++;
    this._pollers.set(id, p);
    this._evtchn.kickSelf();
    return id;
  }

  /** Removes a poller. */
  removePoller(id: number): void {
    this._pollers.delete(id);
  }

  /** Number of rings served (halted ones included until removed). */
  get size(): number {
    return this._rings.size;
  }

  /** One round over all rings, in passes (see the file comment); returns the work done. */
  serveOnce(): number {
    let requests = 0;
    let polled = 0;
    for (const r of this._rings.values()) r.taken = 0;
    for (;;) {
      let pass = 0;
      let active = 0;
      for (const r of this._rings.values()) {
        if (r.dead || r.taken >= this._batchLimit) continue;
        const n = this._serveRing(r, Math.min(this._quantum, this._batchLimit - r.taken));
        // An empty ring is looked at again next pass (a quiet guest's request may land meanwhile);
        // a stalled one (deferred) is retried next round, not once per pass.
        r.taken = n === 0 && r.deferred ? this._batchLimit : r.taken + n;
        pass += n;
        if (n > 0) active++;
      }
      if (pass === 0) break;
      requests += pass;
      if (active > 1) {
        // Contended: let the device see this pass's work now, not after the busiest ring's batch.
        this.stats.contendedPasses++;
        for (const p of this._pollers.values()) polled += p.poll();
      }
    }
    for (const r of this._rings.values()) {
      if (!r.owesNotify || r.dead) continue;
      // Stage ledger: the notify is ring work, as in `_serveRing`.
      const prev = stages.enter(Stage.RING);
      this._notify(r);
      stages.enter(prev);
    }
    for (const p of this._pollers.values()) polled += p.poll();
    this.stats.rounds++;
    this.stats.requests += requests + polled;
    return requests + polled;
  }

  /** Serves until `stop()`; resolves when stopped. */
  async run(): Promise<void> {
    this._running = true;
    let rounds = 0;
    while (this._running) {
      // Snapshot, then clear pending bits before scanning (Xen clears pending before it scans),
      // so a notify that arrives during the scan bumps the wake word and ends the next sleep.
      const snapshot = this._evtchn.wakeSnapshot();
      for (const r of this._rings.values()) this._evtchn.testAndClearPending(r.port);
      if (this.serveOnce() > 0) {
        if (++rounds % this._yieldEvery === 0) await yieldToEventLoop();
        continue;
      }
      if (this._finalCheck()) continue;
      this.stats.sleeps++;
      // Work in flight elsewhere (device completions, deferred requests) is not announced on
      // our wake word: poll again soon instead of sleeping for the idle timeout.
      const busy = this._hasOutstanding();
      const woke = this._evtchn.waitForEvent(snapshot, {
        spinBudget: this._spinBudget,
        timeoutMs: busy ? 0 : this._idleTimeoutMs,
      });
      if (!woke) this.stats.idleTimeouts++;
      // Deliver store watches and control messages before the next round.
      await yieldToEventLoop();
    }
  }

  /** Ends `run()` after the current round. */
  stop(): void {
    this._running = false;
    this._evtchn.kickSelf();
  }

  private _hasOutstanding(): boolean {
    for (const p of this._pollers.values()) if (p.outstanding()) return true;
    for (const r of this._rings.values()) if (r.deferred && !r.dead) return true;
    return false;
  }

  private _finalCheck(): boolean {
    // Stage ledger: re-arming req_event before a sleep is ring work.
    const prev = stages.enter(Stage.RING);
    let pending = false;
    for (const r of this._rings.values()) {
      if (r.dead) continue;
      try {
        if (r.ring.finalCheckForRequests()) pending = true;
      } catch (err) {
        this._halt(r, err);
      }
    }
    stages.enter(prev);
    return pending;
  }

  /**
   * Stage ledger: once a ring has work, taking requests out of it, committing and pushing
   * responses and the notify are RING; the handler runs in the caller's stage (HOME: backend),
   * with its own GRANT / DEVICE sections. Looking at an empty ring is part of the serving loop.
   */
  private _serveRing(r: ServedRing, max: number): number {
    const ring = r.ring;
    let done = 0;
    let prev = Stage.HOME;
    let entered = false;
    try {
      if (r.deferred) {
        prev = stages.enter(Stage.RING);
        entered = true;
        // INVARIANT: r.priv still holds the private copy of the deferred request.
        if (!this._answer(r, prev)) return 0;
        r.deferred = false;
        done++;
      }
      let n = ring.unconsumedRequests();
      if (n > 0 && !entered) {
        prev = stages.enter(Stage.RING);
        entered = true;
      }
      if (n > max - done) n = max - done;
      for (let i = 0; i < n; i++) {
        ring.copyRequest(r.priv);
        if (!this._answer(r, prev)) {
          r.deferred = true;
          break;
        }
        done++;
      }
      if (done === 0) return 0;
      ring.counters.batches++;
      ring.counters.batchedItems += done;
      if (ring.pushResponses()) r.owesNotify = true;
      // A guest with nothing left on its ring is waiting for us: tell it now. One that keeps its
      // ring full has work in flight and hears at the end of the round, so a flood of requests
      // costs one notify per round, not one per pass.
      if (r.owesNotify && ring.unconsumedRequests() === 0) this._notify(r);
      return done;
    } catch (err) {
      // Handlers answer bad requests with error statuses; a throw here is a protocol violation
      // (producer overflow) or a backend bug, and only the ring it happened on is halted.
      this._halt(r, err);
      return done;
    } finally {
      if (entered) stages.enter(prev);
    }
  }

  /**
   * Runs the handler on the private copy (in stage `outer`, the loop's own); commits the
   * response unless it deferred.
   */
  private _answer(r: ServedRing, outer: Stage): boolean {
    // INVARIANT: one response slot per consumed request (unconsumedRequests clamps to room).
    const slot = r.ring.nextResponseSlot();
    stages.enter(outer);
    const ok = r.handler(r.priv, r.ring.words, slot) !== false;
    stages.enter(Stage.RING);
    if (!ok) return false;
    r.ring.commitResponse();
    return true;
  }

  private _notify(r: ServedRing): void {
    r.owesNotify = false;
    this._evtchn.notify(r.port);
  }

  private _halt(r: ServedRing, err: unknown): void {
    r.dead = true;
    this.stats.halted++;
    const code: ErrorCode = err instanceof PvError ? err.code : 'PV_ERR_RING_DEAD';
    r.onFatal(code, err instanceof Error ? err.message : String(err));
  }
}
