/**
 * A connection's queue of responder output: ACKs, NAKs and RDMA READ responses waiting for room
 * in the transmit slab, in the order the requests arrived (RC responses are in order per QP, and
 * a READ response may be 8 MiB long, so everything behind it waits). Struct-of-arrays in typed
 * arrays, so queueing a response allocates nothing; it doubles when full (amortised), and the
 * connection pauses reading from its socket while it is long (`length > RESP_HIGH_WATER`).
 */

/** What a queued response is. */
export const enum RespKind {
  ACK = 1,
  NAK = 2,
  /** READ response data, streamed in frames from `addr`. */
  READ = 3,
}

/** Above this many queued responses the requests' socket is paused. */
export const RESP_HIGH_WATER = 256;
/** Below this many it is resumed. */
export const RESP_LOW_WATER = 64;

/** One queued response as its fields (a reusable view of the head entry). */
export interface RespJob {
  kind: RespKind;
  /** Our QP (the responder). */
  srcQpn: number;
  /** The requester's QP. */
  dstQpn: number;
  psn: number;
  epoch: number;
  status: number;
  aux8: number;
  /** READ: guest address of the data, length, bytes already sent. */
  addr: number;
  len: number;
  sent: number;
  /** READ: the responder QP's incarnation and the MR (index, key) checked when queued. */
  qpGen: number;
  mrKey: number;
}

/** See the file comment. */
export class RespQueue {
  private _cap: number;
  private _head = 0;
  private _count = 0;
  private _u32: Uint32Array[];
  private _f64: Float64Array[];

  constructor(initial = 64) {
    this._cap = initial;
    this._u32 = [];
    this._f64 = [];
    this._alloc(initial);
  }

  /** Queued responses. */
  get length(): number {
    return this._count;
  }

  /** Appends a response. */
  push(j: RespJob): void {
    if (this._count === this._cap) this._grow();
    const i = (this._head + this._count) % this._cap;
    const u = this._u32;
    u[0][i] = j.kind;
    u[1][i] = j.srcQpn;
    u[2][i] = j.dstQpn;
    u[3][i] = j.psn;
    u[4][i] = j.epoch;
    u[5][i] = j.status;
    u[6][i] = j.aux8;
    u[7][i] = j.len;
    u[8][i] = j.qpGen;
    u[9][i] = j.mrKey;
    this._f64[0][i] = j.addr;
    this._f64[1][i] = j.sent;
    this._count++;
  }

  /** Reads the head entry into `out`; false when empty. */
  peek(out: RespJob): boolean {
    if (this._count === 0) return false;
    const i = this._head;
    const u = this._u32;
    out.kind = u[0][i];
    out.srcQpn = u[1][i];
    out.dstQpn = u[2][i];
    out.psn = u[3][i];
    out.epoch = u[4][i];
    out.status = u[5][i];
    out.aux8 = u[6][i];
    out.len = u[7][i];
    out.qpGen = u[8][i];
    out.mrKey = u[9][i];
    out.addr = this._f64[0][i];
    out.sent = this._f64[1][i];
    return true;
  }

  /** Records progress of the head READ response. */
  setHeadSent(sent: number): void {
    this._f64[1][this._head] = sent;
  }

  /** Drops the head entry. */
  shift(): void {
    if (this._count === 0) return;
    this._head = (this._head + 1) % this._cap;
    this._count--;
  }

  /** Drops everything (the connection closed). */
  clear(): void {
    this._head = 0;
    this._count = 0;
  }

  private _alloc(cap: number): void {
    this._u32 = [];
    for (let f = 0; f < 10; f++) this._u32.push(new Uint32Array(cap));
    this._f64 = [new Float64Array(cap), new Float64Array(cap)];
  }

  private _grow(): void {
    const oldU = this._u32;
    const oldF = this._f64;
    const oldCap = this._cap;
    this._cap = oldCap * 2;
    this._alloc(this._cap);
    for (let k = 0; k < this._count; k++) {
      const from = (this._head + k) % oldCap;
      for (let f = 0; f < oldU.length; f++) this._u32[f][k] = oldU[f][from];
      for (let f = 0; f < oldF.length; f++) this._f64[f][k] = oldF[f][from];
    }
    this._head = 0;
  }
}

/** A fresh job record to fill or peek into. */
export function emptyJob(): RespJob {
  return {
    kind: RespKind.ACK,
    srcQpn: 0,
    dstQpn: 0,
    psn: 0,
    epoch: 0,
    status: 0,
    aux8: 0,
    addr: 0,
    len: 0,
    sent: 0,
    qpGen: 0,
    mrKey: 0,
  };
}
