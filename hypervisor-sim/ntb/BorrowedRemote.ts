/**
 * The borrower's end of a device lent by a host in ANOTHER process: the lender's device DMAs
 * into the borrower's memory, so its `dma` link messages (RemoteDma.ts on the lender) arrive
 * here, in the borrower's main thread, and are applied to memory through a DmaResolver of the
 * borrower — the IOMMU context of the borrowed function (translate: the owner's memory 1:1 plus
 * grant device maps), or for a native owner one in bypass mode. This is the NTB's DMA window and
 * the borrower's IOMMU, in one place: the lender only ever names IOVAs.
 *
 * The lender is untrusted. Every request is checked before memory is touched: the lease, the
 * length (1 … MAX_MESSAGE_BULK), the IOVA (a safe integer, the range's end too), a write's bulk
 * carrying exactly `length` bytes; then the IOMMU must resolve the whole range with the right
 * permission (else PV_ERR_OUT_OF_BOUNDS — the lender's fetch fails and its device completes with
 * a DMA error). Errors are typed and answered; nothing here throws past `dma`.
 *
 * A write stores every byte but the LAST aligned word with `set()`, then that word with
 * `Atomics.store` and `Atomics.notify`: a driver polling a CQE's phase word (the last word of
 * the 16-byte entry) with Atomics.load sees the whole entry once it sees the new phase, and a
 * driver sleeping on it wakes — as if the device had written it in this process.
 *
 * `revoke()` ends the lease: every later request is refused (PV_ERR_LEND_REVOKED).
 */

import { pvError } from '../../protocol/errors.js';
import { MAX_MESSAGE_BULK } from '../../protocol/link/LinkFrame.js';
import type { DmaReqMsg } from '../../protocol/link/LinkSchema.js';
import { type DmaRef, type DmaResolver, emptyDmaRef } from '../iommu/DmaResolver.js';

/** What the borrower builds it from. */
export interface BorrowedRemoteOptions {
  /** The lease the device is borrowed under; requests for another lease are refused. */
  readonly lease: string;
  /** The borrower's view of memory for this device (its IOMMU context). */
  readonly resolver: DmaResolver;
  /** Lender host name (named in errors). */
  readonly lender?: string;
}

/** Counters (diagnostics). */
export interface BorrowedRemoteStats {
  reads: number;
  writes: number;
  bytes: number;
  refused: number;
}

/** The borrower's DMA endpoint for one lease (see the file comment). */
export class BorrowedRemote {
  readonly lease: string;
  readonly stats: BorrowedRemoteStats = { reads: 0, writes: 0, bytes: 0, refused: 0 };
  private readonly _resolver: DmaResolver;
  private readonly _lender: string;
  private readonly _ref: DmaRef = emptyDmaRef();
  private _revoked: string | undefined;

  constructor(o: BorrowedRemoteOptions) {
    this.lease = o.lease;
    this._resolver = o.resolver;
    this._lender = o.lender ?? 'the lender';
  }

  /** Ends the lease: every later request is refused with PV_ERR_LEND_REVOKED. */
  revoke(reason = 'lease closed'): void {
    this._revoked ??= reason;
  }

  /** True once revoked. */
  get revoked(): boolean {
    return this._revoked !== undefined;
  }

  /**
   * Serves one `dma` request: a read resolves with the bytes as `bulk`, a write with nothing.
   * Rejects with a typed error (see the file comment).
   */
  async dma(req: DmaReqMsg, bulk?: Uint8Array): Promise<{ bulk?: Uint8Array }> {
    try {
      return this._serve(req, bulk);
    } catch (err) {
      this.stats.refused++;
      throw err;
    }
  }

  private _serve(req: DmaReqMsg, bulk: Uint8Array | undefined): { bulk?: Uint8Array } {
    if (this._revoked !== undefined) {
      throw pvError('PV_ERR_LEND_REVOKED', `lease ${this.lease} from ${this._lender} ended: ${this._revoked}`);
    }
    if (req.lease !== this.lease) {
      throw pvError('PV_ERR_BAD_REQUEST', `DMA for lease ${String(req.lease)} on the endpoint of ${this.lease}`);
    }
    const { iova, length, write } = req;
    if (!Number.isInteger(length) || length < 1 || length > MAX_MESSAGE_BULK) {
      throw pvError('PV_ERR_BAD_LENGTH', `DMA length ${length} outside 1…${MAX_MESSAGE_BULK}`);
    }
    if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(iova + length)) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `DMA address ${iova} (+${length}) is not a safe bus address`);
    }
    if (write ? bulk === undefined || bulk.length !== length : bulk !== undefined && bulk.length !== 0) {
      throw pvError(
        'PV_ERR_BAD_LENGTH',
        `DMA ${write ? 'write' : 'read'} of ${length} carries ${bulk?.length ?? 0} bytes`,
      );
    }
    const ref = this._ref;
    if (!this._resolver.resolve(iova, length, write === true, ref)) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `IOVA 0x${iova.toString(16)} (+${length}) is not mapped for this device`);
    }
    this.stats.bytes += length;
    if (!write) {
      this.stats.reads++;
      // A copy: it travels on the link after this returns, while the owner keeps writing.
      return { bulk: ref.bytes.slice(ref.offset, ref.offset + length) };
    }
    this.stats.writes++;
    // INVARIANT: bulk.length === length was checked above; the resolver proved the range writable.
    this._store(ref, bulk as Uint8Array, length);
    return {};
  }

  /** Plain bytes first, the last aligned word last with a seq-cst store (see the file comment). */
  private _store(ref: DmaRef, bulk: Uint8Array, length: number): void {
    const start = ref.offset;
    const end = start + length;
    // Arithmetic, not bit masks: a memory may be larger than 2 GiB.
    const word = end - (end % 4) - 4;
    if (word < start) {
      ref.bytes.set(bulk, start);
      return;
    }
    ref.bytes.set(bulk.subarray(0, word - start), start);
    ref.bytes.set(bulk.subarray(word + 4 - start), word + 4);
    // Little-endian, as the Int32Array views of memory on the platforms pvio runs on.
    const value = new DataView(bulk.buffer, bulk.byteOffset + word - start, 4).getInt32(0, true);
    // ORDERING: seq-cst store AFTER every other byte; a reader whose Atomics.load sees this
    // word (a CQE's phase) sees the rest of the range.
    Atomics.store(ref.words, word / 4, value);
    // ORDERING: after the store; wakes a driver sleeping on the word (no-op if none waits).
    Atomics.notify(ref.words, word / 4);
  }
}
