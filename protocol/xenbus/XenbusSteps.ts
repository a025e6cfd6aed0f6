/**
 * The per-role half of `XenbusDevice`: what the machine holds (ring set up, ring mapped, keys
 * published) and how each `XenbusPolicy` action is carried out against the store and the hooks.
 * `XenbusDevice` owns the lifecycle (start, watch, loop, waiters); this class owns one step.
 *
 * Errors: a hook that throws, an invalid peer state, or a store error sends the device to
 * Closing with `lastError` set (xenbus_dev_fatal). A backend disconnects first; a frontend keeps
 * its ring until the backend has let go of it, then releases it.
 */

import { type ErrorCode, pvError } from '../errors.js';
import { withTransaction } from '../Hypercalls.js';
import type { XenbusDevice } from './XenbusDevice.js';
import type { BackendConfig, FrontendConfig, XenbusDeviceConfig, XenbusKeys } from './XenbusHooks.js';
import { checkPublishedKeys, readKeys } from './XenbusPaths.js';
import { type BackendAction, backendAction, type FrontendAction, frontendAction } from './XenbusPolicy.js';
import {
  canTransition,
  formatState,
  PEER_GONE,
  type PeerState,
  parseState,
  stateName,
  XenbusState,
} from './XenbusState.js';

function codeOf(err: unknown): ErrorCode | string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Same keys and values, ignoring `state` (it changes while the connection stays the same). */
function sameKeys(a: XenbusKeys, b: XenbusKeys): boolean {
  const ka = Object.keys(a).filter((k) => k !== 'state');
  const kb = Object.keys(b).filter((k) => k !== 'state');
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** Per-role state and the execution of one step of a `XenbusDevice` (internal to the machine). */
export class XenbusSteps {
  /** State this side last wrote. */
  state = XenbusState.Unknown;
  /** Peer state as last read. */
  peer: PeerState | undefined;
  lastError: Error | undefined;
  /** Our own directory was removed: the device is unplugged. */
  unplugged = false;
  /** The frontend stopped reconnecting (see `maxReconnects`). */
  gaveUp = false;
  private _closing = false;
  /** Frontend found a leftover connected state at start: close it down first, then start over. */
  private _restart = false;
  /** Frontend: `setup` ran and `disconnected` has not. */
  private _holding = false;
  /** Backend: `connect` was entered and `disconnect` has not run since. */
  private _mapped = false;
  private _published: string[] = [];
  private _connectedKeys: XenbusKeys | undefined;
  private _failures = 0;

  constructor(
    private readonly _dev: XenbusDevice,
    private readonly _cfg: XenbusDeviceConfig,
    private readonly _emit: (state: XenbusState) => void,
  ) {}

  /** Start-up: take over the state found in the store; a backend probes and goes InitWait. */
  async begin(): Promise<void> {
    const raw = await this._dev.store.tryRead(`${this._dev.ownDir}/state`);
    this.state = raw === undefined ? XenbusState.Unknown : parseState(raw);
    this._emit(this.state);
    if (this._cfg.role === 'backend') {
      const features = (await this._cfg.hooks.probe?.(this._dev)) ?? {};
      checkPublishedKeys(features);
      await this._write(XenbusState.InitWait, features);
      return;
    }
    const s = this.state;
    if (s === XenbusState.Unknown || s === XenbusState.InitWait) await this._write(XenbusState.Initialising);
    // A previous frontend instance was attached: close down first (Linux xenbus_reset_frontend).
    else if (s !== XenbusState.Initialising && s !== XenbusState.Closed) this._restart = true;
  }

  /** `close()` was called. */
  requestClose(): void {
    this._closing = true;
  }

  /** Closed on request and nothing held any more. */
  isClosed(): boolean {
    return this._closing && this.state === XenbusState.Closed && !this._holding && !this._mapped;
  }

  /** One step: re-read, decide, act. True when something changed (look again). */
  async step(): Promise<boolean> {
    try {
      const dev = this._dev;
      if ((await dev.store.tryRead(`${dev.ownDir}/${dev.linkKey}`)) === undefined) {
        this.unplugged = true;
        return false;
      }
      this.peer = await this._readPeerState();
      if (this._cfg.role === 'backend') {
        return await this._back(backendAction({ state: this.state, peer: this.peer, closing: this._closing }));
      }
      if (this._restart && this.state === XenbusState.Closed) this._restart = false;
      const view = {
        state: this.state,
        peer: this.peer,
        closing: this._closing || this._restart,
        holding: this._holding,
        eager: this._cfg.eager ?? false,
      };
      return await this._front(frontendAction(view), this._cfg);
    } catch (err) {
      return this._fatal(err);
    }
  }

  /** Releases whatever is held (destroy, unplug). */
  async releaseAll(): Promise<void> {
    await this._release();
    await this._disconnect();
  }

  private async _front(action: FrontendAction, cfg: FrontendConfig): Promise<boolean> {
    switch (action) {
      case 'none':
        return false;
      case 'setup': {
        const keys = await this._snapshotPeer();
        if (keys === undefined) return false;
        let published: XenbusKeys;
        try {
          published = await cfg.hooks.setup(this._dev, keys);
        } catch (err) {
          return this._fatal(err);
        }
        this._holding = true;
        checkPublishedKeys(published);
        await this._write(XenbusState.Initialised, published);
        this._published = Object.keys(published);
        return true;
      }
      case 'connected': {
        const keys = await this._snapshotPeer();
        if (keys === undefined) return false;
        try {
          await cfg.hooks.connected(this._dev, keys);
        } catch (err) {
          return this._fatal(err);
        }
        await this._write(XenbusState.Connected);
        this._failures = 0;
        return true;
      }
      case 'closing':
        await this._write(XenbusState.Closing);
        return true;
      case 'closed':
        await this._write(XenbusState.Closed);
        return true;
      case 'reset':
        if (!this._budget(cfg)) return true;
        // Withdraw the offer before freeing it, so a new backend cannot map a ring we free.
        await this._write(XenbusState.Initialising, {}, this._published);
        this._published = [];
        await this._release();
        return true;
      case 'release':
        await this._release();
        return true;
      case 'reconnect':
        if (!this._budget(cfg)) return true;
        await this._write(XenbusState.Initialising);
        return true;
    }
  }

  private async _back(action: BackendAction): Promise<boolean> {
    switch (action) {
      case 'none':
        return false;
      case 'connect':
      case 'recheck': {
        const keys = await this._snapshotPeer();
        if (keys === undefined) return false;
        if (action === 'recheck' && this._connectedKeys !== undefined && sameKeys(keys, this._connectedKeys)) {
          return false;
        }
        return this._connect(keys, this._cfg as BackendConfig);
      }
      case 'initWait':
        await this._disconnect();
        await this._write(XenbusState.InitWait);
        return true;
      case 'closing':
        await this._write(XenbusState.Closing);
        return true;
      case 'closed':
        await this._disconnect();
        await this._write(XenbusState.Closed);
        return true;
      case 'fatal':
        return this._fatal(pvError('PV_ERR_XENBUS_STATE', 'the frontend state is not a valid xenbus state'));
    }
  }

  private async _connect(keys: XenbusKeys, cfg: BackendConfig): Promise<boolean> {
    // Precondition of every connect, as blkback's frontend_changed enforces it.
    await this._disconnect();
    let props: XenbusKeys;
    try {
      this._mapped = true;
      props = (await cfg.hooks.connect(this._dev, keys)) ?? {};
      checkPublishedKeys(props);
    } catch (err) {
      return this._fatal(err);
    }
    await this._write(XenbusState.Connected, props);
    this._connectedKeys = keys;
    return true;
  }

  /** Counts a reconnect; past the budget, gives up and closes. */
  private _budget(cfg: FrontendConfig): boolean {
    const max = cfg.maxReconnects ?? 8;
    if (++this._failures <= max) return true;
    this.gaveUp = true;
    this._closing = true;
    this.lastError = pvError('PV_ERR_DISCONNECTED', `no connection after ${max} reconnect attempts`);
    return false;
  }

  /** xenbus_dev_fatal: record, (backend) disconnect, go Closing. True if the state changed. */
  private async _fatal(err: unknown): Promise<boolean> {
    if (this.unplugged) return false;
    this.lastError = toError(err);
    try {
      await this._disconnect();
      if (this.state === XenbusState.Closing || this.state === XenbusState.Closed) return false;
      await this._write(XenbusState.Closing);
      return true;
    } catch {
      // The store refused even that (or the device was unplugged): the next event retries.
      return false;
    }
  }

  private async _release(): Promise<void> {
    if (!this._holding || this._cfg.role !== 'frontend') return;
    this._holding = false;
    try {
      await this._cfg.hooks.disconnected(this._dev);
    } catch (err) {
      this.lastError = toError(err);
    }
  }

  private async _disconnect(): Promise<void> {
    if (!this._mapped || this._cfg.role !== 'backend') return;
    this._mapped = false;
    this._connectedKeys = undefined;
    try {
      await this._cfg.hooks.disconnect(this._dev);
    } catch (err) {
      this.lastError = toError(err);
    }
  }

  private async _readPeerState(): Promise<PeerState> {
    try {
      const raw = await this._dev.readPeer('state');
      return raw === undefined ? PEER_GONE : parseState(raw);
    } catch (err) {
      // A peer directory we may not read is as untrusted as a garbage value.
      if (codeOf(err) === 'PV_ERR_STORE_PERM') return XenbusState.Unknown;
      throw err;
    }
  }

  /** The peer's keys as one consistent snapshot; undefined if its directory vanished. */
  private async _snapshotPeer(): Promise<XenbusKeys | undefined> {
    try {
      return await readKeys(this._dev.store, this._dev.peerDir);
    } catch (err) {
      if (codeOf(err) === 'PV_ERR_STORE_NOENT') return undefined;
      throw err;
    }
  }

  /** Writes our state (+ keys, − removed keys) in one transaction that checks our dir exists. */
  private async _write(next: XenbusState, keys: XenbusKeys = {}, remove: readonly string[] = []): Promise<void> {
    const role = this._cfg.role;
    if (!canTransition(role, this.state, next)) {
      throw pvError('PV_ERR_XENBUS_STATE', `${role} may not go from ${stateName(this.state)} to ${stateName(next)}`);
    }
    const { store, ownDir, linkKey } = this._dev;
    await withTransaction(store, async (tx) => {
      if ((await store.tryRead(`${ownDir}/${linkKey}`, tx)) === undefined) {
        this.unplugged = true;
        throw pvError('PV_ERR_DISCONNECTED', `${ownDir} was removed`);
      }
      for (const key of remove) {
        if ((await store.tryRead(`${ownDir}/${key}`, tx)) !== undefined) await store.rm(`${ownDir}/${key}`, tx);
      }
      for (const [key, value] of Object.entries(keys)) await store.write(`${ownDir}/${key}`, value, tx);
      await store.write(`${ownDir}/state`, formatState(next), tx);
    });
    if (next !== this.state) {
      this.state = next;
      this._emit(next);
    }
  }
}
