/**
 * pvio's PCIe RDMA NIC (DESIGN §1 "device"): RC queue pairs, RDMA WRITE / WRITE_WITH_IMM / READ,
 * SEND / RECV, CQs and memory regions with lkey/rkey and access flags, driven through BAR 0
 * (protocol/rdma/NicRegs.ts) and queues in memory reached through the device's IOMMU context.
 *
 * The whole device state lives in two SharedArrayBuffers (`RnicState`, structured-cloneable):
 * `bar` (the registers) and `dev` (the device-internal tables, DevLayout.ts). Any thread can
 * attach a `RnicDevice` to them and run the device: the thread that rings a doorbell
 * (`mmio('inline')`, like QEMU device emulation on an MMIO exit) or a dedicated device thread
 * (`mmio('dedicated')` + `runRnicEngine`, hardware parallelism). Both modes give the same
 * results; they differ only in which thread pays for the work.
 *
 * Files: DevLayout (device memory), RnicFabric (host lock, port directory, wire model),
 * RnicMmio (BAR 0), Commands/QpCommands/CmdArgs (mailbox), QpRunner (who runs a QP), SendPath
 * (requester), Responder (responder), DataMover (payload), MrCheck (keys), Completion (CQEs,
 * ERR and flush), QueueViews (cached DMA views), RnicEngine (device thread), RnicMetrics.
 */

import { pvError } from '../../../protocol/errors.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import { NIC_VERSION, NicReg, nicBarSize, sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import type { DmaResolver } from '../../iommu/DmaResolver.js';
import { DevLayout, DevWord, QpCtx } from './DevLayout.js';
import { runQp } from './QpRunner.js';
import { RnicCtx } from './RnicContext.js';
import type { RnicFabric } from './RnicFabric.js';
import { type RnicMetrics, SharedRnicMetrics } from './RnicMetrics.js';
import { RnicMmio } from './RnicMmio.js';

/** What a NIC is built from. Limits default to a mid-size HCA. */
export interface RnicConfig {
  /** Name in the host's device list (`nic0`). */
  name: string;
  /** Port id ("LID") peers put in `AhAttr.dlid`; unique per host. */
  portId: number;
  /** QP numbers are 1 … maxQp − 1 (also the PD limit). Default 256. */
  maxQp?: number;
  /** CQ numbers are 1 … maxCq − 1. Default 256. */
  maxCq?: number;
  /** MR indices are 1 … maxMr − 1 (≤ 2^23: the index is the key's upper 24 bits). Default 4096. */
  maxMr?: number;
  /** Largest send or receive queue. Default 8192. */
  maxQpWr?: number;
  /** Largest CQ. Default 65536. */
  maxCqe?: number;
}

/** A NIC's shared state: post it to any thread and attach with `new RnicDevice`. */
export interface RnicState {
  readonly config: Required<RnicConfig>;
  readonly bar: SharedArrayBuffer;
  readonly dev: SharedArrayBuffer;
}

const LIMITS: ReadonlyArray<readonly [keyof RnicConfig, number, number, number]> = [
  ['maxQp', 256, 2, 1 << 16],
  ['maxCq', 256, 2, 1 << 16],
  ['maxMr', 4096, 2, 1 << 23],
  ['maxQpWr', 8192, 1, 1 << 20],
  ['maxCqe', 65536, 1, 1 << 22],
];

/** Work a dedicated engine does on one QP before it looks at the others. */
const POLL_BUDGET = 64;

/** One RDMA NIC attached in one thread (see the file comment). */
export class RnicDevice {
  readonly name: string;
  readonly portId: number;
  readonly state: RnicState;
  /** The word a dedicated device thread sleeps on (bumped by dedicated-mode doorbells). */
  readonly doorbellWord: { readonly words: Int32Array; readonly index: number };
  readonly metrics: RnicMetrics;
  private readonly _ctx: RnicCtx;
  private _inline: RnicMmio | undefined;
  private _dedicated: RnicMmio | undefined;

  /** Allocates a NIC's state (PV_ERR_CONFIG on a bad name, port id or limit). */
  static create(cfg: RnicConfig): RnicState {
    if (typeof cfg.name !== 'string' || cfg.name.length === 0) throw pvError('PV_ERR_CONFIG', 'NIC name is required');
    if (!Number.isInteger(cfg.portId) || cfg.portId < 0 || cfg.portId > 0x7fff_ffff) {
      throw pvError('PV_ERR_CONFIG', `${cfg.name}: portId must be an integer in [0, 2^31), got ${cfg.portId}`);
    }
    const config = { name: cfg.name, portId: cfg.portId } as Record<string, number | string>;
    for (const [key, def, min, max] of LIMITS) {
      const v = (cfg[key] as number | undefined) ?? def;
      if (!Number.isInteger(v) || v < min || v > max) {
        throw pvError('PV_ERR_CONFIG', `${cfg.name}: ${key} must be an integer in [${min}, ${max}], got ${v}`);
      }
      config[key] = v;
    }
    const full = config as unknown as Required<RnicConfig>;
    const bar = new SharedArrayBuffer(nicBarSize(full.maxQp));
    const dev = new SharedArrayBuffer(new DevLayout(full).bytes);
    const regs = new Int32Array(bar);
    regs[NicReg.PORT_ID >> 2] = full.portId;
    regs[NicReg.MAX_QP >> 2] = full.maxQp;
    regs[NicReg.MAX_CQ >> 2] = full.maxCq;
    regs[NicReg.MAX_MR >> 2] = full.maxMr;
    regs[NicReg.MAX_QP_WR >> 2] = full.maxQpWr;
    regs[NicReg.MAX_CQE >> 2] = full.maxCqe;
    regs[NicReg.STATUS >> 2] = 0;
    // ORDERING: seq-cst store last; an attach that sees VERSION sees the other registers.
    Atomics.store(regs, NicReg.VERSION >> 2, NIC_VERSION);
    return { config: full, bar, dev };
  }

  /**
   * Attaches to a NIC's state in this thread, with this thread's view of the NIC's IOMMU context
   * and of the host fabric (the device adds itself to it). PV_ERR_CONFIG if the buffers do not
   * match the configuration.
   */
  constructor(state: RnicState, dma: DmaResolver, fabric: RnicFabric) {
    const cfg = state.config;
    const layout = new DevLayout(cfg);
    if (state.bar.byteLength !== nicBarSize(cfg.maxQp) || state.dev.byteLength !== layout.bytes) {
      throw pvError('PV_ERR_CONFIG', `${cfg.name}: state buffers do not match its configuration`);
    }
    // ORDERING: seq-cst load pairs with create()'s store of VERSION.
    if (Atomics.load(new Int32Array(state.bar), NicReg.VERSION >> 2) !== NIC_VERSION) {
      throw pvError('PV_ERR_CONFIG', `${cfg.name}: BAR does not hold an initialised NIC`);
    }
    this.name = cfg.name;
    this.portId = cfg.portId;
    this.state = state;
    this._ctx = new RnicCtx(cfg, state.bar, state.dev, dma, fabric);
    this.doorbellWord = { words: this._ctx.dev, index: DevWord.DB_SEQ };
    this.metrics = new SharedRnicMetrics(state.dev);
    fabric.add(this);
  }

  /**
   * The engine's per-thread context (internal to the device model: the responder half of a WR
   * runs on the peer NIC's context).
   */
  get ctx(): RnicCtx {
    return this._ctx;
  }

  /**
   * Send WQEs rung and not yet executed, over every QP (the SQ doorbell's producer index minus
   * the engine's SQ_CONS): what a monitor shows as the queue depth. A plain snapshot.
   */
  queueDepth(): number {
    const c = this._ctx;
    let n = 0;
    for (let qpn = 1; qpn < c.sizes.maxQp; qpn++) {
      const q = c.layout.qpBase(qpn);
      // ORDERING: seq-cst loads; the figure is a snapshot, not a decision.
      if (Atomics.load(c.dev, q + QpCtx.VALID) !== 1) continue;
      const prod = Atomics.load(c.bar, sqDoorbell(qpn) >> 2) >>> 0;
      const depth = (prod - (Atomics.load(c.dev, q + QpCtx.SQ_CONS) >>> 0)) >>> 0;
      // A QP reset since its last doorbell has a stale producer index: not work.
      if (depth <= Atomics.load(c.dev, q + QpCtx.SQ_ENTRIES)) n += depth;
    }
    return n;
  }

  /** BAR 0. `inline`: doorbells run the work in the writer's thread; `dedicated`: a device thread does. */
  mmio(mode: 'inline' | 'dedicated'): MmioRegion {
    if (mode === 'inline') {
      this._inline ??= new RnicMmio(this._ctx, false);
      return this._inline;
    }
    if (mode !== 'dedicated') throw pvError('PV_ERR_INVALID_ARG', `unknown engine mode ${String(mode)}`);
    this._dedicated ??= new RnicMmio(this._ctx, true);
    return this._dedicated;
  }

  /**
   * Dedicated mode: runs every QP a doorbell marked pending (≤ 64 WRs each per call, for
   * fairness); returns the work done (WRs executed + flushed). Never throws.
   */
  poll(): number {
    const ctx = this._ctx;
    const d = ctx.dev;
    const first = ctx.layout.pending;
    let work = 0;
    for (let w = 0; w < ctx.layout.pendingWords; w++) {
      // ORDERING: seq-cst load of the bits doorbells set with Atomics.or.
      let bits = Atomics.load(d, first + w);
      while (bits !== 0) {
        const low = bits & -bits;
        bits ^= low;
        const qpn = w * 32 + (31 - Math.clz32(low));
        ctx.fabric.lock();
        try {
          work += runQp(ctx, qpn, POLL_BUDGET);
        } finally {
          ctx.fabric.unlock();
        }
      }
    }
    return work;
  }
}
