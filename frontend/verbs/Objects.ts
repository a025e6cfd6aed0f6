/**
 * The verbs objects a program holds (`ibv_context`, `ibv_pd`, `ibv_mr`, `ibv_cq`, `ibv_qp`):
 * thin records over provider handles, plus what the common code needs — the CQ ring view and
 * its private consumer index, reference counts for EBUSY-style destroy rules, and the QP state
 * last set, so every transport refuses the same misuse with the same error.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { DeviceAttachment, Transport } from '../../protocol/Pci.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { CqWord, cqBytes } from '../../protocol/rdma/Cq.js';
import { type QpCap, QpState, type QpType, type Wc } from '../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import type { VerbsProvider } from './Provider.js';

/** An open device (`ibv_context`): the provider of its transport and the caller's memory. */
export class Context {
  /** The domain's own memory: buffers, MRs and CQ rings live here. */
  readonly memory: GuestMemory;
  /** Set by `closeDevice`; every verb on a closed context throws PV_ERR_DISCONNECTED. */
  closed = false;
  /** Buffers from `allocBuffer` (address → pages), freed at close. */
  private readonly _buffers = new Map<number, number>();

  /**
   * `openDevice` is the usual way to get one; tests and custom transports may build one over a
   * provider of their own.
   */
  constructor(
    readonly env: DomainEnv,
    readonly attachment: DeviceAttachment,
    readonly provider: VerbsProvider,
  ) {
    this.memory = env.hypercalls.memory;
  }

  /** Port id of the device: what a peer puts in `AhAttr.dlid` (perftest's LID). */
  get portId(): number {
    return this.provider.portId;
  }

  /** How this context reaches the device. */
  get transport(): Transport {
    return this.attachment.transport;
  }

  /** Device name (`nic0`). */
  get deviceName(): string {
    return this.attachment.device;
  }

  /** Allocates `bytes` of zeroed, page-aligned memory (whole pages) in the caller's memory. */
  allocBuffer(bytes: number): GuestPhysAddr {
    checkOpen(this);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `buffer size must be a positive integer, got ${bytes}`);
    }
    const pages = Math.ceil(bytes / PAGE_SIZE);
    const addr = this.memory.allocPages(pages);
    this._buffers.set(addr, pages);
    return addr;
  }

  /** Returns a buffer from `allocBuffer`. */
  freeBuffer(addr: GuestPhysAddr): void {
    const pages = this._buffers.get(addr);
    if (pages === undefined) throw pvError('PV_ERR_INVALID_ARG', `${addr} is not a buffer of this context`);
    this._buffers.delete(addr);
    this.memory.freePages(addr, pages);
  }

  /** Frees every buffer still allocated (at close). */
  freeAllBuffers(): void {
    for (const [addr, pages] of this._buffers) this.memory.freePages(addr as GuestPhysAddr, pages);
    this._buffers.clear();
  }
}

/** Throws PV_ERR_DISCONNECTED on a closed context. */
export function checkOpen(ctx: Context): void {
  if (ctx.closed) throw pvError('PV_ERR_DISCONNECTED', `device ${ctx.deviceName} is closed`);
}

/** A protection domain (`ibv_pd`). */
export class Pd {
  /** MRs and QPs created on it and not yet destroyed (deallocPd refuses while > 0). */
  refs = 0;
  destroyed = false;

  constructor(
    readonly context: Context,
    readonly handle: number,
  ) {}
}

/** A memory region (`ibv_mr`): `addr` is a guest-physical address in the caller's memory. */
export class Mr {
  destroyed = false;

  constructor(
    readonly context: Context,
    readonly pd: Pd,
    readonly handle: number,
    readonly lkey: number,
    readonly rkey: number,
    readonly addr: GuestPhysAddr,
    readonly length: number,
    readonly access: number,
  ) {}
}

/**
 * A completion queue (`ibv_cq`): a ring in the caller's memory (protocol/rdma/Cq.ts) that
 * `pollCq` and `waitCq` read directly, whatever the transport.
 */
export class Cq {
  /** QPs using this CQ (destroyCq refuses while > 0). */
  refs = 0;
  destroyed = false;
  /** The ring as Int32 words (header, then CQEs); a view made once. */
  readonly words: Int32Array;
  /** Private consumer index (free-running u32); the ring's CONS word is written from it. */
  cons = 0;
  /** Times `waitCq` found the ring empty and had to spin or sleep (for reports). */
  waits = 0;
  /** Completions `waitCq` took from the provider (outside the ring) for `pollCq`; made on first use. */
  stash: Wc[] | undefined;
  /** How many of `stash` are held. */
  stashed = 0;

  constructor(
    readonly context: Context,
    readonly handle: number,
    /** CQEs the ring holds (`ibv_cq.cqe`; a power of two ≥ the request). */
    readonly cqe: number,
    readonly ring: GuestPhysAddr,
  ) {
    if (ring % 4 !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `CQ ring at ${ring} is not 4-byte aligned`);
    if (cqe < 1 || (cqe & (cqe - 1)) !== 0)
      throw pvError('PV_ERR_RING_LAYOUT', `CQ of ${cqe} entries: not a power of two`);
    const view = context.memory.view(ring, cqBytes(cqe));
    this.words = new Int32Array(view.buffer, view.byteOffset, view.length >> 2);
    // ORDERING: seq-cst load; a provider may start its ring's indices anywhere (not only 0).
    this.cons = Atomics.load(this.words, CqWord.CONS) >>> 0;
  }
}

/** A queue pair (`ibv_qp`, RC). */
export class Qp {
  /** State as last set by `modifyQp` (the device may since have moved it to ERR). */
  state: QpState = QpState.RESET;
  destroyed = false;

  constructor(
    readonly context: Context,
    readonly pd: Pd,
    readonly handle: number,
    /** The number peers address (`destQpNum`). */
    readonly qpNum: number,
    readonly sendCq: Cq,
    readonly recvCq: Cq,
    /** Capabilities the provider granted. */
    readonly cap: QpCap,
    readonly qpType: QpType,
    readonly sqSigAll: boolean,
  ) {}
}
