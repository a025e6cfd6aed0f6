/**
 * The `virtio-rdma` device: the same verbs as the `vrdma` split driver (protocol/rdma/pv), over
 * virtqueues and guest-physical addresses instead of Xen rings and grants — the design of the
 * virtio-rdma seed paper (a virtio device for light guests such as OSv). What changes:
 *
 *  - Transport: a virtio-mmio register block (protocol/virtio/MmioTransport.ts) with the status /
 *    feature negotiation (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, DEVICE_NEEDS_RESET) in
 *    place of the xenbus handshake, and two split or packed virtqueues in place of the two rings.
 *  - Memory: requests name guest-physical addresses. An MR is registered by its address and length
 *    (RegMr with no indirect refs) and a CQ ring by its address (CreateCq's `ring_gpa`); the device
 *    model in the driver domain reaches guest memory through its privileged foreign map and maps
 *    what the NIC needs into the NIC's IOMMU itself (vhost-vdpa / VFIO DMA map). No grant exists.
 *  - Messages are unchanged: a control chain carries one control slot image (CtrlCodec.ts: a
 *    length-prefixed protobuf request, 1 KiB) and gets one back; a data chain carries one data
 *    slot image (DataSlot.ts: 4 header words + a WQE, 128 B) and gets a data response slot back.
 *    Each chain is [one device-readable buffer of exactly the slot size][one device-writable
 *    buffer of at least the slot size]; the device copies the readable part out once.
 *
 * Discovery: the toolstack plugs the device as it plugs a `vrdma` (frontend and backend
 * directories in the store). pvio's toolstack does not place MMIO windows in the guest-physical
 * map, so the guest's probe reserves one page of its own memory for the register block and tells
 * the device model where it is, with the event channel that stands for the trap of an MMIO access
 * (Xen's ioreq event channel) and for the interrupt back:
 *
 * ```
 * key (frontend dir)   written by  value
 * mmio-gpa             guest       guest-physical address of the register page (page-aligned)
 * event-channel        guest       unbound port for the driver domain (written LAST: "ready")
 * device               guest       optional NIC name the guest asks for (as the vrdma `device` key)
 * ```
 * The device model then builds the register block in that page (MagicValue last) and serves it.
 *
 * Device configuration space (MMIO_CONFIG_WORD + i, u32, written by the device before MagicValue):
 * ```
 * word  field               note
 * 0     port_id             the NIC's port (what QUERY_PORT answers)
 * 1     max_qp              per-guest limits, as the vrdma backend publishes them (Limits.ts)
 * 2     max_cq
 * 3     max_mr
 * 4     max_pinned_pages
 * 5     max_outstanding_wr
 * 6     max_cqe             largest CQ a guest may create
 * 7     max_qp_wr           the NIC's queue depth
 * ```
 */

import type { VrdmaBackendInfo } from '../pv/VrdmaKeys.js';

/** The store device type (`/local/domain/<d>/device/virtio-rdma/<devid>`). */
export const VIRTIO_RDMA_DEVICE_TYPE = 'virtio-rdma';
/** Queue indices. */
export const VRDMA_CTRL_QUEUE = 0;
export const VRDMA_DATA_QUEUE = 1;
/** Queues the device has. */
export const VRDMA_QUEUES = 2;
/** Control queue size: 2 chains of 2 descriptors (one call at a time, plus one a timeout left). */
export const VRDMA_CTRL_QUEUE_SIZE = 4;
/** Data queue size: 128 chains of 2 descriptors, the depth of the vrdma data ring. */
export const VRDMA_DATA_QUEUE_SIZE = 256;
/** Descriptors per request chain (one readable, one writable). */
export const VRDMA_CHAIN_DESCS = 2;
/** Largest QueueNum the device accepts. */
export const VRDMA_QUEUE_NUM_MAX = 256;

/** Store keys of the frontend directory. */
export const enum VirtioRdmaKey {
  MMIO_GPA = 'mmio-gpa',
  EVENT_CHANNEL = 'event-channel',
  DEVICE = 'device',
}

/** Device configuration words (see the file comment). */
export const enum VirtioRdmaConfig {
  PORT_ID = 0,
  MAX_QP = 1,
  MAX_CQ = 2,
  MAX_MR = 3,
  MAX_PINNED_PAGES = 4,
  MAX_OUTSTANDING_WR = 5,
  MAX_CQE = 6,
  MAX_QP_WR = 7,
}
/** Config words used. */
export const VIRTIO_RDMA_CONFIG_WORDS = 8;

/** The configuration words of a device serving `info` (copy mode is not served over virtio). */
export function encodeConfig(info: Omit<VrdmaBackendInfo, 'featureCopy'>): number[] {
  const w = new Array<number>(VIRTIO_RDMA_CONFIG_WORDS).fill(0);
  w[VirtioRdmaConfig.PORT_ID] = info.portId;
  w[VirtioRdmaConfig.MAX_QP] = info.maxQp;
  w[VirtioRdmaConfig.MAX_CQ] = info.maxCq;
  w[VirtioRdmaConfig.MAX_MR] = info.maxMr;
  w[VirtioRdmaConfig.MAX_PINNED_PAGES] = info.maxPinnedPages;
  w[VirtioRdmaConfig.MAX_OUTSTANDING_WR] = info.maxOutstandingWr;
  w[VirtioRdmaConfig.MAX_CQE] = info.maxCqe;
  w[VirtioRdmaConfig.MAX_QP_WR] = info.maxQpWr;
  return w;
}

/** The configuration the driver reads (`read(i)`: config word i as a u32). */
export function decodeConfig(read: (i: number) => number): VrdmaBackendInfo {
  return {
    portId: read(VirtioRdmaConfig.PORT_ID),
    maxQp: read(VirtioRdmaConfig.MAX_QP),
    maxCq: read(VirtioRdmaConfig.MAX_CQ),
    maxMr: read(VirtioRdmaConfig.MAX_MR),
    maxPinnedPages: read(VirtioRdmaConfig.MAX_PINNED_PAGES),
    maxOutstandingWr: read(VirtioRdmaConfig.MAX_OUTSTANDING_WR),
    maxCqe: read(VirtioRdmaConfig.MAX_CQE),
    maxQpWr: read(VirtioRdmaConfig.MAX_QP_WR),
    featureCopy: false,
  };
}
