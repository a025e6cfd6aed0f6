/**
 * The software RDMA NIC that runs in the provider's helper thread (siw's kernel thread, in
 * effect): it owns the QP/MR/CQ tables, serves the command mailbox, sleeps on the bell word
 * (`Atomics.waitAsync`, so sockets keep being served), moves data between guest memory and
 * loopback TCP connections, and writes completions into the guest's CQ rings.
 *
 * Connections: one TCP connection per pair of helpers, multiplexing every QP between them (a QP
 * pair never needs a connection of its own, and a QP reaching RTR toward a helper it already
 * talks to costs nothing). A helper sends everything for peer port P on the connection registered
 * for P: the one it opened, or the one P opened to it if that came first. If both opened one at
 * the same time, each side sends on its own and receives on the other's — still one ordered
 * stream per direction, which is all RC needs.
 *
 * Progress is event-driven: the bell (guest posted work or a command), a socket chunk, room freed
 * in a transmit slab, or a retransmission timer each run `onProgress`, which streams frames until
 * there is no work or no room, then hands the slabs to the sockets.
 */

import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { emptyWc, QpState, type Wc, WcStatus } from '../../../protocol/rdma/Verbs.js';
import { Bell } from './Bell.js';
import { executeCommand, Mailbox } from './Commands.js';
import { completeSendHead, flushRecv, toError } from './Completer.js';
import { Connection, type FrameHandler } from './Connection.js';
import { CtrlWord, STAT_COUNT, TcpStat } from './Layout.js';
import { emitRequest, fetchSend, onResponseEnd, onResponseHeader } from './Requester.js';
import type { SoftCq } from './Resources.js';
import { Resources } from './Resources.js';
import { onRequestEnd, onRequestHeader } from './Responder.js';
import { emitResponses, queueResponse } from './ResponseOut.js';
import { RESP_LOW_WATER } from './RespQueue.js';
import { Sink, type SoftQp } from './SoftQp.js';
import {
  clearHeader,
  emptyHeader,
  encodeHeader,
  FrameFlag,
  type FrameHeader,
  HEADER_SIZE,
  WIRE_VERSION,
  WireOp,
} from './Wire.js';

/** Options of a software NIC. */
export interface SoftNicOptions {
  /** Transmit slab per connection (bytes). */
  readonly slabBytes?: number;
  /** Where errors about peers and guests go. */
  readonly log: (line: string) => void;
}

/** See the file comment. */
export class SoftNic implements FrameHandler {
  /** Guest memory as a Buffer (payload copies) and as the shared buffer (views). */
  readonly memory: Buffer;
  /** Guest memory as Int32 words (see FrameHandler.memoryWords). */
  readonly memoryWords: Int32Array;
  readonly memoryBuffer: SharedArrayBuffer;
  /** The control block (Layout.ts). */
  readonly ctrl: Int32Array;
  readonly res: Resources;
  readonly log: (line: string) => void;
  /** Scratch completion, header and empty sink, reused (no allocation per request). */
  readonly wc: Wc = emptyWc();
  readonly txHdr: FrameHeader = emptyHeader();
  readonly emptySink = new Sink();
  /** Listening port: this NIC's port id ("LID"). */
  port = 0;
  private readonly _qps: (SoftQp | undefined)[] = [];
  /** Live QPs, for scans. */
  readonly qpList: SoftQp[] = [];
  /** The sending connection per peer port. */
  private readonly _conns = new Map<number, Connection>();
  private readonly _connList: Connection[] = [];
  private readonly _stats = new Float64Array(STAT_COUNT);
  private readonly _slabBytes: number;
  private _server: Server | undefined;
  private _pumping = false;
  private _again = false;
  private _closing = false;
  private readonly _bell: Bell;
  /** The command mailbox's state (Commands.ts). */
  readonly mailbox: Mailbox;

  constructor(memory: SharedArrayBuffer, ctrl: SharedArrayBuffer, opts: SoftNicOptions) {
    this.memoryBuffer = memory;
    this.memory = Buffer.from(memory);
    this.memoryWords = new Int32Array(memory, 0, memory.byteLength >> 2);
    this.ctrl = new Int32Array(ctrl);
    this.res = new Resources(memory);
    this.log = opts.log;
    this._slabBytes = opts.slabBytes ?? 2 * 1024 * 1024;
    this.mailbox = new Mailbox(this.ctrl);
    this._bell = new Bell(this.ctrl, () => this._serveBell());
  }

  /** Listens on 127.0.0.1 (ephemeral port) and starts serving the bell; resolves to the port. */
  async start(): Promise<number> {
    const server = createServer((sock) => this._accept(sock));
    this._server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    server.on('error', (err) => this.log(`tcp helper: listener error: ${err.message}`));
    const addr = server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    this._bell.start();
    return this.port;
  }

  /** Closes the listener and every connection; the thread can then exit. */
  close(): void {
    this._closing = true;
    this._bell.stop();
    for (const qp of this.qpList) qp.cancelTimer();
    this._server?.close();
    for (const c of this._connList.slice()) c.socket.destroy();
  }

  /** QP `qpn` if it exists. */
  qpFor(qpn: number): SoftQp | undefined {
    return qpn > 0 && qpn < this._qps.length ? this._qps[qpn] : undefined;
  }

  /** Adds a created QP to the tables. */
  addQp(qp: SoftQp): void {
    this._qps[qp.qpn] = qp;
    this.qpList.push(qp);
  }

  /** Removes a destroyed QP. */
  removeQp(qp: SoftQp): void {
    qp.cancelTimer();
    this._qps[qp.qpn] = undefined;
    const i = this.qpList.indexOf(qp);
    if (i >= 0) this.qpList.splice(i, 1);
  }

  /** Counts one event. */
  count(stat: TcpStat): void {
    this._stats[stat]++;
  }

  /** The sending connection to `port`, opened (asynchronously) if there is none. */
  connFor(port: number): Connection {
    const have = this._conns.get(port);
    if (have && !have.closed) return have;
    const sock = netConnect({ port, host: '127.0.0.1' });
    const conn = new Connection(this, sock, true, port, this._slabBytes);
    this._conns.set(port, conn);
    this._connList.push(conn);
    this.count(TcpStat.CONNS_OPENED);
    this._hello(conn);
    conn.flush();
    return conn;
  }

  /** Reserves a frame with `h` (h.length payload bytes follow); returns the payload offset or -1. */
  writeFrame(conn: Connection, h: FrameHeader): number {
    const at = conn.tx.reserve(HEADER_SIZE + h.length);
    if (at < 0) return -1;
    encodeHeader(conn.tx.buf, at, h);
    this._stats[TcpStat.FRAMES_TX]++;
    return at + HEADER_SIZE;
  }

  /** Queues an ACK of request `h`. */
  sendAck(conn: Connection, h: FrameHeader): void {
    queueResponse(this, conn, WireOp.ACK, h, 0, 0, undefined);
  }

  /** Queues a NAK of request `h` with a WcStatus or NakCode (aux8: RNR timer). */
  sendNak(conn: Connection, h: FrameHeader, status: number, aux8: number): void {
    queueResponse(this, conn, WireOp.NAK, h, status, aux8, undefined);
  }

  /** Queues the response of an accepted RDMA READ `h` by `qp`. */
  sendRead(conn: Connection, qp: SoftQp, h: FrameHeader): void {
    queueResponse(this, conn, WireOp.READ_RESP, h, 0, 0, qp);
  }

  /** The connection responses to `conn`'s peer go on. */
  responseConn(conn: Connection): Connection {
    const c = this._conns.get(conn.peerPort);
    return c && !c.closed ? c : conn;
  }

  /** A CQ overflowed: every QP feeding it goes to ERR (a CQ overrun is fatal on an HCA). */
  cqOverflow(cq: SoftCq): void {
    for (const qp of this.qpList) {
      if ((qp.sendCq === cq || qp.recvCq === cq) && qp.state !== QpState.ERR) {
        this.log(`CQ ${cq.cqn} overflowed; QP ${qp.qpn} to ERR`);
        toError(this, qp);
      }
    }
  }

  /** Publishes a command's result (status 0 or a catalogue status) and wakes the guest. */
  finishCommand(status: number, message: string): void {
    this.mailbox.finish(status, message);
  }

  // FrameHandler --------------------------------------------------------------------------

  /** See FrameHandler. */
  onHeader(conn: Connection, h: FrameHeader): Sink | null {
    this._stats[TcpStat.FRAMES_RX]++;
    if (h.opcode >= WireOp.READ_RESP) return onResponseHeader(this, conn, h);
    return onRequestHeader(this, conn, h);
  }

  /** See FrameHandler. */
  onFrameEnd(conn: Connection, h: FrameHeader, accepted: boolean): void {
    if (h.opcode >= WireOp.READ_RESP) {
      if (accepted) onResponseEnd(this, h);
    } else onRequestEnd(this, conn, h, accepted);
  }

  /** See FrameHandler. */
  onHello(conn: Connection): void {
    const have = this._conns.get(conn.peerPort);
    if (!have || have.closed) this._conns.set(conn.peerPort, conn);
  }

  /** See FrameHandler. */
  onBadFrame(conn: Connection, reason: string): void {
    this.count(TcpStat.BAD_FRAMES);
    this.log(`tcp helper ${this.port}: bad frame from port ${conn.peerPort || '?'}: ${reason}; connection closed`);
  }

  /** See FrameHandler. */
  onClose(conn: Connection): void {
    this.count(TcpStat.CONNS_CLOSED);
    const i = this._connList.indexOf(conn);
    if (i >= 0) this._connList.splice(i, 1);
    const peer = conn.peerPort;
    const wasSender = this._conns.get(peer) === conn;
    if (wasSender) this._conns.delete(peer);
    if (!this._closing && peer !== 0) {
      for (const qp of this.qpList) {
        if (qp.destPort !== peer) continue;
        qp.inActive = false; // a message arriving on it is lost with it
        // Frames in flight on it are gone: like a link that went down, the requester gives up.
        if (wasSender && qp.state === QpState.RTS && qp.outstanding()) {
          completeSendHead(this, qp, WcStatus.RETRY_EXC_ERR);
        }
      }
    }
    this.onProgress();
  }

  /** See FrameHandler: make progress on everything. Re-entrant calls fold into the running one. */
  onProgress(): void {
    if (this._closing) return;
    if (this._pumping) {
      this._again = true;
      return;
    }
    this._pumping = true;
    try {
      do {
        this._again = false;
        this._pumpOnce();
      } while (this._again);
    } catch (err) {
      // A bug must not kill the NIC thread silently: report it and keep serving.
      this.log(`tcp helper ${this.port}: ${(err as Error).stack ?? String(err)}`);
    } finally {
      this._pumping = false;
    }
    // ORDERING: counters are informational; seq-cst stores keep them tear-free for readers.
    for (let i = 0; i < STAT_COUNT; i++) Atomics.store(this.ctrl, CtrlWord.STATS + i, this._stats[i] | 0);
  }

  private _pumpOnce(): void {
    const conns = this._connList;
    let progress = true;
    while (progress) {
      progress = false;
      for (let i = 0; i < conns.length; i++) {
        if (conns[i].resp.length !== 0 && emitResponses(this, conns[i])) progress = true;
      }
      const qps = this.qpList;
      for (let i = 0; i < qps.length; i++) {
        const qp = qps[i];
        if (qp.canSend() && emitRequest(this, qp, this.connFor(qp.destPort))) progress = true;
      }
    }
    for (let i = 0; i < conns.length; i++) {
      const c = conns[i];
      c.flush();
      if (c.paused && this.responseConn(c).resp.length < RESP_LOW_WATER) {
        c.paused = false;
        c.socket.resume();
      }
    }
  }

  private _accept(sock: Socket): void {
    if (this._closing) {
      sock.destroy();
      return;
    }
    const conn = new Connection(this, sock, false, 0, this._slabBytes);
    this._connList.push(conn);
    this.count(TcpStat.CONNS_OPENED);
    this._hello(conn);
    conn.flush();
  }

  private _hello(conn: Connection): void {
    const h = clearHeader(this.txHdr);
    h.opcode = WireOp.HELLO;
    h.flags = FrameFlag.BOTH;
    h.aux8 = WIRE_VERSION;
    h.aux32 = this.port;
    this.writeFrame(conn, h);
  }

  private _serveBell(): void {
    try {
      if (this.mailbox.take()) executeCommand(this, this.mailbox.op);
      for (let i = 0; i < this.qpList.length; i++) this._fetch(this.qpList[i]);
      this.onProgress();
    } catch (err) {
      // A bug must not kill the NIC thread silently: report it and keep serving.
      this.log(`tcp helper ${this.port}: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private _fetch(qp: SoftQp): void {
    fetchSend(this, qp);
    if (qp.state === QpState.ERR) flushRecv(this, qp); // receives posted in ERR flush at once
  }
}
