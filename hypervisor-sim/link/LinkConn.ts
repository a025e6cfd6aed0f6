/**
 * One host link over a connected `net.Socket`: requests with answers, one-way notices, a bulk
 * of binary payload on any message, and the hello exchange that names the peer.
 *
 * Send side (LinkWriter.ts): one FIFO of messages (a CONTROL frame + its BULK frames, back to
 * back) whose unsent bytes are bounded (a sender awaits room), and at most ~1 MiB in the socket
 * (above it the writer awaits 'drain'). A send resolves when its last frame was flushed, so the
 * caller may reuse its bulk buffer (a mailbox data area) afterwards; a request resolves when
 * answered. Receive side (LinkReader.ts): frames are checked before they are buffered; while
 * `maxRunning` request handlers run (or messages are held, below), the socket is paused.
 *
 * Hello (LinkHello.ts): both sides send `hello` as their first message; `peer` is set when both
 * hellos were exchanged and valid. Messages that arrive after that but before `start()` are held
 * (socket paused), so the owner registers its handlers before the first one is dispatched.
 * Requests in flight (ids, timeouts, late answers) are tracked by LinkPending.ts.
 *
 * Any protocol violation (malformed frame, response to an unknown id, truncation) logs one line
 * (`pvio link <peer>: closed: <reason>`), destroys the socket, fails every pending request with
 * PV_ERR_PCIE_LINK_DOWN and resolves `closed` with code PV_ERR_LINK_FRAME. Peer input never throws
 * out of this class.
 */

import type net from 'node:net';
import { type ErrorCode, isErrorCode, pvError } from '../../protocol/errors.js';
import { type HelloMsg, LinkKind, type LinkType } from '../../protocol/link/LinkSchema.js';
import { type LinkCodec, linkCodec } from './LinkCodec.js';
import { LinkHello } from './LinkHello.js';
import { LinkPending, type Pending } from './LinkPending.js';
import { LinkReader, type ReadMessage } from './LinkReader.js';
import { LinkWriter } from './LinkWriter.js';

export interface LinkReply {
  body: object;
  bulk?: Uint8Array;
}
// biome-ignore lint/suspicious/noExplicitAny: bodies are normalized per type by LinkCodec; handlers name their shape
export type LinkRequestHandler = (body: any, bulk: Uint8Array | undefined, conn: LinkConn) => Promise<LinkReply>;
// biome-ignore lint/suspicious/noExplicitAny: as above
export type LinkNoticeHandler = (body: any, bulk: Uint8Array | undefined, conn: LinkConn) => void;

/** How a link ended. `code` is absent for a local `close()`. */
export interface LinkClosed {
  reason: string;
  code?: ErrorCode;
}

export interface LinkConnOptions {
  /** Our hello (sent as the first message). */
  hello: HelloMsg;
  /** Time for the hello exchange (default 10 s). */
  helloTimeoutMs?: number;
  /** Request handlers running at once before the socket is paused (default 64). */
  maxRunning?: number;
}

/** Default request timeout. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export class LinkConn {
  /** The peer's hello, set once the hello exchange is done. */
  peer: HelloMsg | undefined;
  /** Resolves once, when the link closes. */
  readonly closed: Promise<LinkClosed>;
  /** Resolves with the peer's hello; rejects (and the link closes) if the exchange fails. */
  readonly handshake: Promise<HelloMsg>;
  private _closeInfo: LinkClosed | undefined;
  private _resolveClosed!: (c: LinkClosed) => void;
  private _handshakeDone!: (h: HelloMsg) => void;
  private _handshakeFailed!: (e: Error) => void;
  private readonly _codec: LinkCodec;
  private readonly _reader: LinkReader;
  private readonly _writer: LinkWriter;
  private readonly _hello: LinkHello;
  private readonly _pending = new LinkPending(() => this.label);
  private readonly _requestHandlers = new Map<LinkType, LinkRequestHandler>();
  private readonly _noticeHandlers = new Map<LinkType, LinkNoticeHandler>();
  private readonly _held: ReadMessage[] = [];
  private readonly _maxRunning: number;
  private _started = false;
  private _running = 0;
  private _paused = false;

  constructor(
    private readonly _socket: net.Socket,
    opts: LinkConnOptions,
  ) {
    this._codec = linkCodec();
    this._maxRunning = opts.maxRunning ?? 64;
    this.closed = new Promise((r) => {
      this._resolveClosed = r;
    });
    this.handshake = new Promise<HelloMsg>((res, rej) => {
      this._handshakeDone = res;
      this._handshakeFailed = rej;
    });
    this.handshake.catch(() => {}); // observed through `closed` when nobody awaits it
    this._writer = new LinkWriter(_socket, this._codec);
    this._reader = new LinkReader(this._codec, (m) => this._onMessage(m));
    this._hello = new LinkHello(opts.hello, this._writer, {
      fail: (reason, code) => this._fail(reason, code),
      done: (peer) => {
        this.peer = peer;
        this._handshakeDone(peer);
      },
      pause: () => this._socket.pause(),
    });
    _socket.setNoDelay(true);
    _socket.on('data', (chunk: Buffer) => {
      if (this._closeInfo) return;
      try {
        this._reader.push(chunk);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        this._fail(String((err as Error).message ?? err), isErrorCode(code) ? code : 'PV_ERR_LINK_FRAME');
      }
    });
    _socket.on('end', () => {
      const cut = this._reader.truncation();
      if (cut) this._fail(`truncated: ${cut}`, 'PV_ERR_LINK_FRAME');
      else this._shut('peer closed the link', 'PV_ERR_PCIE_LINK_DOWN', false);
    });
    _socket.on('error', (err) => this._shut(`socket error: ${err.message}`, 'PV_ERR_PCIE_LINK_DOWN', true));
    _socket.on('close', () => this._shut('socket closed', 'PV_ERR_PCIE_LINK_DOWN', false));
    // INVARIANT: queued before any 'data' event can run, so our hello is the first message we send.
    this._hello.send(this._pending, opts.helloTimeoutMs ?? 10_000);
  }

  get isOpen(): boolean {
    return this._closeInfo === undefined;
  }

  /** A name for log lines and errors: the peer's host name once known, else its address. */
  get label(): string {
    return this.peer?.host ?? this._hello.received?.host ?? `${this._socket.remoteAddress}:${this._socket.remotePort}`;
  }

  /** Sends a request and resolves with its answer (an error answer rejects with its typed error). */
  // biome-ignore lint/suspicious/noExplicitAny: the answer's shape is the caller's (RESPONSE_BODY_OF[type])
  async request<T = any>(
    type: LinkType,
    body: object,
    bulk?: Uint8Array,
    timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ): Promise<{ body: T; bulk: Uint8Array | undefined }> {
    if (type === 'hello') throw pvError('PV_ERR_INVALID_ARG', 'hello is sent by the link itself');
    await this.handshake;
    return new Promise((resolve, reject) => {
      const p: Pending = { type, resolve: (b, k) => resolve({ body: b as T, bulk: k }), reject, timer: undefined };
      const id = this._pending.add(p);
      const out = this._writer.send({ id, kind: LinkKind.REQUEST, type, body, bulkLen: bulk?.length ?? 0 }, bulk);
      out.done.catch((err) => this._pending.settle(id, undefined, err));
      p.timer = setTimeout(() => {
        this._pending.settle(
          id,
          undefined,
          pvError('PV_ERR_TIMEOUT', `${type} request to ${this.label} got no answer in ${timeoutMs} ms`),
        );
        this._pending.expire(id);
        out.cancel();
      }, timeoutMs);
    });
  }

  /** Sends a one-way notice; resolves once its frames were flushed to the socket. */
  async notify(type: LinkType, body: object, bulk?: Uint8Array): Promise<void> {
    if (type === 'hello') throw pvError('PV_ERR_INVALID_ARG', 'hello is sent by the link itself');
    await this.handshake;
    return this._writer.send({ id: 0, kind: LinkKind.NOTICE, type, body, bulkLen: bulk?.length ?? 0 }, bulk).done;
  }

  /** Sets the handler of requests of `type` (one per type: a second call replaces the first). */
  onRequest(type: LinkType, h: LinkRequestHandler): void {
    if (type === 'hello') throw pvError('PV_ERR_INVALID_ARG', 'hello is answered by the link itself');
    this._requestHandlers.set(type, h);
  }

  /** Sets the handler of notices of `type` (one per type); notices without a handler are dropped. */
  onNotice(type: LinkType, h: LinkNoticeHandler): void {
    this._noticeHandlers.set(type, h);
  }

  /** Begins dispatching requests and notices (held since the hello exchange ended). Idempotent. */
  start(): void {
    if (this._started || !this.peer) return;
    this._started = true;
    while (this._held.length > 0 && this.isOpen) this._dispatch(this._held.shift() as ReadMessage);
    this._updatePause();
  }

  /** Closes the link: pending requests fail with PV_ERR_PCIE_LINK_DOWN. */
  close(reason = 'closed locally'): void {
    if (this._closeInfo) return;
    this._finish({ reason });
    this._socket.end();
    // A peer that never reads would hold the socket open; end() gets a bounded time to flush.
    setTimeout(() => this._socket.destroy(), 1000).unref();
  }

  stats(): {
    framesIn: number;
    framesOut: number;
    bytesIn: number;
    bytesOut: number;
    queuedBytes: number;
    maxQueuedBytes: number;
  } {
    const w = this._writer;
    return {
      framesIn: this._reader.framesIn,
      framesOut: w.framesOut,
      bytesIn: this._reader.bytesIn,
      bytesOut: w.bytesOut,
      queuedBytes: w.queuedBytes(),
      maxQueuedBytes: w.maxQueuedBytes,
    };
  }

  // ---- receive side ----

  private _onMessage(m: ReadMessage): void {
    const { msg } = m;
    // A handler may have closed the link while the rest of a socket read is still being parsed.
    if (this._hello.refusing || !this.isOpen) return;
    if (msg.kind === LinkKind.RESPONSE) {
      this._pending.answer(m);
      return;
    }
    // Until the hello exchange ended, every request or notice belongs to it (or breaks it).
    if (this._hello.take(msg)) return;
    if (!this._started || this._held.length > 0) {
      this._held.push(m);
      this._updatePause();
      return;
    }
    this._dispatch(m);
  }

  private _dispatch({ msg, bulk }: ReadMessage): void {
    if (msg.kind === LinkKind.NOTICE) {
      const h = this._noticeHandlers.get(msg.type);
      if (!h) return;
      try {
        h(msg.body, bulk, this);
      } catch (err) {
        process.stderr.write(`pvio link ${this.label}: ${msg.type} notice handler failed: ${(err as Error).message}\n`);
      }
      return;
    }
    if (msg.type === 'hello') {
      this._answer(msg.id, 'hello', Promise.reject(pvError('PV_ERR_BAD_REQUEST', 'hello already exchanged')));
      return;
    }
    const h = this._requestHandlers.get(msg.type);
    const work = h
      ? Promise.resolve().then(() => h(msg.body, bulk, this))
      : Promise.reject(pvError('PV_ERR_NOT_SUPPORTED', `${msg.type} requests are not served by ${this.label}`));
    this._answer(msg.id, msg.type, work);
  }

  /** Answers request `id` with what `work` gives; counts it as running until the answer is flushed. */
  private _answer(id: number, type: LinkType, work: Promise<LinkReply>): void {
    this._running++;
    this._updatePause();
    const reply = (r: LinkReply) =>
      this._writer.send({ id, kind: LinkKind.RESPONSE, type, body: r.body, bulkLen: r.bulk?.length ?? 0 }, r.bulk).done;
    const refuse = (err: unknown) => {
      const c = (err as { code?: unknown }).code;
      const code = isErrorCode(c) ? c : 'PV_ERR_BAD_REQUEST';
      const errorMessage = String((err as Error)?.message ?? err);
      return this._writer.send({ id, kind: LinkKind.RESPONSE, type, bulkLen: 0, errorCode: code, errorMessage }).done;
    };
    // An answer that cannot be encoded (a handler bug) is refused instead; a link gone meanwhile ends it.
    work
      .then(reply)
      .catch((err) => (this.isOpen ? refuse(err) : undefined))
      .catch(() => {})
      .finally(() => {
        this._running--;
        this._updatePause();
      });
  }

  private _updatePause(): void {
    const want = this._held.length > 0 || this._running >= this._maxRunning;
    if (want === this._paused || !this.isOpen) return;
    this._paused = want;
    if (want) this._socket.pause();
    else this._socket.resume();
  }

  // ---- closing ----

  /** A protocol violation or failed hello: log, destroy the socket, close with `code`. */
  private _fail(reason: string, code: ErrorCode): void {
    this._shut(reason, code, true);
  }

  private _shut(reason: string, code: ErrorCode, log: boolean): void {
    if (this._closeInfo) return;
    if (log) process.stderr.write(`pvio link ${this.label}: closed: ${reason}\n`);
    this._finish({ reason, code });
    this._socket.destroy();
  }

  /** Records the close, fails everything in flight and resolves `closed`. */
  private _finish(info: LinkClosed): void {
    this._closeInfo = info;
    const down = pvError('PV_ERR_PCIE_LINK_DOWN', `host link to ${this.label} is down: ${info.reason}`);
    this._writer.close(down);
    this._pending.failAll(down);
    this._held.length = 0;
    this._handshakeFailed(down);
    this._resolveClosed(info);
  }
}
