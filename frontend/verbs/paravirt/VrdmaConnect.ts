/**
 * The xenbus handshake of the guest's `vrdma` device: wait for the toolstack to plug it (the
 * guest's xenbus probe), read the backend's limits, allocate and grant the rings (PvChannel),
 * publish their refs, the event channel, the mode and the NIC asked for, and wait for Connected.
 *
 * Verbs objects live in the backend's session, so they cannot survive a new backend: the device
 * ends at the first disconnect (the `link` goes dead, and the provider throws
 * PV_ERR_DISCONNECTED from then on) instead of reconnecting. When the backend no longer maps the
 * rings, their grants are ended with endAccessDeferred and their pages freed only if every grant
 * ended (XSA-396: a page a backend may still write is never reused).
 */

import { pvError } from '../../../protocol/errors.js';
import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import { PV_DATA_RING_ORDER, VRDMA_DEVICE_TYPE, type VrdmaMode } from '../../../protocol/rdma/pv/PvConstants.js';
import { formatFrontendKeys, parseBackendInfo, type VrdmaBackendInfo } from '../../../protocol/rdma/pv/VrdmaKeys.js';
import { type DomId, domId } from '../../../protocol/Types.js';
import { waitForPath } from '../../../protocol/xenbus/control.js';
import { XenbusDevice } from '../../../protocol/xenbus/XenbusDevice.js';
import { frontendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { endAccessDeferred } from '../../grant/endAccessDeferred.js';
import { PvChannel, type PvChannelOptions } from './PvChannel.js';

/** Options of the connection. */
export interface ParavirtOptions extends PvChannelOptions {
  /** Longest wait for the device to be plugged and connected (ms; default 10 000). */
  readonly connectTimeoutMs?: number;
}

/** Set by the xenbus hooks, read by the provider. */
export interface Link {
  channel: PvChannel | undefined;
  info: VrdmaBackendInfo | undefined;
  /** The backend went away (or the device was destroyed): the device is over. */
  dead: boolean;
  setups: number;
}

/** A connected device: its xenbus machine, the link state, and who serves it. */
export interface VrdmaConnection {
  readonly dev: XenbusDevice;
  readonly link: Link;
  readonly backend: DomId;
  readonly transport: 'paravirt' | 'paravirt-copy';
}

/** Rejects with PV_ERR_TIMEOUT if `p` does not settle within `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
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

/**
 * Runs the handshake for the `vrdma` device of `attachment` (transport paravirt or
 * paravirt-copy). PV_ERR_TIMEOUT if the toolstack never plugs it or the backend never connects.
 */
export async function connectVrdma(
  hc: Hypercalls,
  attachment: DeviceAttachment,
  opts: ParavirtOptions = {},
): Promise<VrdmaConnection> {
  const t = attachment.transport;
  if (t !== 'paravirt' && t !== 'paravirt-copy') {
    throw pvError('PV_ERR_CONFIG', `the paravirt provider does not serve transport '${t}'`);
  }
  const mode: VrdmaMode = t === 'paravirt-copy' ? 'copy' : 'zero-copy';
  const devid = attachment.devid ?? 0;
  const backend = domId(attachment.backendDomid ?? 0);
  const timeout = opts.connectTimeoutMs ?? 10_000;
  const dir = frontendDir(hc.domid, VRDMA_DEVICE_TYPE, devid);
  await withTimeout(waitForPath(hc.store, `${dir}/backend`), timeout, `waiting for ${dir}`);
  const link: Link = { channel: undefined, info: undefined, dead: false, setups: 0 };
  const dev = new XenbusDevice({
    role: 'frontend',
    store: hc.store,
    domid: hc.domid,
    type: VRDMA_DEVICE_TYPE,
    devid,
    hooks: {
      setup: (_dev, backendKeys) => {
        // Verbs objects live in the backend's session: a second setup (a new backend) cannot
        // bring them back, so the device ends instead of reconnecting.
        if (link.setups++ > 0) throw pvError('PV_ERR_DISCONNECTED', 'the vrdma backend went away');
        const info = parseBackendInfo(backendKeys);
        if (mode === 'copy' && !info.featureCopy) {
          throw pvError('PV_ERR_NOT_SUPPORTED', 'the backend does not serve paravirt-copy');
        }
        const ch = new PvChannel(hc, backend, opts);
        link.channel = ch;
        return {
          ...formatFrontendKeys({
            ctrlRingRef: ch.refs.ctrlRingRef,
            dataRingOrder: PV_DATA_RING_ORDER,
            dataRingRefs: ch.refs.dataRingRefs,
            eventChannel: ch.refs.port,
            mode,
          }),
          device: attachment.device,
        };
      },
      connected: (_dev, backendKeys) => {
        link.info = parseBackendInfo(backendKeys);
      },
      disconnected: async () => {
        link.dead = true;
        const ch = link.channel;
        if (ch === undefined) return;
        ch.closePort();
        // The backend no longer maps the rings (xenbus contract); end their grants anyway only
        // once they are free, and leak the pages rather than reuse them otherwise (XSA-396).
        const left = await endAccessDeferred(hc.grant, ch.allRefs);
        if (left.length === 0) ch.freePages();
      },
    },
  });
  try {
    await dev.start();
    await withTimeout(dev.whenConnected(), timeout, 'the vrdma handshake');
  } catch (err) {
    await dev.destroy();
    throw err;
  }
  return { dev, link, backend, transport: t };
}
