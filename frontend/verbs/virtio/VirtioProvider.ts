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
 * forgets everything and stops touching the queues), and only then frees the block.
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
import { domId, type EvtchnPort, type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED } from '../../../protocol/virtio/DeviceStatus.js';
import { MmioReg, VIRTIO_MMIO_MAGIC } from '../../../protocol/virtio/MmioTransport.js';
import { waitForPath } from '../../../protocol/xenbus/control.js';
import { frontendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { MmioDriver } from '../../virtio/MmioDriver.js';
import type { CreateProvider } from '../Provider.js';
import { ParavirtProvider } from '../paravirt/ParavirtProvider.js';
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
  const pages = VirtioLayout.pagesFor(packed);
  const base = mem.allocPages(pages);
  mem.view(base, pages * PAGE_SIZE).fill(0);
  const layout = new VirtioLayout(base, packed);
  let port: EvtchnPort | undefined;
  let driver: MmioDriver | undefined;
  let published = false;
  let handedOver = false;
  const release = (reset: boolean): void => {
    if (port !== undefined) hc.evtchn.close(port);
    // Freed only when the device can no longer touch the block: it was reset, or never told
    // where it is. Otherwise (a device model that may still build it) it is leaked, not reused.
    if (reset || !published) mem.freePages(base, pages);
  };
  try {
    port = hc.evtchn.allocUnbound(backend);
    const p = port;
    published = true;
    await hc.store.write(`${dir}/${VirtioRdmaKey.MMIO_GPA}`, String(layout.window));
    await hc.store.write(`${dir}/${VirtioRdmaKey.DEVICE}`, attachment.device);
    await hc.store.write(`${dir}/${VirtioRdmaKey.EVENT_CHANNEL}`, String(p));
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
    const ctrl = drv.setupQueue<number>(VRDMA_CTRL_QUEUE, VRDMA_CTRL_QUEUE_SIZE, layout.ctrlQueue);
    const dataq = drv.setupQueue<number>(VRDMA_DATA_QUEUE, VRDMA_DATA_QUEUE_SIZE, layout.dataQueue);
    ctrl.disableInterrupts();
    dataq.disableInterrupts();
    drv.driverOk();
    const link = { channel: undefined as VirtioChannel | undefined, info, dead: false };
    const words = new Int32Array(buffer, all.byteOffset, mem.size >> 2);
    link.channel = new VirtioChannel(
      { driver: drv, ctrl, dataq, layout, words, evtchn: hc.evtchn, port: p, onLost: () => (link.dead = true) },
      opts,
    );
    let closed = false;
    const device = {
      close: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        // Status 0: the device model ends the session and stops touching the queues.
        let reset = false;
        try {
          reset = drv.writeStatus(0).error === undefined;
        } catch {
          // No answer (the device model is gone): the block is not freed.
        }
        link.dead = true;
        release(reset);
      },
      destroy: async (): Promise<void> => {
        if (closed) return;
        closed = true;
        link.dead = true;
        // The device may still write the block: leak it rather than reuse it.
        if (port !== undefined) hc.evtchn.close(port);
      },
    };
    handedOver = true;
    const provider = new ParavirtProvider<VirtioChannel>(hc, device, link, new GpaExport(mem), t);
    try {
      provider.queryPort();
    } catch (err) {
      await provider.close();
      throw err;
    }
    return provider;
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

/** The provider-module entry point the verbs layer loads (ProviderLoader.ts). */
export const createProvider: CreateProvider = (env, attachment) => {
  const a = env.args as { spinBudget?: unknown };
  const spinBudget = typeof a.spinBudget === 'number' ? a.spinBudget : undefined;
  return openVirtio(env.hypercalls, attachment, { spinBudget });
};
