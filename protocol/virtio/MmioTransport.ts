/**
 * The virtio-mmio transport (VIRTIO 1.2 §4.2.2) over one SharedArrayBuffer: the register block a
 * guest's driver and the driver domain's device share. An MMIO store traps into the device, which
 * decides what the register then reads; here the driver POSTS each register write to a mailbox
 * and the device, the only writer of every register a read returns, validates and applies it
 * (the same rule as DeviceStatus.ts). One writer per word, always.
 *
 * ```
 * byte    words   block            note
 * 0x000   0..8    status block     DeviceStatus.ts's nine words, embedded at byte 0 (its
 *                                  registerWords() reads them there): Status, DeviceFeatures,
 *                                  DriverFeatures, posted and acknowledged as that file says
 * 0x024   9..15   (zero)           padding to the window
 * 0x040   16..79  spec window      the §4.2.2 register map: register R of the spec sits at byte
 *                                  MMIO_WINDOW + R, so a DataView at MMIO_WINDOW reads it at R
 * 0x140   80..95  pvio words       mailbox, doorbell, interrupt futex, per-queue kick counters
 * 0x180   96..127 device config    the device-specific configuration (§4.2.2 puts it at window
 *                                  0x100; pvio's words sit there, so it follows them): written by
 *                                  the device only, before the driver probes, read-only to it
 * ```
 * Spec window (offsets from MMIO_WINDOW; every listed word is written by the DEVICE only):
 * ```
 * off    register           note
 * 0x000  MagicValue         0x74726976 ('virt' little endian)
 * 0x004  Version            2 (no legacy interface)
 * 0x008  DeviceID           PVIO_VIRTIO_DEVICE_ID (see below)
 * 0x00c  VendorID           PVIO_VIRTIO_VENDOR_ID
 * 0x030  QueueSel           the selected queue, as the device accepted it
 * 0x034  QueueNumMax        of the selected queue (0: the queue does not exist)
 * 0x038  QueueNum           of the selected queue, as accepted
 * 0x044  QueueReady         of the selected queue: 1 once the device attached it
 * 0x060  InterruptStatus    bit 0 used buffer, bit 1 configuration change
 * 0x080  QueueDescLow/High  (0x084) of the selected queue, as accepted
 * 0x090  QueueDriverLow/High (0x094) avail ring
 * 0x0a0  QueueDeviceLow/High (0x0a4) used ring
 * 0x0fc  ConfigGeneration   bumped at each configuration change
 * ```
 * DeviceFeatures (0x010), DeviceFeaturesSel (0x014), DriverFeatures (0x020), DriverFeaturesSel
 * (0x024) and Status (0x070) stay zero in the window: the status block above holds them whole
 * (64-bit features, no selector), with its own posted-write protocol. QueueNotify (0x050) and
 * InterruptACK (0x064) hold nothing either: they are write-only, and writes are posted.
 *
 * pvio words (Int32 word index):
 * ```
 * word    field        writer  reader  note
 * 80      write_reg    driver  device  spec offset of the posted register write (MmioReg)
 * 81      write_value  driver  device  its 32-bit value
 * 82      write_seq    driver  device  bumped after the two above: "a write is pending"
 * 83      ack_seq      device  driver  = write_seq once handled (notify)
 * 84      write_error  device  driver  0, or the catalogue status of the refusal
 * 85      doorbell     driver  device  bumped at every posted write (status or register) and kick:
 *                                      the one futex word the device sleeps on
 * 86      irq_seq      device  driver  bumped after InterruptStatus gains a bit: the driver's futex
 * 88+q    kick[q]      driver  device  QueueNotify of queue q: a free-running count (q < 8), so
 *                                      kicks of different queues are never merged into one
 * ```
 * Register writes the driver may post: QueueSel, QueueNum, QueueReady, QueueDesc/Driver/Device
 * Low/High, QueueNotify (same as bumping kick[q]) and InterruptACK. Everything else is refused.
 *
 * DeviceID: virtio-rdma has no ID in the VIRTIO 1.2 device-type table. 0x1a (26) is taken there
 * (the file-system device), so pvio uses 0x3c (60): in the top of the 6-bit range where
 * out-of-spec devices conventionally sit (crosvm counts its own down from 63), unassigned in 1.2.
 */

import { pvError } from '../errors.js';
import { STATUS_REG_BYTES } from './DeviceStatus.js';

/** MagicValue: 'virt' as a little-endian u32. */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** Version of the (non-legacy) virtio-mmio interface. */
export const VIRTIO_MMIO_VERSION = 2;
/** pvio's out-of-spec device ID for its RDMA device (see the file comment). */
export const PVIO_VIRTIO_DEVICE_ID = 0x3c;
/** VendorID: 'pvio' as a little-endian u32. */
export const PVIO_VIRTIO_VENDOR_ID = 0x6f697670;
/** Queues a pvio mmio device has (fixed by the device: indices 0..7). */
export const MMIO_MAX_QUEUES = 8;
/** InterruptStatus bit: the device used a buffer on some queue. */
export const VIRTIO_MMIO_INT_VRING = 1;
/** InterruptStatus bit: the device configuration (or status: DEVICE_NEEDS_RESET) changed. */
export const VIRTIO_MMIO_INT_CONFIG = 2;

/** Byte offset of the spec window in the register block. */
export const MMIO_WINDOW = 0x40;
/** Bytes of the spec window (registers 0x000..0x0ff; no device-specific config space). */
export const MMIO_WINDOW_BYTES = 0x100;

/** Register offsets inside the spec window (VIRTIO 1.2 §4.2.2, table "MMIO Device Register Layout"). */
export const enum MmioReg {
  MAGIC_VALUE = 0x000,
  VERSION = 0x004,
  DEVICE_ID = 0x008,
  VENDOR_ID = 0x00c,
  DEVICE_FEATURES = 0x010,
  DEVICE_FEATURES_SEL = 0x014,
  DRIVER_FEATURES = 0x020,
  DRIVER_FEATURES_SEL = 0x024,
  QUEUE_SEL = 0x030,
  QUEUE_NUM_MAX = 0x034,
  QUEUE_NUM = 0x038,
  QUEUE_READY = 0x044,
  QUEUE_NOTIFY = 0x050,
  INTERRUPT_STATUS = 0x060,
  INTERRUPT_ACK = 0x064,
  STATUS = 0x070,
  QUEUE_DESC_LOW = 0x080,
  QUEUE_DESC_HIGH = 0x084,
  QUEUE_DRIVER_LOW = 0x090,
  QUEUE_DRIVER_HIGH = 0x094,
  QUEUE_DEVICE_LOW = 0x0a0,
  QUEUE_DEVICE_HIGH = 0x0a4,
  CONFIG_GENERATION = 0x0fc,
}

/** Int32 word indices of the pvio words (see the file comment). */
export const enum MmioWord {
  WRITE_REG = 80,
  WRITE_VALUE = 81,
  WRITE_SEQ = 82,
  ACK_SEQ = 83,
  WRITE_ERROR = 84,
  DOORBELL = 85,
  IRQ_SEQ = 86,
  KICK = 88,
}

/** Int32 word index of the first device-config word. */
export const MMIO_CONFIG_WORD = MmioWord.KICK + MMIO_MAX_QUEUES;
/** Words of device config space. */
export const MMIO_CONFIG_WORDS = 32;
/** Words of the whole register block. */
export const MMIO_REG_WORDS = MMIO_CONFIG_WORD + MMIO_CONFIG_WORDS;
/** Bytes of the whole register block. */
export const MMIO_REG_BYTES = MMIO_REG_WORDS * 4;

/** Int32 word index of spec register `reg`. */
export function regWord(reg: MmioReg): number {
  return (MMIO_WINDOW + reg) >> 2;
}

/** The registers a driver may post a write to. */
export const DRIVER_WRITABLE: ReadonlySet<number> = new Set<number>([
  MmioReg.QUEUE_SEL,
  MmioReg.QUEUE_NUM,
  MmioReg.QUEUE_READY,
  MmioReg.QUEUE_NOTIFY,
  MmioReg.INTERRUPT_ACK,
  MmioReg.QUEUE_DESC_LOW,
  MmioReg.QUEUE_DESC_HIGH,
  MmioReg.QUEUE_DRIVER_LOW,
  MmioReg.QUEUE_DRIVER_HIGH,
  MmioReg.QUEUE_DEVICE_LOW,
  MmioReg.QUEUE_DEVICE_HIGH,
]);

/**
 * The register block at byte `offset` of `regs` as Int32 words (PV_ERR_VIRTQ_LAYOUT if it does
 * not fit or `offset` is not 4-aligned). A block may live inside a larger buffer: virtio-rdma's
 * window is a page of guest memory (frontend/verbs/virtio).
 */
export function mmioWords(regs: SharedArrayBuffer, offset = 0): Int32Array {
  if (
    !(regs instanceof SharedArrayBuffer) ||
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    offset % 4 !== 0 ||
    offset > regs.byteLength - MMIO_REG_BYTES
  ) {
    throw pvError(
      'PV_ERR_VIRTQ_LAYOUT',
      `virtio-mmio registers need ${MMIO_REG_BYTES} bytes of a SharedArrayBuffer at a 4-aligned offset`,
    );
  }
  return new Int32Array(regs, offset, MMIO_REG_WORDS);
}

/** A 64-bit guest-physical address from its Low/High register halves (u32 each). */
export function joinAddr(lo: number, hi: number): number {
  return (lo >>> 0) + (hi >>> 0) * 2 ** 32;
}

// The status block must end before the window starts; checked once at load, not per access.
if (STATUS_REG_BYTES > MMIO_WINDOW) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'status block overlaps the mmio window');
