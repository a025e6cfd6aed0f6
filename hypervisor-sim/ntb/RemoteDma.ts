/**
 * The DMA path of a device lent to a host in ANOTHER process (SmartIO Device Lending across real
 * machines): the device runs in the lender's NTB service worker, the memory it reaches lives on
 * the borrower, and no byte of it is shared. Each DMA the controller resolves therefore becomes
 * `dma` link messages (LinkSchema.ts): the worker asks its main thread synchronously
 * (link/Mailbox.ts — the worker blocks, as a device stalls on a non-posted read), the main thread
 * sends the request over the host link and answers with the data.
 *
 *  - `resolve(read)` fetches the range into a STAGING area and returns a view of it;
 *  - `resolve(write)` fetches it too — a device may write only part of what it resolved, or
 *    resolve only to validate (NvmeAdmin checks a new queue is reachable) — and RECORDS it;
 *  - `flush()` sends every recorded range back, in resolve order. The service loop calls it
 *    after each MMIO access and before answering it.
 *
 * Ordering argument: a controller posts a completion by writing data first and the CQE after
 * it. Records are kept in resolve order and sent one at a time, each acknowledged by the
 * borrower (which applied it) before the next is sent, so the data lands before the CQE; and
 * because the doorbell write is non-posted (RemoteBar.ts) and answered only after the flush, the
 * borrower's driver sees the CQE no later than when its doorbell write returns. A store that
 * fails for any reason but the borrower's IOMMU refusing the range (link down, timeout, lease
 * closed) drops the rest of the records — a CQE never lands without its data — and `flush`
 * throws, so the MMIO access is answered with the error. A refused range is dropped alone, as
 * an IOMMU drops a posted write it faults on.
 *
 * Only what the device changed is sent: a write resolution keeps a copy of the fetched bytes,
 * and `flush` sends the span from the first to the last changed byte (widened to whole 4-byte
 * words, so a CQE's phase word is the last word and the borrower stores it atomically), or
 * nothing. A range resolved only to validate is therefore never written back — a write-back of
 * unchanged bytes could undo a store the borrower made meanwhile.
 *
 * Staging is a bump allocator reset at each flush; a resolve that does not fit flushes early.
 * INVARIANT: the device finishes with a resolution before its next resolve (the NVMe engine's
 * scratch refs are reused that way), so an early flush never sends or reuses a range the device
 * is still writing. A resolve overlapping a recorded range flushes first, so the fetch sees the
 * bytes the device already wrote. `generation()` moves at every reset, so no view of staging is
 * cached across one.
 *
 * Faults: a failed fetch (the borrower refused the IOVA, the link is gone) makes `resolve`
 * return false — the device completes with its DMA error — and never throws (DmaResolver).
 * A failure of the link itself (anything but the borrower refusing the request: link down,
 * timeout, lease closed) is permanent: it latches, every later resolve faults at once and every
 * `flush` throws it, so a dead borrower costs one timeout, not one per command.
 */

import { pvError } from '../../protocol/errors.js';
import { MAX_MESSAGE_BULK } from '../../protocol/link/LinkFrame.js';
import type { DmaReqMsg } from '../../protocol/link/LinkSchema.js';
import type { DmaRef, DmaResolver } from '../iommu/DmaResolver.js';
import { MailboxClient, MailboxServer } from '../link/Mailbox.js';

/** Operations on the DMA mailbox. */
export const enum DmaOp {
  /** Read `LENGTH` bytes at the IOVA from the borrower into the data area. */
  FETCH = 1,
  /** Write the `LENGTH` bytes of the data area to the borrower at the IOVA. */
  STORE = 2,
}

/**
 * Mailbox ARGS of a DMA call (indices into MailboxClient.args):
 * ```
 * arg  field    note
 * 0    IOVA_LO  low 32 bits of the IOVA
 * 1    IOVA_HI  high bits (the IOVA is a safe integer < 2^53)
 * 2    LENGTH   bytes, 1 … the chunk size (≤ MAX_MESSAGE_BULK)
 * ```
 */
export const enum DmaArg {
  IOVA_LO = 0,
  IOVA_HI = 1,
  LENGTH = 2,
}

/** `DmaRef.domid` of a resolution into staging (never a domain id). */
export const REMOTE_DMA_DOMID = -102;

/** Sends one `dma` request on the host link; a read resolves with the data as `bulk`. */
export type DmaSend = (req: DmaReqMsg, bulk?: Uint8Array) => Promise<{ bulk?: Uint8Array }>;

/** What the worker side needs. */
export interface RemoteDmaOptions {
  /** The worker → main DMA mailbox (link/Mailbox.ts). */
  readonly mailbox: SharedArrayBuffer;
  /** Staging bytes: at least the largest range the device resolves at once. */
  readonly stagingBytes: number;
  /** Bound of one fetch or store round trip. */
  readonly timeoutMs: number;
}

interface Pending {
  readonly iova: number;
  readonly len: number;
  readonly at: number;
}

/** A lent device's DMA to a borrower in another process (see the file comment). */
export class RemoteDma implements DmaResolver {
  /** Ranges the borrower refused or the link failed on (diagnostics). */
  faults = 0;
  private readonly _mb: MailboxClient;
  private readonly _chunk: number;
  private readonly _timeoutMs: number;
  private readonly _bytes: Uint8Array;
  private readonly _words: Int32Array;
  /** The fetched bytes of each write resolution, at the same offsets as in `_bytes`. */
  private readonly _orig: Uint8Array;
  private _top = 0;
  private _gen = 0;
  private readonly _pending: Pending[] = [];
  /** The link's failure, latched (see the file comment). */
  private _dead: Error | undefined;

  constructor(o: RemoteDmaOptions) {
    if (!Number.isSafeInteger(o.stagingBytes) || o.stagingBytes < 4096) {
      throw pvError('PV_ERR_CONFIG', `staging must be ≥ 4096 bytes, got ${o.stagingBytes}`);
    }
    this._mb = new MailboxClient(o.mailbox);
    this._chunk = Math.min(this._mb.data.length, MAX_MESSAGE_BULK);
    this._timeoutMs = o.timeoutMs;
    const stage = new SharedArrayBuffer(o.stagingBytes + 8);
    this._bytes = new Uint8Array(stage);
    this._words = new Int32Array(stage);
    this._orig = new Uint8Array(o.stagingBytes + 8);
  }

  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
    if (this._dead || !Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(len) || len < 0) {
      return this._fault();
    }
    if (!Number.isSafeInteger(iova + len) || len > this._bytes.length - 8) return this._fault();
    if (this._overlapsPending(iova, len) && !this._flushQuietly()) return this._fault();
    let at = this._alloc(iova, len);
    if (at < 0) {
      if (!this._flushQuietly()) return this._fault();
      at = this._alloc(iova, len);
    }
    if (!this._fetch(iova, len, at)) return this._fault();
    if (write) {
      this._orig.set(this._bytes.subarray(at, at + len), at);
      this._pending.push({ iova, len, at });
    }
    out.bytes = this._bytes;
    out.words = this._words;
    out.offset = at;
    out.domid = REMOTE_DMA_DOMID;
    return true;
  }

  generation(): number {
    return this._gen;
  }

  /** The latched link failure, if any. */
  get dead(): Error | undefined {
    return this._dead;
  }

  /**
   * Sends every recorded range to the borrower in resolve order and resets staging. Throws the
   * link's failure (latched; the remaining ranges are dropped).
   */
  flush(): void {
    if (!this._dead) this._storeAll();
    this._pending.length = 0;
    this._top = 0;
    this._gen++;
    if (this._dead) throw this._dead;
  }

  /** Staging offset for `[iova, +len)`, congruent to the IOVA mod 8 (alignment checks hold). */
  private _alloc(iova: number, len: number): number {
    const at = ((this._top + 7) & ~7) + (iova % 8);
    if (at + len > this._bytes.length) return -1;
    this._top = at + len;
    return at;
  }

  private _overlapsPending(iova: number, len: number): boolean {
    for (const p of this._pending) if (iova < p.iova + p.len && p.iova < iova + len) return true;
    return false;
  }

  private _flushQuietly(): boolean {
    try {
      this.flush();
      return true;
    } catch {
      return false;
    }
  }

  /** Latches a failure of the link; false when the borrower merely refused the request. */
  private _linkFailed(err: unknown): boolean {
    const code = (err as { code?: string }).code;
    if (code === 'PV_ERR_OUT_OF_BOUNDS' || code === 'PV_ERR_BAD_LENGTH' || code === 'PV_ERR_BAD_ALIGNMENT')
      return false;
    this._dead ??= err instanceof Error ? err : pvError('PV_ERR_PCIE_LINK_DOWN', String(err));
    return true;
  }

  private _fetch(iova: number, len: number, at: number): boolean {
    const mb = this._mb;
    for (let done = 0; done < len; ) {
      const n = Math.min(this._chunk, len - done);
      this._args(iova + done, n);
      try {
        if (mb.call(DmaOp.FETCH, 0, this._timeoutMs) !== n) return false;
      } catch (err) {
        this._linkFailed(err);
        return false;
      }
      this._bytes.set(mb.data.subarray(0, n), at + done);
      done += n;
    }
    return true;
  }

  /** Stores what changed in every pending range, in order, until the link fails. */
  private _storeAll(): void {
    const mb = this._mb;
    for (const p of this._pending) {
      const [from, to] = this._changed(p);
      for (let done = from; done < to; ) {
        const n = Math.min(this._chunk, to - done);
        this._args(p.iova + done, n);
        mb.data.set(this._bytes.subarray(p.at + done, p.at + done + n));
        try {
          mb.call(DmaOp.STORE, n, this._timeoutMs);
        } catch (err) {
          this.faults++;
          // The borrower refused the range: dropped alone, as a faulting posted write.
          if (!this._linkFailed(err)) break;
          return;
        }
        done += n;
      }
    }
  }

  /** `[from, to)` of `p` (range offsets) holding every changed byte, in whole words; empty if none. */
  private _changed(p: Pending): [number, number] {
    const now = this._bytes;
    const was = this._orig;
    let lo = 0;
    while (lo < p.len && now[p.at + lo] === was[p.at + lo]) lo++;
    if (lo === p.len) return [0, 0];
    let hi = p.len;
    while (now[p.at + hi - 1] === was[p.at + hi - 1]) hi--;
    // Word boundaries of the bus address (staging keeps it mod 8), clamped to the range.
    const from = Math.max(lo - ((p.iova + lo) % 4), 0);
    const to = Math.min(hi + ((4 - ((p.iova + hi) % 4)) % 4), p.len);
    return [from, to];
  }

  private _args(iova: number, n: number): void {
    const a = this._mb.args;
    a[DmaArg.IOVA_LO] = (iova % 0x1_0000_0000) | 0;
    a[DmaArg.IOVA_HI] = Math.floor(iova / 0x1_0000_0000);
    a[DmaArg.LENGTH] = n;
  }

  private _fault(): false {
    this.faults++;
    return false;
  }
}

/**
 * Lender main thread: serves the service worker's DMA mailbox by sending `dma` requests for
 * `lease` with `send`. Started; stop it with `stop()`.
 */
export function serveDmaMailbox(sab: SharedArrayBuffer, lease: string, send: DmaSend): MailboxServer {
  const server = new MailboxServer(sab, async (call) => {
    const iova = (call.args[DmaArg.IOVA_HI] >>> 0) * 0x1_0000_0000 + (call.args[DmaArg.IOVA_LO] >>> 0);
    const length = call.args[DmaArg.LENGTH];
    if (!(length > 0 && length <= call.data.length)) {
      throw pvError('PV_ERR_BAD_LENGTH', `DMA of ${length} bytes outside 1…${call.data.length}`);
    }
    if (call.op === DmaOp.FETCH) {
      const r = await send({ lease, iova, length, write: false });
      if (r.bulk === undefined || r.bulk.length !== length) {
        throw pvError('PV_ERR_BAD_LENGTH', `DMA read of ${length} bytes answered with ${r.bulk?.length ?? 0}`);
      }
      call.data.set(r.bulk);
      return length;
    }
    if (call.op === DmaOp.STORE) {
      if (call.outLen !== length) throw pvError('PV_ERR_BAD_LENGTH', `DMA write of ${length} carries ${call.outLen}`);
      // A copy: the link may still hold the bytes after the answer, the mailbox is reused.
      await send({ lease, iova, length, write: true }, call.data.slice(0, length));
      return 0;
    }
    throw pvError('PV_ERR_BAD_REQUEST', `unknown DMA mailbox op ${call.op}`);
  });
  server.start();
  return server;
}
