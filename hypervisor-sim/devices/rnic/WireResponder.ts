/**
 * The responder half of a wire request that came from a NIC of another host process (issue 6),
 * run in THIS host process's main thread: it attaches every NIC of the host over the host's fabric
 * lock (as a domain thread or the device thread does, DomainDevices.ts / DeviceWorker.ts), with an
 * IOMMU view over a directory of the host's domain memories kept in step with the host's domains,
 * and answers each `WireReqMsg` with the code the local path runs (Responder.ts), through a
 * `RequesterSide` built from the packet instead of the requester NIC's RnicCtx.
 *
 * The packet is hostile (it crossed a TCP link from another process) and is checked before any
 * state is touched, first failure wins:
 *  - a field that is not a u32 (NaN, negative, fractional), op ∉ WrOpcode, length >
 *    MAX_MESSAGE_BULK, a WRITE/SEND payload whose size is not `length`, a READ with a payload
 *    → REM_INV_REQ_ERR (an invalid request NAK; no QP changes);
 *  - dst_port not a NIC of this host, or dst_qpn not a QP connected back to (src_port, src_qpn)
 *    in RTR/RTS/SQD → RETRY_EXC_ERR (the packet is dropped; the requester's retries run out);
 *  - remote_addr that is not a safe integer ≥ 0 is the address -1, exactly as a WQE decodes one
 *    (Wqe.safeAddr): the R_Key check fails it with REM_ACCESS_ERR, as on the local path.
 * Then the semantics are the local path's. `handle` never waits: a SEND or WRITE_WITH_IMM with
 * no receive posted is answered `rnr` with the responder QP's min_rnr_timer (µs), and the
 * requester host backs off and retries (RemoteWire.ts). `handleWaiting` — what a host serves its
 * links with — waits that timer asynchronously on the RQ doorbell first, as the local awaitRecv
 * does, so a receive posted meanwhile is taken without another round trip.
 *
 * Requester-side counters (bytes, faults) belong to the requester's NIC on the other host,
 * which counts them there; the responder's own counters and CQEs are this host's.
 */

import { MAX_MESSAGE_BULK } from '../../../protocol/link/LinkFrame.js';
import type { WireReqMsg, WireRspMsg } from '../../../protocol/link/LinkSchema.js';
import { rqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { SendFlags, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { emptySendWqe, MAX_RECV_SGE, type SendWqe } from '../../../protocol/rdma/Wqe.js';
import { waitAsync } from '../../../protocol/wait.js';
import type { Host } from '../../domain/Host.js';
import { emptyDmaRef } from '../../iommu/DmaResolver.js';
import { IommuContext } from '../../iommu/IommuContext.js';
import { MemoryDirectory } from '../../memory/MemoryDirectory.js';
import { LocalFabric } from '../../pcie/LocalFabric.js';
import type { Segments } from './DataMover.js';
import { type MetricSlot, QpCtx } from './DevLayout.js';
import { BufferDma, bufferSegments, setLength } from './RemoteWire.js';
import {
  connectedPeer,
  type RequesterSide,
  RNR,
  recvReady,
  respondRead,
  respondSend,
  respondWrite,
  rnrTimerUs,
} from './Responder.js';
import { RnicDevice } from './RnicDevice.js';
import { RnicFabric } from './RnicFabric.js';

/** What `handle` returns: the response body, and the READ data. */
export interface WireAnswer {
  rsp: WireRspMsg;
  data?: Uint8Array;
}

/** The requester as a wire packet describes it (see `RequesterSide`); reused for every packet. */
class PacketRequester implements RequesterSide {
  total = 0;
  /** The payload (WRITE/SEND) or the READ data buffer, as one segment. */
  readonly buf = new BufferDma(new Uint8Array(0), false);
  readonly loc: Segments = bufferSegments(this.buf, 0);
  /** Scratch for the responder's segments (Responder sets `rem.dma` to the responder's resolver). */
  readonly rem: Segments = {
    dma: this.buf,
    iova: new Array(MAX_RECV_SGE).fill(0),
    len: new Array(MAX_RECV_SGE).fill(0),
    count: 0,
    ref: emptyDmaRef(),
  };
  /** Never read: the packet's payload is in `loc` and INLINE is cleared. */
  readonly wqeBytes = new Uint8Array(0);
  readonly sizes = { portId: 0 };

  /** The requester's counters live on its own host (RemoteWire counts there): nothing here. */
  count(_slot: MetricSlot, _n?: number): void {}
}

const EMPTY = new Uint8Array(0);

function u32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

function answer(status: number): WireAnswer {
  return { rsp: { status, rnr: false, rnrTimerUs: 0 } };
}

/** The wire responder of one host (see the file comment). */
export class WireResponder {
  private readonly _host: Host;
  private readonly _fabric: RnicFabric;
  private readonly _directory = new MemoryDirectory();
  private readonly _wqe: SendWqe = emptySendWqe();
  private readonly _req = new PacketRequester();

  constructor(host: Host) {
    this._host = host;
    const devices = host.devices;
    this._fabric = new RnicFabric(devices.fabricLock, devices.wire);
    // Local DMA pays the host's PCIe profile, as the NIC's DMA does in any other thread.
    const local = new LocalFabric(devices.fabric);
    for (const n of devices.allNics()) {
      // The IOMMU view resolves into this thread's directory of the host's domain memories; the
      // device adds itself to this thread's fabric (get(port) below finds it).
      const iommu = IommuContext.attach(n.iommu, this._directory);
      new RnicDevice(n.state, local.wrapResolver(iommu), this._fabric);
    }
  }

  /**
   * Answers one wire request (synchronous; takes the host's fabric lock; never waits, never
   * throws on any packet).
   */
  handle(req: WireReqMsg, payload: Uint8Array | undefined): WireAnswer {
    const r = this._req;
    const bad = this._check(req, payload);
    if (bad !== WcStatus.SUCCESS) return answer(bad);
    const nic = this._fabric.get(req.dstPort);
    if (nic === undefined) return answer(WcStatus.RETRY_EXC_ERR);
    this._syncMemories();
    const op = req.op;
    const len = req.length;
    const read = op === WrOpcode.RDMA_READ;
    // READ data leaves with the answer (a socket may still hold it later): a fresh buffer, whole
    // words so the DMA engine's last-word notify stays inside it.
    const out = read && len > 0 ? new Uint8Array(new ArrayBuffer((len + 3) & ~3), 0, len) : undefined;
    r.total = len;
    r.sizes.portId = req.srcPort;
    r.buf.set(out ?? payload ?? EMPTY, read);
    setLength(r.loc, len);
    const w = this._wqe;
    w.opcode = op;
    // INVARIANT: INLINE cleared, so Responder copies the payload from `loc`, never `wqeBytes`.
    w.sendFlags = req.sendFlags & ~SendFlags.INLINE;
    w.rkey = req.rkey;
    w.remoteAddr = Number.isSafeInteger(req.remoteAddr) && req.remoteAddr >= 0 ? req.remoteAddr : -1;
    w.immData = req.imm;
    const p = nic.ctx;
    const fabric = this._fabric;
    fabric.lock();
    try {
      const pq = connectedPeer(r, req.srcQpn, p, req.dstQpn);
      if (pq < 0) return answer(WcStatus.RETRY_EXC_ERR);
      if (op === WrOpcode.RDMA_WRITE) return answer(respondWrite(r, req.srcQpn, p, req.dstQpn, pq, w));
      if (read) {
        const st = respondRead(r, p, req.dstQpn, pq, w);
        return st === WcStatus.SUCCESS ? { rsp: answer(st).rsp, data: out ?? new Uint8Array(0) } : answer(st);
      }
      const ready = recvReady(p, req.dstQpn, pq);
      if (ready === RNR) return { rsp: { status: WcStatus.SUCCESS, rnr: true, rnrTimerUs: rnrTimerUs(p, pq) } };
      if (ready !== WcStatus.SUCCESS) return answer(ready);
      return answer(
        op === WrOpcode.RDMA_WRITE_WITH_IMM
          ? respondWrite(r, req.srcQpn, p, req.dstQpn, pq, w)
          : respondSend(r, req.srcQpn, p, req.dstQpn, pq, w),
      );
    } finally {
      fabric.unlock();
      // The payload view belongs to the caller (a mailbox or a socket buffer): do not keep it.
      r.buf.set(EMPTY, false);
    }
  }

  /**
   * As `handle`, but a SEND or WRITE_WITH_IMM that finds no receive posted waits — without
   * blocking this thread — up to the responder QP's RNR timer on its RQ doorbell, as the local
   * requester's awaitRecv does, and is answered at once when a receive arrives. Only a timer that
   * ran out is answered `rnr`, with `rnrTimerUs` 0: the time was already waited here, so the
   * requester retries at once (each retry still costs the timer; rnr_retry bounds them).
   */
  async handleWaiting(req: WireReqMsg, payload: Uint8Array | undefined): Promise<WireAnswer> {
    const first = this.handle(req, payload);
    if (!first.rsp.rnr) return first;
    const nic = this._fabric.get(req.dstPort);
    // INVARIANT: an rnr answer means handle found the NIC and a connected QP (dstQpn in range).
    const p = (nic as RnicDevice).ctx;
    const pd = p.dev;
    const pq = p.layout.qpBase(req.dstQpn);
    const index = rqDoorbell(req.dstQpn) >> 2;
    const deadline = performance.now() + first.rsp.rnrTimerUs / 1000;
    this._fabric.lock();
    const epoch = pd[pq + QpCtx.EPOCH];
    // ORDERING: seq-cst add before the producer is read; an RQ doorbell stores the producer,
    // then notifies when RNR_WAITERS is non-zero (the Dekker pair awaitRecv relies on).
    Atomics.add(pd, pq + QpCtx.RNR_WAITERS, 1);
    this._fabric.unlock();
    try {
      for (;;) {
        // ORDERING: seq-cst load of the producer; the wait below re-checks it atomically.
        const prod = Atomics.load(p.bar, index);
        const r = this.handle(req, payload);
        const left = deadline - performance.now();
        if (!r.rsp.rnr) return r;
        if (left <= 0) return { rsp: { status: r.rsp.status, rnr: true, rnrTimerUs: 0 } };
        const w = waitAsync(p.bar, index, prod, left);
        if (w.async) await w.value;
      }
    } finally {
      this._fabric.lock();
      // A destroyed (and maybe recreated) QP reset its waiter count: leave it alone.
      if (pd[pq + QpCtx.EPOCH] === epoch) Atomics.sub(pd, pq + QpCtx.RNR_WAITERS, 1);
      this._fabric.unlock();
    }
  }

  /** The packet's shape (see the file comment): SUCCESS or REM_INV_REQ_ERR. */
  private _check(req: WireReqMsg, payload: Uint8Array | undefined): number {
    if (req === null || typeof req !== 'object') return WcStatus.REM_INV_REQ_ERR;
    const { op, srcPort, srcQpn, dstPort, dstQpn, rkey, imm, length, sendFlags } = req;
    for (const v of [op, srcPort, srcQpn, dstPort, dstQpn, rkey, imm, length, sendFlags]) {
      if (!u32(v)) return WcStatus.REM_INV_REQ_ERR;
    }
    if (typeof req.remoteAddr !== 'number') return WcStatus.REM_INV_REQ_ERR;
    if (op > WrOpcode.RDMA_READ || length > MAX_MESSAGE_BULK) return WcStatus.REM_INV_REQ_ERR;
    if (payload !== undefined && !(payload instanceof Uint8Array)) return WcStatus.REM_INV_REQ_ERR;
    const got = payload?.length ?? 0;
    if (op === WrOpcode.RDMA_READ ? got !== 0 : got !== length) return WcStatus.REM_INV_REQ_ERR;
    return WcStatus.SUCCESS;
  }

  /**
   * Keeps the IOMMU views' directory equal to the host's live domains (a reused id comes with a
   * new buffer). The host's teardown revoked a dead domain's extents already; this only drops
   * the memory view.
   */
  private _syncMemories(): void {
    const dir = this._directory;
    const live = this._host.domains();
    for (const d of live) {
      if (dir.get(d.domid)?.buffer === d.memory.buffer) continue;
      dir.remove(d.domid);
      dir.add(d.domid, d.memory.buffer);
    }
    const known = dir.domains();
    if (known.length === live.length) return;
    for (const id of known) if (!live.some((d) => d.domid === id)) dir.remove(id);
  }
}
