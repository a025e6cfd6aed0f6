/**
 * Opening host links: `listenLinks` accepts them on a TCP port, `connectLink` dials one. Either
 * way the link is a LinkConn whose hello exchange (LinkConn.ts) must succeed before the owner
 * sees it; a peer that fails it is closed and never reaches `onLink`. A bad connection never
 * affects the listener: it goes on accepting.
 */

import net from 'node:net';
import { pvError } from '../../protocol/errors.js';
import type { HelloMsg } from '../../protocol/link/LinkSchema.js';
import { LinkConn } from './LinkConn.js';

export interface LinkListenOptions {
  /** Address to bind (e.g. '127.0.0.1'). */
  host: string;
  /** Port; 0 picks a free one (see the returned `port`). */
  port: number;
  /** Our hello, sent on every accepted link. */
  hello: HelloMsg;
  /** Called once per link after the hello exchange; register handlers here (dispatch starts after it). */
  onLink(conn: LinkConn): void;
  /** Hello exchange time limit per link (default 10 s). */
  helloTimeoutMs?: number;
}

export interface LinkListener {
  /** The bound port. */
  readonly port: number;
  /** The links currently open (after hello). */
  readonly links: ReadonlySet<LinkConn>;
  /** Stops accepting and closes every link. */
  close(): Promise<void>;
}

/** Listens for host links. Rejects with PV_ERR_CONFIG if the address cannot be bound. */
export function listenLinks(opts: LinkListenOptions): Promise<LinkListener> {
  const all = new Set<LinkConn>();
  const ready = new Set<LinkConn>();
  const server = net.createServer((socket) => {
    const conn = new LinkConn(socket, { hello: opts.hello, helloTimeoutMs: opts.helloTimeoutMs });
    all.add(conn);
    void conn.closed.then(() => {
      all.delete(conn);
      ready.delete(conn);
    });
    conn.handshake.then(
      () => {
        if (!conn.isOpen) return;
        ready.add(conn);
        try {
          opts.onLink(conn);
        } catch (err) {
          conn.close(`onLink failed: ${(err as Error).message}`);
          return;
        }
        conn.start();
      },
      () => {}, // the link closed itself and said why
    );
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) =>
      reject(pvError('PV_ERR_CONFIG', `cannot listen on ${opts.host}:${opts.port}: ${err.message}`));
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      server.on('error', (err) => process.stderr.write(`pvio link listener: ${err.message}\n`));
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        links: ready,
        close: async () => {
          const closing = new Promise<void>((r) => server.close(() => r()));
          for (const conn of [...all]) conn.close('listener closed');
          await Promise.all([...all].map((c) => c.closed));
          await closing;
        },
      });
    });
  });
}

export interface LinkConnectOptions {
  host: string;
  port: number;
  hello: HelloMsg;
  /** Time for the TCP connect plus the hello exchange (default 10 s). */
  timeoutMs?: number;
  /** Called after the hello exchange, before any request is dispatched; register handlers here. */
  onLink?(conn: LinkConn): void;
}

/**
 * Dials a host link and completes the hello exchange. Requests from the peer are dispatched from
 * the next macrotask after this resolves, so handlers registered right after `await` see them all
 * (or pass `onLink`). Fails with PV_ERR_PCIE_LINK_DOWN (refused, reset, peer gone), the peer's
 * refusal of our hello (PV_ERR_BAD_REQUEST), or PV_ERR_TIMEOUT.
 */
export function connectLink(opts: LinkConnectOptions): Promise<LinkConn> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: opts.host, port: opts.port });
    let conn: LinkConn | undefined;
    const timer = setTimeout(() => {
      const err = pvError('PV_ERR_TIMEOUT', `no host link to ${opts.host}:${opts.port} within ${timeoutMs} ms`);
      if (conn) conn.close(err.message);
      else socket.destroy();
      reject(err);
    }, timeoutMs);
    socket.once('error', (err) => {
      if (conn) return; // the LinkConn owns the socket's errors now
      clearTimeout(timer);
      reject(pvError('PV_ERR_PCIE_LINK_DOWN', `cannot reach host ${opts.host}:${opts.port}: ${err.message}`));
    });
    socket.once('connect', () => {
      const c = new LinkConn(socket, { hello: opts.hello, helloTimeoutMs: timeoutMs });
      conn = c;
      c.handshake.then(
        () => {
          clearTimeout(timer);
          try {
            opts.onLink?.(c);
          } catch (err) {
            c.close(`onLink failed: ${(err as Error).message}`);
            reject(err);
            return;
          }
          resolve(c);
          setImmediate(() => c.start());
        },
        (err: Error) => {
          clearTimeout(timer);
          // The peer's own refusal says more than "link down": prefer it.
          void c.closed.then((info) =>
            reject(info.code && info.code !== 'PV_ERR_PCIE_LINK_DOWN' ? pvError(info.code, info.reason) : err),
          );
        },
      );
    });
  });
}
