/**
 * How a device model reaches memory: every DMA goes through the device's IOMMU context, which
 * turns an I/O virtual address range into a place in some domain's memory, or refuses it (a
 * translation miss or a permission fault). Device models depend only on this interface.
 *
 * `resolve` fills a caller-owned `DmaRef` instead of returning a new object, so the data path
 * allocates nothing per access; `bytes` and `words` are views of the WHOLE target memory
 * (cached per domain), and `offset` is the byte offset of the range in it.
 */

/** Where a resolved DMA range lives. Reused by the caller across resolutions. */
export interface DmaRef {
  /** Whole memory of the target domain, as bytes. */
  bytes: Uint8Array;
  /** Whole memory of the target domain, as Int32 words (for Atomics on queue indices). */
  words: Int32Array;
  /** Byte offset of the resolved range in `bytes`. */
  offset: number;
  /** Domain whose memory it is. */
  domid: number;
}

/** A fresh DmaRef to resolve into. */
export function emptyDmaRef(): DmaRef {
  return { bytes: new Uint8Array(0), words: new Int32Array(0), offset: 0, domid: -1 };
}

/** A device's view of memory through its IOMMU context. */
export interface DmaResolver {
  /**
   * Resolves `[iova, iova + len)` for a read (`write` false) or a write. Returns false — never
   * throws — when any byte of the range is unmapped, lacks the permission, or the range is not
   * contiguous in one domain's memory; the device then completes the work with an error.
   */
  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean;
  /**
   * Bumped whenever a mapping is removed or changed, so a device may cache a resolution (a
   * queue's view) and re-resolve only when the generation moved.
   */
  generation(): number;
}
