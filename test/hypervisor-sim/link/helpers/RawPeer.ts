/**
 * A host-link peer built from a bare `net.Socket`, for tests that must send what a LinkConn never
 * would (bad magic, a stray bulk, a truncated frame). It does the hello exchange by hand, then
 * lets the test write any bytes and read the frames the other side sends.
 */

import net from 'node:net';
import protobuf from 'protobufjs';
import { type LinkOutMessage, linkCodec } from '../../../../hypervisor-sim/link/LinkCodec.js';
import { LinkReader, type ReadMessage } from '../../../../hypervisor-sim/link/LinkReader.js';
import {
  FRAME_HEADER_BYTES,
  FrameFlag,
  type FrameHeader,
  FrameKind,
  writeHeader,
} from '../../../../protocol/link/LinkFrame.js';
import { type HelloMsg, LINK_PROTO, LinkKind } from '../../../../protocol/link/LinkSchema.js';

/** Bounded waits: a bug fails the test instead of hanging it. */
export const WAIT_MS = 10_000;

/** One frame's bytes: header + payload. */
export function frame(h: FrameHeader, payload: Uint8Array): Uint8Array {
  const buf = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeHeader(buf, 0, h);
  buf.set(payload, FRAME_HEADER_BYTES);
  return buf;
}

/** A CONTROL frame holding `m` as our codec encodes it. */
export function controlFrame(m: LinkOutMessage, stream = 0): Uint8Array {
  const payload = linkCodec().encode(m);
  return frame({ kind: FrameKind.CONTROL, flags: 0, stream, length: payload.length }, payload);
}

/** A CONTROL frame from raw envelope fields (past the codec's own checks: bulk_len, type). */
export function rawControlFrame(fields: Record<string, unknown>, stream = 0): Uint8Array {
  const t = protobuf.parse(LINK_PROTO).root.lookupType('pvio.link.LinkMessage');
  const payload = t.encode(t.fromObject(fields)).finish();
  return frame({ kind: FrameKind.CONTROL, flags: 0, stream, length: payload.length }, payload);
}

/** A BULK frame. */
export function bulkFrame(stream: number, payload: Uint8Array, last: boolean): Uint8Array {
  return frame({ kind: FrameKind.BULK, flags: last ? FrameFlag.LAST : 0, stream, length: payload.length }, payload);
}

export class RawPeer {
  readonly messages: ReadMessage[] = [];
  bulkBytes = 0;
  /** Set when what the other side sent did not parse. */
  error: Error | undefined;
  private readonly _reader: LinkReader;
  private _waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    this._reader = new LinkReader(linkCodec(), (m) => {
      this.messages.push(m);
      this.bulkBytes += m.bulk?.length ?? 0;
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this._reader.push(chunk);
      } catch (err) {
        this.error = err as Error;
      }
      for (const w of this._waiters.splice(0)) w();
    });
    socket.on('close', () => {
      for (const w of this._waiters.splice(0)) w();
    });
  }

  /** Connects and completes the hello exchange (answers theirs, waits for the answer to ours). */
  static async connect(port: number, hello: HelloMsg): Promise<RawPeer> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    const peer = new RawPeer(socket);
    socket.write(controlFrame({ id: 1, kind: LinkKind.REQUEST, type: 'hello', body: hello, bulkLen: 0 }));
    const theirs = await peer.until((m) => m.msg.kind === LinkKind.REQUEST && m.msg.type === 'hello');
    socket.write(controlFrame({ id: theirs.msg.id, kind: LinkKind.RESPONSE, type: 'hello', body: hello, bulkLen: 0 }));
    await peer.until((m) => m.msg.kind === LinkKind.RESPONSE && m.msg.id === 1);
    return peer;
  }

  /** The first received message (already or later) matching `pred`; bounded by WAIT_MS. */
  until(pred: (m: ReadMessage) => boolean): Promise<ReadMessage> {
    return this._wait(() => this.messages.find(pred));
  }

  /** Waits until `cond` holds (checked on every arrival); bounded by WAIT_MS. */
  async waitFor(cond: () => boolean): Promise<void> {
    await this._wait(() => (cond() ? true : undefined));
  }

  private async _wait<T>(check: () => T | undefined): Promise<T> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      if (this.error) throw this.error;
      if (this.socket.destroyed || Date.now() > deadline) throw new Error('raw peer: the expected data never came');
      await new Promise<void>((r) => {
        this._waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }
}
