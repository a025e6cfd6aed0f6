/**
 * The `virtio` and `virtio-packed` verbs providers: the guest driver of a virtio-rdma device
 * (protocol/rdma/virtio/VirtioRdma.ts). The verbs face, the objects, the data path and the WR
 * tracking are the paravirt provider's own (ParavirtProvider.ts with a VirtioChannel and
 * GpaExport): what differs between the two designs is only the transport, which is what the
 * comparison is about. Probe, in place of the xenbus handshake:
 *  1. wait for the toolstack to plug the device (its frontend directory);
 *  2. reserve the device's block of pages (VirtioLayout.ts), allocate the event channel that
 *     carries traps and interrupts, and publish `mmio-gpa`, `device`, then `event-channel`;
 *  3. wait for the device model to build the register block (MagicValue appears), probe it, read
 *     the limits from its configuration space;
 *  4. the §3.1.1 sequence: reset, ACKNOWLEDGE, DRIVER, features (VERSION_1, EVENT_IDX, and
 *     RING_PACKED for virtio-packed — a device without it is PV_ERR_NOT_SUPPORTED), FEATURES_OK,
 *     both queues placed, DRIVER_OK.
 * Close destroys the verbs objects through the device, then resets it (Status 0: the device
 * forgets everything and stops touching the queues), and only then frees the queue block. The
 * register window page and the event channel stay the device's until the toolstack unplugs it
 * (the device model serves the window every round), so a later probe of the same device reuses
 * them: close and open again works as it does over the vrdma rings.
 */

import { pvError } from '../../../protocol/errors.js';
import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import type { VrdmaBackendInfo } from '../../../protocol/rdma/pv/VrdmaKeys.js';
import {
  decodeConfig,
  VIRTIO_RDMA_DEVICE_TYPE,
  VirtioRdmaKey,
  VRDMA_CTRL_QUEUE,
  VRDMA_CTRL_QUEUE_SIZE,
  VRDMA_DATA_QUEUE,
  VRDMA_DATA_QUEUE_SIZE,
} from '../../../protocol/rdma/virtio/VirtioRdma.js';
import {
  type DomId,
  domId,
  type EvtchnPort,
  evtchnPort,
  type GuestPhysAddr,
  PAGE_SIZE,
} from '../../../protocol/Types.js';
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED } from '../../../protocol/virtio/DeviceStatus.js';
import { MmioReg, VIRTIO_MMIO_MAGIC } from '../../../protocol/virtio/MmioTransport.js';
import { waitForPath } from '../../../protocol/xenbus/control.js';
import { frontendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { MmioDriver } from '../../virtio/MmioDriver.js';
import type { CreateProvider } from '../Provider.js';
import { ParavirtProvider, proveControlPath } from '../paravirt/ParavirtProvider.js';
import { withTimeout } from '../paravirt/VrdmaConnect.js';
import { GpaExport } from './GpaExport.js';
import { VirtioChannel, type VirtioChannelOptions } from './VirtioChannel.js';
import { VirtioLayout } from './VirtioLayout.js';

/** Options of the connection. */
export interface VirtioOptions extends VirtioChannelOptions {
  /** Longest wait for the device to be plugged and built, and for each register write (ms; default 10 000). */
  readonly connectTimeoutMs?: number;
}

/** The provider over a virtio-rdma device. */
export type VirtioProvider = ParavirtProvider<VirtioChannel>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Probes and negotiates the device of `attachment`, returns its provider (see the file comment). */
export async function openVirtio(
  hc: Hypercalls,
  attachment: DeviceAttachment,
  opts: VirtioOptions = {},
): Promise<VirtioProvider> {
  const t = attachment.transport;
  if (t !== 'virtio' && t !== 'virtio-packed') {
    throw pvError('PV_ERR_CONFIG', `the virtio provider does not serve transport '${t}'`);
  }
  const packed = t === 'virtio-packed';
  const devid = attachment.devid ?? 0;
  const backend = domId(attachment.backendDomid ?? 0);
  const timeout = opts.connectTimeoutMs ?? 10_000;
  const dir = frontendDir(hc.domid, VIRTIO_RDMA_DEVICE_TYPE, devid);
  await withTimeout(waitForPath(hc.store, `${dir}/backend`), timeout, `waiting for ${dir}`);

  const mem = hc.memory;
  // The window and its event channel: reserved at the first probe, reused by every later one.
  const { window, port: p } = await placeWindow(hc, dir, backend, attachment.device);
  const pages = VirtioLayout.pagesFor(packed);
  const base = mem.allocPages(pages);
  mem.view(base, pages * PAGE_SIZE).fill(0);
  const layout = new VirtioLayout(window, base, packed);
  let driver: MmioDriver | undefined;
  let queuesPlaced = false;
  let handedOver = false;
  // The block is freed only when the device can no longer touch it: it never learnt where the
  // queues are, or a reset (acknowledged) ended the session. Otherwise it is leaked, not reused.
  const release = (reset: boolean): void => {
    if (reset || !queuesPlaced) mem.freePages(base, pages);
  };
  try {
    const all = mem.view(0 as GuestPhysAddr, mem.size);
    const buffer = all.buffer as SharedArrayBuffer;
    const drv = new MmioDriver(buffer, buffer, timeout, {
      offset: all.byteOffset + layout.window,
      trap: () => hc.evtchn.notify(p),
    });
    driver = drv;
    const deadline = performance.now() + timeout;
    while (drv.read(MmioReg.MAGIC_VALUE) !== VIRTIO_MMIO_MAGIC) {
      if (performance.now() > deadline) throw pvError('PV_ERR_TIMEOUT', `no virtio-rdma device model in ${timeout} ms`);
      await sleep(1);
    }
    drv.probe();
    const info: VrdmaBackendInfo = decodeConfig((i) => drv.readConfig(i));
    const want = featureBit(VIRTIO_F_EVENT_IDX) | (packed ? featureBit(VIRTIO_F_RING_PACKED) : 0n);
    const got = drv.negotiate(want);
    if (packed && (got & featureBit(VIRTIO_F_RING_PACKED)) === 0n) {
      drv.fail();
      throw pvError('PV_ERR_NOT_SUPPORTED', 'the device does not offer VIRTIO_F_RING_PACKED');
    }
    queuesPlaced = true;
    const ctrl = drv.setupQueue<number>(VRDMA_CTRL_QUEUE, VRDMA_CTRL_QUEUE_SIZE, layout.ctrlQueue);
    const dataq = drv.setupQueue<number>(VRDMA_DATA_QUEUE, VRDMA_DATA_QUEUE_SIZE, layout.dataQueue);
    ctrl.disableInterrupts();
    dataq.disableInterrupts();
    drv.driverOk();
    const link = { channel: undefined as VirtioChannel | undefined, info, dead: false };
    const words = new Int32Array(buffer, all.byteOffset, mem.size >> 2);
    link.channel = new VirtioChannel(
      {
        driver: drv,
        ctrl,
        dataq,
        layout,
        words,
        evtchn: hc.evtchn,
        port: p,
        onLost: () => (link.dead = true),
        monitor: hc.monitor,
        backend,
      },
      opts,
    );
    let closed = false;
    const device = {
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        // Status 0: the device model ends the session and stops touching the queues. The window
        // and the event channel stay the device's until unplug (a later probe reuses them).
        let reset = false;
        try {
          reset = drv.writeStatus(0).error === undefined;
        } catch {
          // No answer (the device model is gone): the block is not freed.
        }
        link.dead = true;
        link.channel?.unpublish();
        release(reset);
      },
      destroy: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        // The device may still write the block: leak it rather than reuse it.
        link.dead = true;
        link.channel?.unpublish();
      },
    };
    handedOver = true;
    return await proveControlPath(new ParavirtProvider<VirtioChannel>(hc, device, link, new GpaExport(mem), t));
  } catch (err) {
    // After the hand-over the provider's close released everything.
    if (handedOver) throw err;
    let reset = false;
    if (driver !== undefined) {
      try {
        reset = driver.writeStatus(0).error === undefined;
      } catch {
        // The device model never answered: nothing to reset.
      }
    }
    release(reset);
    throw err;
  }
}

/**
 * The register window page and the event channel of the device at `dir`: the ones this guest
 * published at an earlier probe (the device model keeps serving them until unplug), or — at the
 * first probe — a fresh zeroed page and an unbound port, published with `event-channel` last.
 */
async function placeWindow(
  hc: Hypercalls,
  dir: string,
  backend: DomId,
  device: string,
): Promise<{ window: number; port: EvtchnPort }> {
  const st = hc.store;
  const gpa = await st.tryRead(`${dir}/${VirtioRdmaKey.MMIO_GPA}`);
  const port = await st.tryRead(`${dir}/${VirtioRdmaKey.EVENT_CHANNEL}`);
  if (gpa !== undefined && port !== undefined) {
    const asked = await st.tryRead(`${dir}/${VirtioRdmaKey.DEVICE}`);
    if (asked !== device) {
      throw pvError('PV_ERR_CONFIG', `virtio-rdma device ${dir} serves ${asked}, not ${device}: unplug it first`);
    }
    // INVARIANT: this guest wrote both keys at its first probe (only it and the toolstack write here).
    return { window: Number(gpa), port: evtchnPort(Number(port)) };
  }
  const window = hc.memory.allocPages(1);
  hc.memory.view(window, PAGE_SIZE).fill(0);
  const p = hc.evtchn.allocUnbound(backend);
  await st.write(`${dir}/${VirtioRdmaKey.MMIO_GPA}`, String(window));
  await st.write(`${dir}/${VirtioRdmaKey.DEVICE}`, device);
  await st.write(`${dir}/${VirtioRdmaKey.EVENT_CHANNEL}`, String(p));
  return { window, port: p };
}

/** The provider-module entry point the verbs layer loads (ProviderLoader.ts). */
export const createProvider: CreateProvider = (env, attachment) => {
  const a = env.args as { spinBudget?: unknown };
  const spinBudget = typeof a.spinBudget === 'number' ? a.spinBudget : undefined;
  return openVirtio(env.hypercalls, attachment, { spinBudget });
};
