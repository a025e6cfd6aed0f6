/**
 * The hello exchange that opens a host link (LinkConn.ts) and names its peer.
 *
 * Both sides send `hello` as their first message, so the peer's first message must be a hello
 * REQUEST; a request or notice of any other kind before the exchange ended breaks the protocol
 * (PV_ERR_LINK_FRAME). The exchange ends when we accepted the peer's hello request (checkHello,
 * answered with our hello) and the peer answered ours with the same hello it sent.
 *
 * A peer hello we refuse is answered with the reason (`hello refused: …`, PV_ERR_BAD_REQUEST);
 * from then on nothing the peer sends matters (`refusing`, the socket is paused) and the link
 * closes once that answer is flushed. A refusal of our hello, or no answer to it within the
 * timeout, closes the link too.
 */

import { type ErrorCode, isErrorCode, pvError } from '../../protocol/errors.js';
import { type HelloMsg, LinkKind } from '../../protocol/link/LinkSchema.js';
import { checkHello, type LinkInMessage } from './LinkCodec.js';
import type { LinkPending } from './LinkPending.js';
import type { LinkWriter } from './LinkWriter.js';

/** What the exchange asks of its link. */
export interface HelloEvents {
  /** Closes the link: a refused or unanswered hello (a violation is thrown instead). */
  fail(reason: string, code: ErrorCode): void;
  /** The exchange ended; `peer` is the peer's hello. */
  done(peer: HelloMsg): void;
  /** Stops reading the socket: we refused the peer. */
  pause(): void;
}

export class LinkHello {
  /** Set once we refused the peer's hello: nothing it sends matters any more. */
  refusing = false;
  private _received: HelloMsg | undefined;
  private _ended = false;

  constructor(
    private readonly _ours: HelloMsg,
    private readonly _writer: LinkWriter,
    private readonly _on: HelloEvents,
  ) {}

  /** The peer's hello request, once received and accepted (the exchange may not have ended). */
  get received(): HelloMsg | undefined {
    return this._received;
  }

  /** Sends our hello as a request tracked by `pending`; its answer ends the exchange. */
  send(pending: LinkPending, timeoutMs: number): void {
    const timer = setTimeout(
      () => this._on.fail(`no hello answer within ${timeoutMs} ms`, 'PV_ERR_TIMEOUT'),
      timeoutMs,
    );
    const id = pending.add({
      type: 'hello',
      resolve: (body) => this._onAnswer(body as HelloMsg),
      reject: (err) => {
        const code = (err as { code?: unknown }).code;
        // The peer's refusal names its reason (`hello refused: …`).
        this._on.fail(err.message, isErrorCode(code) ? code : 'PV_ERR_BAD_REQUEST');
      },
      timer,
    });
    this._writer.send({ id, kind: LinkKind.REQUEST, type: 'hello', body: this._ours, bulkLen: 0 }).done.catch(() => {});
  }

  /**
   * Takes a request or notice while the exchange runs: true when it was the peer's hello; false,
   * taking nothing, once the exchange ended. Throws PV_ERR_LINK_FRAME when it breaks the exchange.
   */
  take(msg: LinkInMessage): boolean {
    if (this._ended) return false;
    if (!this._received) {
      if (msg.kind !== LinkKind.REQUEST || msg.type !== 'hello') {
        throw pvError('PV_ERR_LINK_FRAME', `first message is a ${msg.type} ${kindName(msg.kind)}, not a hello request`);
      }
      this._onPeerHello(msg.id, msg.body as unknown as HelloMsg);
      return true;
    }
    throw pvError('PV_ERR_LINK_FRAME', `${msg.type} ${kindName(msg.kind)} before the hello exchange ended`);
  }

  private _onPeerHello(id: number, hello: HelloMsg): void {
    const bad = checkHello(hello);
    if (bad) {
      // Tell the peer why, then close once that answer is flushed (or at once if it cannot be).
      const why = `hello refused: ${bad}`;
      this._writer
        .send({
          id,
          kind: LinkKind.RESPONSE,
          type: 'hello',
          bulkLen: 0,
          errorCode: 'PV_ERR_BAD_REQUEST',
          errorMessage: why,
        })
        .done.catch(() => {})
        .finally(() => this._on.fail(why, 'PV_ERR_BAD_REQUEST'));
      this.refusing = true;
      this._on.pause();
      return;
    }
    this._received = hello;
    this._writer
      .send({ id, kind: LinkKind.RESPONSE, type: 'hello', body: this._ours, bulkLen: 0 })
      .done.catch(() => {});
  }

  private _onAnswer(answer: HelloMsg): void {
    // INVARIANT: the peer sends its hello request before answering ours, and TCP keeps order.
    const peer = this._received;
    if (!peer) throw pvError('PV_ERR_LINK_FRAME', 'hello answer before the peer hello request');
    if (answer.host !== peer.host || answer.hostId !== peer.hostId || answer.version !== peer.version) {
      throw pvError('PV_ERR_LINK_FRAME', `hello answer (${answer.host}) differs from the peer hello (${peer.host})`);
    }
    this._ended = true;
    this._on.done(peer);
  }
}

function kindName(kind: LinkKind): string {
  return kind === LinkKind.REQUEST ? 'request' : kind === LinkKind.RESPONSE ? 'response' : 'notice';
}
