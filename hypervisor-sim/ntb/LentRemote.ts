/**
 * The lender's end of an NVMe SSD lent to a host in ANOTHER process (issue 6). In one process the
 * borrower runs the lender's controller inline over shared state (cluster/LentNvme.ts); across
 * processes nothing is shared, so the split is real: the controller runs HERE, in a service
 * worker of the lender (NtbServiceWorker.ts), and the borrower's unchanged NvmeDriver reaches it
 * through link messages:
 *
 * ```
 *  borrower worker: NvmeDriver ─ RemoteBar (sync mailbox) ─► borrower main ─ `mmio` ─► lender main
 *     LentRemote.mmio ─ ServiceMailbox ─► service worker: bar.write32 → controller inline
 *        └ DMA: RemoteDma (sync mailbox) ─► lender main ─ `dma` ─► borrower main: BorrowedRemote
 * ```
 * The main thread never blocks: `mmio` awaits the worker (which blocks instead), and the worker's
 * DMA calls are served by a MailboxServer on this thread that sends them with `dma`.
 *
 * Checks on an incoming access, before the worker sees it: the lease, BAR 0, a 4-aligned offset
 * inside the BAR, a u32 value. One access runs at a time; later ones queue (ordered).
 *
 * `close(reason)` ends the lease: in-flight and later `mmio` fail with PV_ERR_LEND_REVOKED, the
 * worker's outstanding DMA fails at once (the device completes with errors, none reaching the
 * borrower), then the worker resets the controller and leaves (bounded; on a stuck worker it is
 * terminated, its controller lock broken and the reset done here), so the next borrower gets a
 * disabled controller with no queues. The media — the backing file — is kept.
 */

import { Worker } from 'node:worker_threads';
import { fromWireError, pvError } from '../../protocol/errors.js';
import type { DmaReqMsg, MmioReqMsg, MmioRspMsg } from '../../protocol/link/LinkSchema.js';
import { NvmeDevice, type NvmeState } from '../devices/nvme/NvmeDevice.js';
import { NvmeDevWord } from '../devices/nvme/NvmeLayout.js';
import { createMailbox, type MailboxServer } from '../link/Mailbox.js';
import type { NtbServiceData, NtbServiceToHost } from './NtbServiceWorker.js';
import { type DmaSend, serveDmaMailbox } from './RemoteDma.js';
import { createServiceMailbox, ServiceCaller, ServiceOp } from './ServiceMailbox.js';

/** How the lender builds it. */
export interface LentRemoteOptions {
  /** The lent controller (the host's NvmeState). */
  readonly state: NvmeState;
  /** The lease the borrower holds. */
  readonly lease: string;
  /** Sends one `dma` request to the borrower (the host link). */
  readonly dma: DmaSend;
  /** Borrower host name (named in errors). */
  readonly borrower?: string;
  /** Bound of one DMA round trip (default 5 s). */
  readonly dmaTimeoutMs?: number;
  /** Bound of one MMIO access in the worker, its DMA included (default 30 s). */
  readonly mmioTimeoutMs?: number;
  /** Bound of start and of close's orderly stop (default 5 s each). */
  readonly threadTimeoutMs?: number;
}

/** Bytes of the DMA mailbox data area: one chunk of a fetch or store. */
const DMA_MAILBOX_DATA = 4 << 20;

/** Staging for `state`: twice the largest range the controller resolves at once, plus slack. */
export function stagingBytesFor(state: NvmeState): number {
  const s = state.sizes;
  const maxTransfer = 4096 * 2 ** s.mdts;
  const maxQueue = s.maxQueueEntries * 64;
  return 2 * Math.max(maxTransfer, maxQueue) + (64 << 10);
}

/** The lender's end of one remote lease (see the file comment). */
export class LentRemote {
  readonly lease: string;
  private readonly _o: LentRemoteOptions;
  private readonly _service = createServiceMailbox();
  private readonly _caller = new ServiceCaller(this._service);
  private readonly _dmaMailbox = createMailbox(DMA_MAILBOX_DATA);
  private _dmaServer: MailboxServer | undefined;
  private _worker: Worker | undefined;
  private _exited: Promise<void> = Promise.resolve();
  private _closed: Error | undefined;
  private _closing: Promise<void> | undefined;
  private _wakeClosed: (err: Error) => void = () => undefined;
  private readonly _closedSignal: Promise<never>;
  /** DMA faults the worker saw (known after close). */
  dmaFaults = 0;
  /** How close ended the worker. */
  stoppedBy: 'stop' | 'terminate' | undefined;

  constructor(o: LentRemoteOptions) {
    this._o = o;
    this.lease = o.lease;
    this._closedSignal = new Promise<never>((_, reject) => {
      this._wakeClosed = reject;
    });
    this._closedSignal.catch(() => undefined);
  }

  /** Spawns the service worker and resolves once it serves (PV_ERR_TIMEOUT / its error otherwise). */
  async start(): Promise<void> {
    if (this._worker || this._closed) throw pvError('PV_ERR_BAD_REQUEST', `lease ${this.lease}: already started`);
    const o = this._o;
    this._dmaServer = serveDmaMailbox(this._dmaMailbox, this.lease, (req, bulk) => this._sendDma(req, bulk));
    const data: NtbServiceData = {
      state: o.state,
      service: this._service,
      dmaMailbox: this._dmaMailbox,
      stagingBytes: stagingBytesFor(o.state),
      dmaTimeoutMs: o.dmaTimeoutMs ?? 5000,
    };
    const worker = new Worker(new URL('./NtbServiceWorker.js', import.meta.url), { workerData: data });
    this._worker = worker;
    // The service thread never keeps the process alive on its own: the link does.
    worker.unref();
    let ready!: () => void;
    let failed!: (err: Error) => void;
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    worker.on('message', (msg: NtbServiceToHost) => {
      if (msg.type === 'ready') ready();
      else if (msg.type === 'stopped') this.dmaFaults = msg.dmaFaults;
      else if (msg.type === 'error') {
        const err = fromWireError(msg.error);
        failed(err);
        void this.close(`service thread failed: ${err.message}`);
      }
    });
    worker.on('error', (err) => {
      failed(err);
      void this.close(`service thread failed: ${err.message}`);
    });
    this._exited = new Promise<void>((resolve) => {
      worker.once('exit', () => {
        failed(pvError('PV_ERR_LEND_REVOKED', `lease ${this.lease}: service thread exited`));
        resolve();
        void this.close('service thread exited');
      });
    });
    const bound = o.threadTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(pvError('PV_ERR_TIMEOUT', `lease ${this.lease}: service thread not ready in ${bound} ms`)),
        bound,
      );
    });
    try {
      await Promise.race([started, timeout]);
    } catch (err) {
      await this.close(`start failed: ${(err as Error).message}`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Serves one `mmio` request of the borrower (see the file comment for the checks). */
  async mmio(req: MmioReqMsg): Promise<MmioRspMsg> {
    if (this._closed) throw this._closed;
    if (this._worker === undefined) throw pvError('PV_ERR_BAD_REQUEST', `lease ${this.lease}: not started`);
    if (req.lease !== this.lease) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `MMIO for lease ${String(req.lease)} on lease ${this.lease}`);
    }
    const size = this._o.state.bar.byteLength;
    if (req.bar !== 0) throw pvError('PV_ERR_OUT_OF_BOUNDS', `${this._o.state.sizes.name} has no BAR ${req.bar}`);
    if (!Number.isInteger(req.offset) || req.offset < 0 || req.offset > size - 4) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `BAR 0 offset ${req.offset} outside [0, ${size})`);
    }
    if ((req.offset & 3) !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `BAR 0 offset ${req.offset} is not 4-aligned`);
    const value = req.write ? req.value : 0;
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
      throw pvError('PV_ERR_INVALID_ARG', `MMIO value ${value} is not a u32`);
    }
    const op = req.write ? ServiceOp.WRITE : ServiceOp.READ;
    try {
      const v = await this._caller.call(op, 0, req.offset, value | 0, this._o.mmioTimeoutMs ?? 30_000);
      return { value: v >>> 0 };
    } catch (err) {
      if ((err as { code?: string }).code === 'PV_ERR_TIMEOUT') {
        void this.close(`service thread stuck: ${(err as Error).message}`);
      }
      throw this._closed ?? err;
    }
  }

  /** Ends the lease (see the file comment). Idempotent; resolves when the device is reset. */
  close(reason: string): Promise<void> {
    this._closing ??= this._close(reason);
    return this._closing;
  }

  private async _close(reason: string): Promise<void> {
    const who = this._o.borrower ? ` (borrower ${this._o.borrower})` : '';
    const err = pvError(
      'PV_ERR_LEND_REVOKED',
      `lease ${this.lease} of ${this._o.state.sizes.name}${who} closed: ${reason}`,
    );
    this._closed = err;
    this._wakeClosed(err);
    this._caller.break(err);
    const worker = this._worker;
    if (worker !== undefined) {
      const bound = this._o.threadTimeoutMs ?? 5000;
      const stopped = await this._caller.stop(bound);
      const exited = await within(this._exited, bound);
      if (stopped && exited) {
        this.stoppedBy = 'stop';
      } else {
        this.stoppedBy = 'terminate';
        await worker.terminate();
        this._forceReset();
      }
    }
    await this._dmaServer?.stop();
  }

  /** A DMA of the worker: sent unless closed; a close fails it at once. */
  private _sendDma(req: DmaReqMsg, bulk?: Uint8Array): Promise<{ bulk?: Uint8Array }> {
    if (this._closed) return Promise.reject(this._closed);
    return Promise.race([this._o.dma(req, bulk), this._closedSignal]);
  }

  /** The worker died holding who knows what: break the controller lock and reset here. */
  private _forceReset(): void {
    // ORDERING: seq-cst store; the only other user of the lock (the worker) is gone.
    Atomics.store(new Int32Array(this._o.state.dev), NvmeDevWord.LOCK, 0);
    const refuse = { resolve: () => false, generation: () => 0 };
    new NvmeDevice(this._o.state, refuse).functionReset();
  }
}

/** True when `p` settles within `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
