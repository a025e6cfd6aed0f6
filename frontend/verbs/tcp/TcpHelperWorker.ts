/**
 * The software NIC thread of one tcp provider (siw's kernel thread): a Worker that receives the
 * guest's memory buffer and the control block, runs a `SoftNic` on its own event loop (sockets
 * are asynchronous, verbs are not — hence a thread of its own), and tells the provider its port.
 *
 * Messages: provider → helper `{ type: 'close' }`; helper → provider `{ type: 'ready', port }`,
 * `{ type: 'log', line }` (rate-limited: a hostile peer cannot flood the log, XSA-43) and
 * `{ type: 'closed' }`. After 'closed' the thread exits once its sockets are gone.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SoftNic } from './SoftNic.js';

/** What the provider passes in `workerData`. */
export interface TcpHelperData {
  /** The guest's memory (SharedArrayGuestMemory's buffer). */
  readonly memory: SharedArrayBuffer;
  /** The control block (Layout.ts). */
  readonly ctrl: SharedArrayBuffer;
  /** Transmit slab per connection, bytes. */
  readonly slabBytes: number;
  /** For log lines. */
  readonly name: string;
}

/** Messages from the helper. */
export type TcpHelperMessage =
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'closed' };

/** Log lines per second before lines are dropped (and counted). */
const LOG_PER_SECOND = 50;

function main(data: TcpHelperData): void {
  const port = parentPort;
  if (!port) return;
  let windowStart = 0;
  let inWindow = 0;
  let dropped = 0;
  const log = (line: string): void => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      if (dropped > 0) port.postMessage({ type: 'log', line: `[${data.name}] ${dropped} log lines dropped` });
      windowStart = now;
      inWindow = 0;
      dropped = 0;
    }
    if (++inWindow > LOG_PER_SECOND) {
      dropped++;
      return;
    }
    port.postMessage({ type: 'log', line: `[${data.name}] ${line}` } satisfies TcpHelperMessage);
  };
  const nic = new SoftNic(data.memory, data.ctrl, { slabBytes: data.slabBytes, log });
  port.on('message', (m: { type?: string }) => {
    if (m?.type !== 'close') return;
    nic.close();
    port.postMessage({ type: 'closed' } satisfies TcpHelperMessage);
    // Let the thread end once the sockets are closed (nothing else keeps it alive).
    port.unref();
  });
  nic.start().then(
    (p) => port.postMessage({ type: 'ready', port: p } satisfies TcpHelperMessage),
    (err: Error) => log(`cannot listen: ${err.message}`),
  );
}

if (!isMainThread) main(workerData as TcpHelperData);
