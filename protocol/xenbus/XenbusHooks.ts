/**
 * What a driver plugs into `XenbusDevice`: per-role hooks and the configuration.
 *
 * Hooks do the side effects (allocate, grant, map, bind, free); the machine does every store
 * write. A hook returns the keys it wants published and the machine writes them together with
 * the next state in one transaction, retried on PV_ERR_STORE_AGAIN. So a retry never repeats an
 * allocation (which a hook writing inside the retried transaction would), and the peer sees the
 * keys and the state change at once (changes in a transaction fire watches only at commit).
 *
 * Hooks run one at a time, never concurrently with each other on the same device.
 */

import type { StoreOps } from '../Hypercalls.js';
import type { DomId } from '../Types.js';
import type { XenbusDevice } from './XenbusDevice.js';
import type { XenbusState } from './XenbusState.js';

/** Keys of one directory level (relative names such as `ring-ref` or `queue-0/ring-ref`). */
export type XenbusKeys = Readonly<Record<string, string>>;

/** A value or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/** Frontend driver hooks (blkfront `talk_to_blkback`, `blkfront_connect`, `blkif_free`). */
export interface FrontendHooks {
  /**
   * The backend is ready (InitWait, or the shortcuts of blkif.h): allocate and grant the ring,
   * allocate the event channel, and return the keys to publish (`ring-ref`, `event-channel`,
   * `protocol`, …). The machine then writes them with state Initialised. If it throws, it must
   * release what it allocated; the device goes Closing.
   */
  setup(dev: XenbusDevice, backendKeys: XenbusKeys): MaybePromise<XenbusKeys>;
  /** The backend is Connected: read its properties (`sectors`, features). Throw → Closing. */
  connected(dev: XenbusDevice, backendKeys: XenbusKeys): MaybePromise<void>;
  /**
   * Release what `setup` allocated (end grants, close the event channel) and keep outstanding
   * requests for the next connection. Called once per successful `setup`, only when the backend
   * no longer maps the ring (it is Closed, gone, or a fresh instance), or on `destroy()`.
   */
  disconnected(dev: XenbusDevice): MaybePromise<void>;
}

/** Backend driver hooks (blkback `xen_blkbk_probe`, `connect_ring`, `xen_blkif_disconnect`). */
export interface BackendHooks {
  /** Before InitWait: return features and limits to publish (`feature-*`, `max-ring-page-order`). */
  probe?(dev: XenbusDevice): MaybePromise<XenbusKeys>;
  /**
   * The frontend is Initialised: validate its keys (they are untrusted), map the ring, bind the
   * event channel, and return device properties to publish with state Connected. Throw → the
   * machine calls `disconnect` and goes Closing.
   */
  connect(dev: XenbusDevice, frontendKeys: XenbusKeys): MaybePromise<XenbusKeys | undefined>;
  /**
   * Unmap the ring and unbind the event channel. Must be idempotent (it is also the precondition
   * of every `connect`) and must not leave anything mapped even if it throws; the machine records
   * the error and carries on as disconnected.
   */
  disconnect(dev: XenbusDevice): MaybePromise<void>;
}

interface CommonConfig {
  /** The store as this domain sees it. */
  readonly store: StoreOps;
  /** This side's domain id. */
  readonly domid: DomId;
  /** Device class (`vbd`, `vif`, `vrdma`, …). */
  readonly type: string;
  /** Device number. */
  readonly devid: number;
  /** Called after every state this side writes (and once with the state found at start). */
  readonly onState?: (state: XenbusState, dev: XenbusDevice) => void;
}

/** Configuration of a frontend machine. */
export interface FrontendConfig extends CommonConfig {
  readonly role: 'frontend';
  readonly hooks: FrontendHooks;
  /** Set up without waiting for the backend's InitWait (blkif.h: defaults in effect). */
  readonly eager?: boolean;
  /** Reconnect attempts in a row without reaching Connected before giving up (default 8). */
  readonly maxReconnects?: number;
}

/** Configuration of a backend machine. */
export interface BackendConfig extends CommonConfig {
  readonly role: 'backend';
  /** The frontend domain (part of the backend directory's path). */
  readonly frontDomid: DomId;
  readonly hooks: BackendHooks;
}

/** Either configuration. */
export type XenbusDeviceConfig = FrontendConfig | BackendConfig;
