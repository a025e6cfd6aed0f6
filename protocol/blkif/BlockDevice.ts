/**
 * What a block backend serves guests from: any store of fixed-size sectors. Kept small so a
 * file (backend/blk/FileBlockDevice.ts), a RAM disk or an NVMe namespace behind a driver can
 * implement it. Calls are synchronous: a backend thread does the I/O in its serving loop, as
 * Xen's qdisk does with synchronous AIO completion in the simplest mode.
 *
 * Units are the device's own sectors (`sectorSize` bytes). A blkif backend converts from the
 * ring's 512-byte units and checks alignment and range before it calls in; an implementation
 * still refuses an out-of-range call with PV_ERR_BLK_BAD_SECTOR (defence in depth) and reports
 * a media error as PV_ERR_BLK_IO.
 */

import { pvError } from '../errors.js';
import type { Iova } from '../Types.js';

export interface BlockDevice {
  /** Size in device sectors (a safe integer). */
  readonly sectors: number;
  /** Logical block size in bytes: a power of two ≥ 512. */
  readonly sectorSize: number;
  /** True when writes are refused. */
  readonly readOnly: boolean;
  /** Reads `count` sectors from `sector` into `into` (exactly `count * sectorSize` bytes). */
  read(sector: number, count: number, into: Uint8Array): void;
  /** Writes `count` sectors at `sector` from `from` (exactly `count * sectorSize` bytes). */
  write(sector: number, count: number, from: Uint8Array): void;
  /** Makes every completed write durable (a cache flush). */
  flush(): void;
}

/**
 * A BlockDevice whose data moves by DMA from a PCIe device (an NVMe namespace behind its
 * driver): besides the copying calls above, it takes buffers given as DEVICE addresses — pages
 * the backend mapped for `dmaDevice` with `GrantOps.mapGrants(…, { device })`, as Xen's
 * `GNTMAP_device_map` returns `dev_bus_addr` — so a guest's granted page goes to the device
 * with no copy in the driver domain.
 *
 * Batching: `queueDma` queues one transfer (it may already start it), `finishDma` waits for
 * EVERY queued transfer, then throws the first failure. A caller must call `finishDma` before it
 * unmaps the pages, also after a `queueDma` threw: the device may still be writing to a page
 * whose mapping the caller is about to remove.
 */
export interface DmaBlockDevice extends BlockDevice {
  /** Name of the PCI function the buffers must be mapped for (`nvme0`). */
  readonly dmaDevice: string;
  /** Queues a read (device → memory) or write of `count` sectors at `sector` to/from device address `dma`. */
  queueDma(write: boolean, sector: number, count: number, dma: Iova): void;
  /** Waits for every queued transfer; throws the first error (PV_ERR_BLK_IO / PV_ERR_BLK_BAD_SECTOR). */
  finishDma(): void;
}

/** True when `dev` moves data by DMA (has `dmaDevice`, `queueDma` and `finishDma`). */
export function isDmaBlockDevice(dev: BlockDevice): dev is DmaBlockDevice {
  const d = dev as Partial<DmaBlockDevice>;
  return typeof d.dmaDevice === 'string' && typeof d.queueDma === 'function' && typeof d.finishDma === 'function';
}

/**
 * Throws PV_ERR_BLK_BAD_SECTOR unless `[sector, sector + count)` lies inside `sectors` and the
 * buffer holds exactly `count * sectorSize` bytes. Overflow-safe: it never adds two numbers
 * that came from a caller.
 */
export function checkDeviceRange(
  dev: Pick<BlockDevice, 'sectors' | 'sectorSize'>,
  sector: number,
  count: number,
  bufBytes: number,
): void {
  if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 0) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `sector ${sector} / count ${count} are not non-negative integers`);
  }
  if (count > dev.sectors || sector > dev.sectors - count) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `sectors [${sector}, +${count}) outside a device of ${dev.sectors}`);
  }
  if (bufBytes !== count * dev.sectorSize) {
    throw pvError('PV_ERR_BLK_BAD_SECTOR', `buffer of ${bufBytes} bytes for ${count} sectors of ${dev.sectorSize}`);
  }
}
