/**
 * The xenbus handshake of the guest's `vbd` (blkfront `talk_to_blkback`, `blkfront_connect`):
 * wait for the toolstack to plug the device, and when the backend reaches InitWait allocate and
 * grant the ring (BlkFront), publish `ring-ref`, `event-channel` and `protocol`, then on
 * Connected read `sectors`, `sector-size`, `info`, `feature-flush-cache` and
 * `feature-max-indirect-segments` — all untrusted, parsed strictly.
 *
 * A backend that goes away (its driver domain died or was restarted: the machine sees its
 * directory vanish or go Closed) is reconnected to, as Linux `blkif_recover` does: the old ring
 * is released (grants ended once the backend let go, XSA-396), every request in flight goes back
 * on the queue, and when the new backend reaches InitWait a fresh ring is granted and published;
 * on Connected the requeued requests are re-issued (new grants, new ids) and new ones go out.
 * Each request settles exactly once. A new backend that publishes a different disk size or
 * sector size is not the same disk: the device is killed (PV_ERR_DISCONNECTED).
 *
 * The device ends — every request queued or in flight fails with PV_ERR_DISCONNECTED and later
 * ones fail at once — when it is unplugged (the toolstack removed our directory), closed,
 * destroyed, or the machine gives up reconnecting (it goes Closing).
 */

import {
  BLKIF_PROTOCOL_X86_64,
  BlkBackendKey,
  BlkFrontendKey,
  VBD_DEVICE_TYPE,
  VDISK_READONLY,
} from '../../protocol/blkif/BlkifConstants.js';
import { pvError } from '../../protocol/errors.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import { type DomId, domId } from '../../protocol/Types.js';
import { waitForPath } from '../../protocol/xenbus/control.js';
import { XenbusDevice, type XenbusKeys } from '../../protocol/xenbus/XenbusDevice.js';
import { frontendDir } from '../../protocol/xenbus/XenbusPaths.js';
import { XenbusState } from '../../protocol/xenbus/XenbusState.js';
import { endAccessDeferred } from '../grant/endAccessDeferred.js';
import { BlkFront, type BlkFrontOptions, type BlkInfo } from './BlkFront.js';

/** Options of `openBlkfront`. */
export interface BlkConnectOptions extends BlkFrontOptions {
  /** Device number (default 0). */
  readonly devid?: number;
  /** Backend domain (default 0). */
  readonly backend?: number;
  /** Longest wait for the plug and the handshake (ms, default 10 000). */
  readonly connectTimeoutMs?: number;
}

/** A connected vbd. */
export interface BlkDevice {
  readonly front: BlkFront;
  readonly info: BlkInfo;
  readonly xenbus: XenbusDevice;
  /** Orderly close: Closing, wait for the backend to unmap, end grants, free pages. */
  close(): Promise<void>;
}

const UINT = /^(0|[1-9][0-9]{0,15})$/;

function num(keys: XenbusKeys, key: string, dflt?: number): number {
  const raw = keys[key];
  if (raw === undefined && dflt !== undefined) return dflt;
  if (raw === undefined || !UINT.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw pvError('PV_ERR_XENBUS_STATE', `backend key ${key} is not a number: ${String(raw).slice(0, 32)}`);
  }
  return Number(raw);
}

/** Parses the backend's properties (blkfront_connect). */
export function parseBlkInfo(keys: XenbusKeys): BlkInfo {
  const sectorSize = num(keys, BlkBackendKey.SECTOR_SIZE, 512);
  if (sectorSize < 512 || sectorSize > 65536 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw pvError('PV_ERR_XENBUS_STATE', `sector-size ${sectorSize} is not a power of two in [512, 65536]`);
  }
  return {
    sectors: num(keys, BlkBackendKey.SECTORS),
    sectorSize,
    readOnly: (num(keys, BlkBackendKey.INFO, 0) & VDISK_READONLY) !== 0,
    flush: num(keys, BlkBackendKey.FLUSH_CACHE, 0) === 1,
    maxIndirectSegments: num(keys, BlkBackendKey.MAX_INDIRECT_SEGMENTS, 0),
  };
}

/** Rejects with PV_ERR_TIMEOUT if `p` does not settle within `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(pvError('PV_ERR_TIMEOUT', `${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects the guest's vbd `opts.devid`; PV_ERR_TIMEOUT if it is never plugged or connected. */
export async function openBlkfront(hc: Hypercalls, opts: BlkConnectOptions = {}): Promise<BlkDevice> {
  const devid = opts.devid ?? 0;
  const backend: DomId = domId(opts.backend ?? 0);
  const timeout = opts.connectTimeoutMs ?? 10_000;
  const dir = frontendDir(hc.domid, VBD_DEVICE_TYPE, devid);
  await withTimeout(waitForPath(hc.store, `${dir}/backend`), timeout, `waiting for ${dir}`);
  let front: BlkFront | undefined;
  /** Set when the device is meant to end (close/destroy): a disconnect then is final. */
  let ending = false;
  let released: Promise<number> | undefined;
  const keysOf = (f: BlkFront): Record<string, string> => {
    const keys: Record<string, string> = {
      [BlkFrontendKey.EVENT_CHANNEL]: String(f.port),
      [BlkFrontendKey.PROTOCOL]: BLKIF_PROTOCOL_X86_64,
    };
    if (f.ringOrder === 0) keys[BlkFrontendKey.RING_REF] = String(f.ringRefs[0]);
    else {
      keys[BlkFrontendKey.RING_PAGE_ORDER] = String(f.ringOrder);
      f.ringRefs.forEach((ref, i) => {
        keys[`ring-ref${i}`] = String(ref);
      });
    }
    return keys;
  };
  const finish = async (f: BlkFront): Promise<void> => {
    released ??= f.release((refs) => endAccessDeferred(hc.grant, refs));
    await released;
  };
  const dev = new XenbusDevice({
    role: 'frontend',
    store: hc.store,
    domid: hc.domid,
    type: VBD_DEVICE_TYPE,
    devid,
    // Going Closing on our own (a fatal error, or reconnecting given up) ends the device.
    onState: (state) => {
      if (state === XenbusState.Closing && !ending) {
        front?.kill(pvError('PV_ERR_DISCONNECTED', 'the vbd is closing: no backend to re-issue to'));
      }
    },
    hooks: {
      setup: () => {
        if (front === undefined) front = new BlkFront(hc, backend, opts);
        else front.attach();
        return keysOf(front);
      },
      connected: (_dev, keys) => {
        if (front === undefined) return;
        const info = parseBlkInfo(keys);
        const was = front.info;
        if (was !== undefined && (was.sectors !== info.sectors || was.sectorSize !== info.sectorSize)) {
          const err = pvError('PV_ERR_DISCONNECTED', 'the vbd came back as a different disk');
          front.kill(err);
          throw err;
        }
        front.info = info;
        front.resume();
      },
      disconnected: async () => {
        if (front === undefined) return;
        // Our own directory gone (unplug) or the device closing: the end, fail what is left.
        const plugged = !ending && (await hc.store.tryRead(`${dir}/backend`).catch(() => undefined)) !== undefined;
        if (!plugged || front.dead) await finish(front);
        else await front.detach((refs) => endAccessDeferred(hc.grant, refs));
      },
    },
  });
  try {
    await dev.start();
    await withTimeout(dev.whenConnected(), timeout, 'the vbd handshake');
  } catch (err) {
    ending = true;
    await dev.destroy();
    throw err;
  }
  const f = front as BlkFront;
  return {
    front: f,
    get info(): BlkInfo {
      return f.info as BlkInfo;
    },
    xenbus: dev,
    close: async () => {
      ending = true;
      await dev.close();
      // A device already stopped (unplugged) has released; one that never set up holds nothing.
      await finish(f);
    },
  };
}
