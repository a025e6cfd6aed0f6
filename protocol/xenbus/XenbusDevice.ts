/**
 * One xenbus state machine for both ends of a split device (reference §4.3-§4.4).
 *
 * The machine watches the peer's `state` key. A watch event only means "look again": each step
 * re-reads the peer's state, asks the role's table (`XenbusPolicy`) what to do, and does it; the
 * loop repeats until a step changes nothing. Steps never overlap, so hooks never run
 * concurrently, and coalesced, duplicated or spurious events cannot lose or repeat a transition.
 *
 * ```
 * toolstack: both dirs Initialising
 * backend  : probe → InitWait ─────────────── connect → Connected ── (front Closing) → Closing ─ (front Closed) → Closed
 * frontend :            (sees InitWait) setup → Initialised ── connected → Connected ── close() → Closing ── → Closed
 * ```
 * Reconnect: a frontend that sees its backend leave (dir removed, Closed, or a fresh instance in
 * Initialising/InitWait) withdraws its keys, goes Initialising, releases its ring, and sets up
 * again when the new backend reaches InitWait. A backend that is Closed and sees the frontend
 * Initialising goes back to InitWait.
 *
 * Every store write of the machine checks, in the same transaction, that its own directory still
 * exists; when the toolstack removed it (unplug), the machine releases its resources and stops.
 */

import { pvError } from '../errors.js';
import type { StoreOps, StoreTx, Unwatch } from '../Hypercalls.js';
import type { DomId } from '../Types.js';
import type { XenbusDeviceConfig } from './XenbusHooks.js';
import { backendDir, frontendDir, parseDomId } from './XenbusPaths.js';
import { type PeerState, XenbusState } from './XenbusState.js';
import { XenbusSteps } from './XenbusSteps.js';

/** Hook and configuration types, re-exported so drivers import one module. */
export type { BackendHooks, FrontendHooks, XenbusDeviceConfig, XenbusKeys } from './XenbusHooks.js';

interface Waiter {
  readonly target: XenbusState | 'closed';
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** The xenbus state machine of one end (frontend or backend) of one split device. */
export class XenbusDevice {
  readonly role: 'frontend' | 'backend';
  readonly store: StoreOps;
  readonly domid: DomId;
  readonly type: string;
  readonly devid: number;
  /** This side's directory. */
  readonly ownDir: string;
  private readonly _steps: XenbusSteps;
  private _peerDir = '';
  private _peerDomid = 0 as DomId;
  private _unwatch: Unwatch | undefined;
  private _waiters: Waiter[] = [];
  private _started = false;
  private _dirty = false;
  private _running = false;
  private _loopDone: Promise<void> = Promise.resolve();
  private _stopped = false;
  private _stopReason: Error | undefined;
  private _teardownDone: Promise<void> | undefined;

  constructor(readonly config: XenbusDeviceConfig) {
    this.role = config.role;
    this.store = config.store;
    this.domid = config.domid;
    this.type = config.type;
    this.devid = config.devid;
    this.ownDir =
      config.role === 'frontend'
        ? frontendDir(config.domid, config.type, config.devid)
        : backendDir(config.domid, config.type, config.frontDomid, config.devid);
    this._steps = new XenbusSteps(this, config, (s) => this._onState(s));
  }

  /** The peer's directory, read from our own `backend` / `frontend` key at start. */
  get peerDir(): string {
    return this._peerDir;
  }

  /** The peer's domain id, read from our own `backend-id` / `frontend-id` key at start. */
  get peerDomid(): DomId {
    return this._peerDomid;
  }

  /** The state this side last wrote. */
  get state(): XenbusState {
    return this._steps.state;
  }

  /** The peer's state as last read (`Unknown` for an invalid value), or undefined before the first read. */
  get peerState(): PeerState | undefined {
    return this._steps.peer;
  }

  /** The last error a hook or the store raised (the device went Closing because of it). */
  get lastError(): Error | undefined {
    return this._steps.lastError;
  }

  /** Own key holding the peer's directory. */
  get linkKey(): string {
    return this.role === 'frontend' ? 'backend' : 'frontend';
  }

  /** Reads a key of the peer's directory (undefined if missing). */
  readPeer(key: string, tx?: StoreTx): Promise<string | undefined> {
    return this.store.tryRead(`${this._peerDir}/${key}`, tx);
  }

  /**
   * Reads the cross links, normalises a leftover state, (backend) probes and goes InitWait, then
   * watches the peer. Resolves once the watch is registered; the handshake proceeds on its own.
   */
  async start(): Promise<void> {
    if (this._started) throw pvError('PV_ERR_INVALID_ARG', 'xenbus device already started');
    this._started = true;
    const cfg = this.config;
    const link = await this.store.tryRead(`${this.ownDir}/${this.linkKey}`);
    if (link === undefined || link[0] !== '/') {
      throw pvError('PV_ERR_STORE_NOENT', `${this.ownDir} is not a ${this.role} device directory`);
    }
    const idKey = `${this.linkKey}-id`;
    this._peerDomid = parseDomId(await this.store.tryRead(`${this.ownDir}/${idKey}`), idKey);
    if (cfg.role === 'backend' && this._peerDomid !== cfg.frontDomid) {
      throw pvError('PV_ERR_XENBUS_STATE', `${idKey} says ${this._peerDomid}, expected ${cfg.frontDomid}`);
    }
    this._peerDir = link;
    await this._steps.begin();
    this._unwatch = await this.store.watch(`${this._peerDir}/state`, () => this._kick());
  }

  /**
   * Resolves when this side's state is `target`; rejects if the machine stops first. A stopped
   * machine (closed, destroyed, unplugged) answers only for Closed: whatever it last wrote, it
   * is not connected to anything any more.
   */
  whenState(target: XenbusState): Promise<void> {
    if (this._stopped) {
      const closed = target === XenbusState.Closed && this._steps.state === XenbusState.Closed;
      return closed ? Promise.resolve() : Promise.reject(this._reason());
    }
    if (this._steps.state === target) return Promise.resolve();
    return new Promise((resolve, reject) => this._waiters.push({ target, resolve, reject }));
  }

  /** Resolves when this side is Connected. */
  whenConnected(): Promise<void> {
    return this.whenState(XenbusState.Connected);
  }

  /**
   * Orderly close (frontend: Closing, wait for the backend, Closed, release; backend: unplug).
   * Resolves when Closed with everything released, then the machine stops. A peer that never
   * answers keeps it pending: race it with a timer and call `destroy()`.
   */
  close(): Promise<void> {
    if (this._stopped || !this._started) return this._teardown();
    const done = new Promise<void>((resolve, reject) => this._waiters.push({ target: 'closed', resolve, reject }));
    this._steps.requestClose();
    this._kick();
    return done;
  }

  /**
   * Stops at once, like a crashed driver: no store writes; releases what is held (frontend
   * `disconnected`, backend `disconnect`). The toolstack cleans up the store.
   */
  async destroy(): Promise<void> {
    this._stop(pvError('PV_ERR_DISCONNECTED', 'xenbus device destroyed'));
    await this._loopDone;
    await this._teardown();
  }

  private _kick(): void {
    this._dirty = true;
    if (this._running || this._stopped) return;
    this._running = true;
    // A step never throws (errors become Closing); this only keeps a bug from going unhandled.
    this._loopDone = this._run().catch((err: unknown) => {
      this._stop(err instanceof Error ? err : new Error(String(err)));
    });
  }

  private async _run(): Promise<void> {
    try {
      while (this._dirty && !this._stopped) {
        this._dirty = false;
        if (await this._steps.step()) this._dirty = true;
        if (this._steps.gaveUp) this._rejectWaiters(this._steps.lastError ?? this._reason(), true);
        if (this._steps.unplugged) {
          this._stop(pvError('PV_ERR_DISCONNECTED', `${this.ownDir} was removed (device unplugged)`));
          await this._teardown();
        } else if (this._steps.isClosed()) {
          this._stop(pvError('PV_ERR_DISCONNECTED', 'xenbus device closed'));
          await this._teardown();
        }
      }
    } finally {
      this._running = false;
    }
  }

  private _onState(state: XenbusState): void {
    this.config.onState?.(state, this);
    const ready = this._waiters.filter((w) => w.target === state);
    this._waiters = this._waiters.filter((w) => w.target !== state);
    for (const w of ready) w.resolve();
  }

  private _stop(reason: Error): void {
    if (this._stopped) return;
    this._stopped = true;
    this._stopReason = reason;
  }

  private _reason(): Error {
    return this._stopReason ?? pvError('PV_ERR_DISCONNECTED', 'xenbus device stopped');
  }

  /** Unwatches and releases; runs once, outside any step. */
  private _teardown(): Promise<void> {
    this._stop(pvError('PV_ERR_DISCONNECTED', 'xenbus device stopped'));
    this._teardownDone ??= (async () => {
      const unwatch = this._unwatch;
      this._unwatch = undefined;
      // The connection may already be gone (domain teardown): nothing left to unregister then.
      if (unwatch !== undefined) await unwatch().catch(() => undefined);
      await this._steps.releaseAll();
      const closers = this._waiters.filter((w) => w.target === 'closed');
      for (const w of closers) w.resolve();
      this._waiters = this._waiters.filter((w) => w.target !== 'closed');
      this._rejectWaiters(this._reason(), false);
    })();
    return this._teardownDone;
  }

  /** Rejects pending waits; `keepClosing` spares those a machine heading for Closed will meet. */
  private _rejectWaiters(err: Error, keepClosing: boolean): void {
    const spared = (w: Waiter): boolean => w.target === 'closed' || (keepClosing && w.target === XenbusState.Closed);
    const rejected = this._waiters.filter((w) => !spared(w));
    this._waiters = this._waiters.filter((w) => !rejected.includes(w));
    for (const w of rejected) w.reject(err);
  }
}
