/**
 * Client side of the mailbox tests: a worker thread that makes the synchronous calls the test
 * asks for (one `postMessage` per call) and reports each outcome. While it blocks in `call`, it
 * cannot receive messages — just as a simulated hardware thread stalls on a non-posted read.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { MailboxClient } from '../../../../hypervisor-sim/link/Mailbox.js';

/** One call the test asks for. */
export interface MailboxCallOrder {
  op: number;
  /** Request data (UTF-8) put at the start of the data area. */
  text: string;
  /** Arguments put in args[0..]. */
  args: number[];
  timeoutMs: number;
  /** Posted just before blocking, so the test knows the call is on its way. */
  announce?: boolean;
}

/** What a call gave back. */
export type MailboxCallResult =
  | { ok: true; len: number; text: string; args: number[] }
  | { ok: false; code: string; name: string; message: string };

const client = new MailboxClient(workerData.mailbox as SharedArrayBuffer);
const enc = new TextEncoder();
const dec = new TextDecoder();

parentPort?.on('message', (order: MailboxCallOrder) => {
  const req = enc.encode(order.text);
  client.data.set(req);
  client.args.fill(0);
  order.args.forEach((a, i) => {
    client.args[i] = a;
  });
  if (order.announce) parentPort?.postMessage({ calling: order.op });
  let result: MailboxCallResult;
  try {
    const len = client.call(order.op, req.length, order.timeoutMs);
    result = { ok: true, len, text: dec.decode(client.data.slice(0, len)), args: [...client.args.slice(0, 4)] };
  } catch (err) {
    const e = err as Error & { code?: string };
    result = { ok: false, code: String(e.code), name: e.name, message: e.message };
  }
  parentPort?.postMessage(result);
});
