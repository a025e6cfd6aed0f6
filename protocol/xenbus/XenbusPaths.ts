/**
 * Store paths of a split device and the toolstack's part of the handshake (reference §4.2, XSP
 * "Frontend/Backend device paths", libxl `libxl__device_generic_add`).
 *
 * ```
 * /local/domain/<fe>/device/<type>/<devid>/        owner fe, backend domain may read
 *     backend      = /local/domain/<be>/backend/<type>/<fe>/<devid>
 *     backend-id   = <be>
 *     state        = 1 (Initialising)
 *     …            keys the frontend publishes (ring-ref, event-channel, …)
 * /local/domain/<be>/backend/<type>/<fe>/<devid>/  owner be, frontend domain may read
 *     frontend     = /local/domain/<fe>/device/<type>/<devid>
 *     frontend-id  = <fe>
 *     online       = 1
 *     state        = 1 (Initialising)
 *     …            features and device properties the backend publishes
 * ```
 * Each side writes only its own directory and only reads the peer's. Keys a side creates inherit
 * the directory's permissions, so the peer can read them too. Also here: the checks on keys a
 * driver publishes, and the consistent read of a peer directory (`readKeys`).
 */

import { pvError } from '../errors.js';
import { type StoreOps, type StoreTx, withTransaction } from '../Hypercalls.js';
import { type DomId, domId } from '../Types.js';
import type { XenbusKeys } from './XenbusHooks.js';
import { formatState, XenbusState } from './XenbusState.js';

/** Identifies one split device. */
export interface DeviceSpec {
  /** Device class, e.g. `vbd`, `vif`, `vrdma`. */
  readonly type: string;
  /** Device number within the class for this frontend domain. */
  readonly devid: number;
  readonly frontDomid: DomId;
  readonly backDomid: DomId;
}

/** Keys whose meaning the handshake owns; hooks may not publish them. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set([
  'state',
  'backend',
  'backend-id',
  'frontend',
  'frontend-id',
  'online',
]);

const TYPE = /^[A-Za-z0-9_-]{1,32}$/;
/** A key a driver may publish: one or more store path components, relative to its directory. */
const KEY = /^[A-Za-z0-9_@-]+(\/[A-Za-z0-9_@-]+)*$/;
/** Most keys read from a peer's directory (a hostile peer cannot make us read without end). */
export const MAX_PEER_KEYS = 256;

function checkSpec(spec: DeviceSpec): void {
  if (!TYPE.test(spec.type)) throw pvError('PV_ERR_INVALID_ARG', `bad device type ${spec.type}`);
  if (!Number.isInteger(spec.devid) || spec.devid < 0 || spec.devid > 0xffffffff) {
    throw pvError('PV_ERR_INVALID_ARG', `bad device id ${spec.devid}`);
  }
  domId(spec.frontDomid);
  domId(spec.backDomid);
}

/** `/local/domain/<fe>/device/<type>/<devid>`. */
export function frontendDir(frontDomid: DomId, type: string, devid: number): string {
  return `/local/domain/${frontDomid}/device/${type}/${devid}`;
}

/** `/local/domain/<be>/backend/<type>/<fe>/<devid>`. */
export function backendDir(backDomid: DomId, type: string, frontDomid: DomId, devid: number): string {
  return `/local/domain/${backDomid}/backend/${type}/${frontDomid}/${devid}`;
}

/** Parses a domain id read from the store (decimal, no sign or blanks), else throws. */
export function parseDomId(raw: string | undefined, what: string): DomId {
  if (raw === undefined || !/^(0|[1-9][0-9]{0,4})$/.test(raw)) {
    throw pvError('PV_ERR_XENBUS_STATE', `${what} is not a domain id: ${String(raw).slice(0, 32)}`);
  }
  return domId(Number(raw));
}

/** Writes the frontend directory (toolstack, as dom0) inside `tx`. */
export async function writeFrontendDir(store: StoreOps, spec: DeviceSpec, tx: StoreTx): Promise<void> {
  checkSpec(spec);
  const dir = frontendDir(spec.frontDomid, spec.type, spec.devid);
  await store.mkdir(dir, tx);
  // Perms first, so the keys below inherit them.
  await store.setPerms(
    dir,
    [
      { domid: spec.frontDomid, read: false, write: false },
      { domid: spec.backDomid, read: true, write: false },
    ],
    tx,
  );
  await store.write(`${dir}/backend`, backendDir(spec.backDomid, spec.type, spec.frontDomid, spec.devid), tx);
  await store.write(`${dir}/backend-id`, String(spec.backDomid), tx);
  await store.write(`${dir}/state`, formatState(XenbusState.Initialising), tx);
}

/** Writes the backend directory (toolstack, as dom0) inside `tx`. */
export async function writeBackendDir(store: StoreOps, spec: DeviceSpec, tx: StoreTx): Promise<void> {
  checkSpec(spec);
  const dir = backendDir(spec.backDomid, spec.type, spec.frontDomid, spec.devid);
  await store.mkdir(dir, tx);
  await store.setPerms(
    dir,
    [
      { domid: spec.backDomid, read: false, write: false },
      { domid: spec.frontDomid, read: true, write: false },
    ],
    tx,
  );
  await store.write(`${dir}/frontend`, frontendDir(spec.frontDomid, spec.type, spec.devid), tx);
  await store.write(`${dir}/frontend-id`, String(spec.frontDomid), tx);
  await store.write(`${dir}/online`, '1', tx);
  await store.write(`${dir}/state`, formatState(XenbusState.Initialising), tx);
}

/** Creates both directories in one transaction, both in state Initialising (XLXL:1975-1983). */
export async function createDevicePaths(store: StoreOps, spec: DeviceSpec): Promise<void> {
  await withTransaction(store, async (tx) => {
    await writeFrontendDir(store, spec, tx);
    await writeBackendDir(store, spec, tx);
  });
}

/** Removes both directories in one transaction (device unplug); missing ones are ignored. */
export async function removeDevicePaths(store: StoreOps, spec: DeviceSpec): Promise<void> {
  checkSpec(spec);
  await withTransaction(store, async (tx) => {
    for (const dir of [
      frontendDir(spec.frontDomid, spec.type, spec.devid),
      backendDir(spec.backDomid, spec.type, spec.frontDomid, spec.devid),
    ]) {
      if ((await store.tryRead(dir, tx)) !== undefined) await store.rm(dir, tx);
    }
  });
}

/** Throws PV_ERR_INVALID_ARG unless every key is a relative path a driver may publish. */
export function checkPublishedKeys(keys: XenbusKeys): void {
  for (const [key, value] of Object.entries(keys)) {
    if (!KEY.test(key) || RESERVED_KEYS.has(key.split('/')[0])) {
      throw pvError('PV_ERR_INVALID_ARG', `a driver may not publish key ${key}`);
    }
    if (typeof value !== 'string') throw pvError('PV_ERR_INVALID_ARG', `value of ${key} must be a string`);
  }
}

/**
 * The values of the direct children of `dir`, read in one transaction so they are consistent
 * (a peer publishes its keys and its state in one transaction too). PV_ERR_LIMIT beyond `max`.
 */
export async function readKeys(store: StoreOps, dir: string, max = MAX_PEER_KEYS): Promise<XenbusKeys> {
  return withTransaction(store, async (tx) => {
    const names = await store.directory(dir, tx);
    if (names.length > max) throw pvError('PV_ERR_LIMIT', `${dir} has ${names.length} keys (at most ${max} read)`);
    const entries: [string, string][] = [];
    for (const name of names) {
      const value = await store.tryRead(`${dir}/${name}`, tx);
      if (value !== undefined) entries.push([name, value]);
    }
    // fromEntries defines own properties: a key named __proto__ stays a plain key.
    return Object.freeze(Object.fromEntries(entries));
  });
}
