/**
 * A BAR of a device lent by a host in ANOTHER process, as the borrower's driver sees it: an
 * MmioRegion (protocol/Pci.ts) whose `read32`/`write32` become `mmio` link messages
 * (LinkSchema.ts). The driver runs in a borrower worker; the sockets live in its main thread, so
 * each access is a synchronous MailboxClient call (link/Mailbox.ts) that the main thread answers
 * after the lender answered (`serveBarMailbox`). The worker blocks meanwhile, as a CPU stalls on
 * a non-posted PCIe read.
 *
 * Writes are NON-POSTED here (on real PCIe a memory write is posted): the write returns only
 * after the lender ran the controller for it and flushed its DMA (RemoteDma.ts). Without shared
 * memory a posted doorbell would need a second ordering mechanism — the CQE the lender writes
 * back must not be seen before the data it completes, and a later register read must not
 * overtake an earlier doorbell on another connection — whereas one request/response per access
 * keeps every access totally ordered with the DMA it caused: when `write32` returns, the data and
 * the completions are already in the borrower's memory. The cost is one round trip per doorbell.
 *
 * Failure: any failed access (the host link is down, no answer within `timeoutMs`, the lender
 * closed the lease) throws PV_ERR_LEND_REVOKED naming the lender and the cause — a clear error,
 * never a hang — and latches: every later access fails at once, since whether the lender ran the
 * lost access is unknown and the device can no longer be trusted to match the driver's state.
 */

import { pvError } from '../../protocol/errors.js';
import type { MmioReqMsg, MmioRspMsg } from '../../protocol/link/LinkSchema.js';
import type { MmioRegion } from '../../protocol/Pci.js';
import { createMailbox, MailboxClient, MailboxServer } from '../link/Mailbox.js';

/** Operations on the BAR mailbox. */
export const enum BarOp {
  READ = 1,
  WRITE = 2,
}

/**
 * Mailbox ARGS of a BAR access (indices into MailboxClient.args):
 * ```
 * arg  field   note
 * 0    BAR     BAR index
 * 1    OFFSET  byte offset, 4-aligned, inside the BAR
 * 2    VALUE   WRITE: the value in; READ: the register out
 * ```
 */
export const enum BarArg {
  BAR = 0,
  OFFSET = 1,
  VALUE = 2,
}

/** Data area of a BAR mailbox: accesses carry no data, only args (and error text). */
export const BAR_MAILBOX_DATA = 4096;

/** A BAR mailbox buffer (share it with the borrower worker and `serveBarMailbox`). */
export function createBarMailbox(): SharedArrayBuffer {
  return createMailbox(BAR_MAILBOX_DATA);
}

/** What the worker side needs (structured-cloneable). */
export interface RemoteBarOptions {
  /** The BAR mailbox (createBarMailbox). */
  readonly mailbox: SharedArrayBuffer;
  /** Lender host name (named in errors). */
  readonly lender: string;
  /** Lease the device is borrowed under. */
  readonly lease: string;
  /** BAR bytes (LendOpenRsp.barSize). */
  readonly size: number;
  /** BAR index (default 0). */
  readonly bar?: number;
  /** Bound of one access, covering the lender's DMA for a doorbell (default 10 s). */
  readonly timeoutMs?: number;
}

/** A lent BAR reached over the host link (see the file comment). */
export class RemoteBar implements MmioRegion {
  readonly size: number;
  private readonly _mb: MailboxClient;
  private readonly _lender: string;
  private readonly _lease: string;
  private readonly _bar: number;
  private readonly _timeoutMs: number;
  private _revoked: Error | undefined;

  constructor(o: RemoteBarOptions) {
    if (!Number.isInteger(o.size) || o.size < 4 || o.size % 4 !== 0) {
      throw pvError('PV_ERR_CONFIG', `remote BAR size ${o.size} is not a positive multiple of 4`);
    }
    this._mb = new MailboxClient(o.mailbox);
    this.size = o.size;
    this._lender = o.lender;
    this._lease = o.lease;
    this._bar = o.bar ?? 0;
    this._timeoutMs = o.timeoutMs ?? 10_000;
  }

  /** The latched failure, if an access has failed. */
  get revoked(): Error | undefined {
    return this._revoked;
  }

  read32(offset: number): number {
    this._check(offset);
    return this._access(BarOp.READ, offset, 0);
  }

  write32(offset: number, value: number): void {
    this._check(offset);
    this._access(BarOp.WRITE, offset, value);
  }

  private _check(offset: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset > this.size - 4) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `BAR ${this._bar} offset ${offset} outside [0, ${this.size})`);
    }
    if ((offset & 3) !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `BAR ${this._bar} offset ${offset} is not 4-aligned`);
  }

  private _access(op: BarOp, offset: number, value: number): number {
    if (this._revoked) throw this._revoked;
    const a = this._mb.args;
    a[BarArg.BAR] = this._bar;
    a[BarArg.OFFSET] = offset;
    a[BarArg.VALUE] = value | 0;
    try {
      this._mb.call(op, 0, this._timeoutMs);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      const what = `${op === BarOp.WRITE ? 'write' : 'read'} at 0x${offset.toString(16)}`;
      this._revoked = pvError(
        'PV_ERR_LEND_REVOKED',
        `device lent by ${this._lender} (lease ${this._lease}) is gone: BAR ${this._bar} ${what} failed ` +
          `(${e.code ?? 'error'}: ${e.message ?? String(err)})`,
      );
      throw this._revoked;
    }
    return a[BarArg.VALUE];
  }
}

/**
 * Borrower main thread: serves a borrower worker's BAR mailbox by sending each access as an
 * `mmio` request for `lease`. Started; stop it with `stop()`. A failed `send` answers the access
 * with its error (the worker turns it into PV_ERR_LEND_REVOKED).
 */
export function serveBarMailbox(
  sab: SharedArrayBuffer,
  lease: string,
  send: (req: MmioReqMsg) => Promise<MmioRspMsg>,
): MailboxServer {
  const server = new MailboxServer(sab, async (call) => {
    if (call.op !== BarOp.READ && call.op !== BarOp.WRITE) {
      throw pvError('PV_ERR_BAD_REQUEST', `unknown BAR mailbox op ${call.op}`);
    }
    const write = call.op === BarOp.WRITE;
    const req: MmioReqMsg = {
      lease,
      bar: call.args[BarArg.BAR] >>> 0,
      offset: call.args[BarArg.OFFSET] >>> 0,
      write,
      value: write ? call.args[BarArg.VALUE] >>> 0 : 0,
    };
    const rsp = await send(req);
    call.args[BarArg.VALUE] = rsp.value | 0;
    return 0;
  });
  server.start();
  return server;
}
