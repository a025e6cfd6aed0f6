/**
 * Test-side handle on a TcpPeerWorker: typed RPCs with a bounded wait each (a peer that stops
 * answering fails the test instead of hanging it), plus a helper that connects two endpoints.
 */

import { Worker } from 'node:worker_threads';
import type { TcpQpInfo } from '../../../../../frontend/verbs/tcp/TcpProvider.js';
import { fromWireError, toWireError, type WireError } from '../../../../../protocol/errors.js';
import type { QpAttr, RecvWr, SendWr, Wc } from '../../../../../protocol/rdma/Verbs.js';
import type { ConnectArgs, Endpoint, PeerData, SetupArgs } from './TcpPeerWorker.js';

interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: WireError;
  readonly logs?: string[];
}

/** Longest wait for one RPC. */
const RPC_TIMEOUT_MS = 30_000;

/** See the file comment. */
export class TcpPeer {
  /** The peer's NIC port (what the other side puts in ahAttr.dlid). */
  port = 0;
  /** Free guest pages right after the provider started (leak checks). */
  freePagesAtStart = 0;
  /** Log lines the peer's NIC thread wrote. */
  readonly logs: string[] = [];
  private readonly _worker: Worker;
  private _next = 1;
  private readonly _pending = new Map<number, (r: Reply) => void>();

  private constructor(worker: Worker) {
    this._worker = worker;
    worker.on('message', (r: Reply) => {
      if (r.logs) this.logs.push(...r.logs);
      this._pending.get(r.id)?.(r);
      this._pending.delete(r.id);
    });
    // A crashed peer fails every RPC in flight at once.
    worker.on('error', (err) => {
      for (const [id, done] of this._pending) done({ id, ok: false, error: toWireError(err) });
      this._pending.clear();
    });
  }

  /** Starts a peer with `memBytes` of guest memory. */
  static async start(name: string, memBytes = 48 * 1024 * 1024): Promise<TcpPeer> {
    const data: PeerData = { memBytes, name };
    const w = new Worker(new URL('./TcpPeerWorker.js', import.meta.url), { workerData: data });
    const peer = new TcpPeer(w);
    const ready = (await peer._wait(0, 'start')) as { port: number; freePages: number };
    peer.port = ready.port;
    peer.freePagesAtStart = ready.freePages;
    return peer;
  }

  /** Runs one RPC. */
  call<T>(op: string, args?: unknown): Promise<T> {
    const id = this._next++;
    const p = this._wait(id, op);
    this._worker.postMessage({ id, op, args });
    return p as Promise<T>;
  }

  private _wait(id: number, op: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Error(`peer RPC '${op}' did not answer within ${RPC_TIMEOUT_MS} ms`));
      }, RPC_TIMEOUT_MS);
      this._pending.set(id, (r) => {
        clearTimeout(timer);
        if (r.ok) resolve(r.value);
        else reject(fromWireError(r.error!));
      });
    });
  }

  setup(a: Partial<SetupArgs> & { access: number }): Promise<Endpoint> {
    return this.call('setup', {
      bufBytes: 64 * 1024,
      cqEntries: 1024,
      sendWr: 512,
      recvWr: 512,
      sigAll: true,
      ...a,
    });
  }
  connect(a: ConnectArgs): Promise<void> {
    return this.call('connect', a);
  }
  modify(qp: number, attr: QpAttr, mask: number): Promise<void> {
    return this.call('modify', { qp, attr, mask });
  }
  /** Writes pattern `seed` (from pattern index `from`) over guest memory. */
  fill(addr: number, len: number, seed: number, from = 0): Promise<void> {
    return this.call('fill', { addr, len, seed, from });
  }
  /** First mismatching offset against pattern `seed` (from index `from`), or -1. */
  verify(addr: number, len: number, seed: number, from = 0): Promise<number> {
    return this.call('verify', { addr, len, seed, from });
  }
  post(qp: number, wrs: SendWr[]): Promise<void> {
    return this.call('post', { qp, wrs });
  }
  postRecv(qp: number, wrs: RecvWr[]): Promise<void> {
    return this.call('postRecv', { qp, wrs });
  }
  poll(cq: number, count: number, timeoutMs?: number): Promise<Wc[]> {
    return this.call('poll', { cq, count, timeoutMs });
  }
  cqInfo(cq: number): Promise<{ prod: number; cons: number; overflow: number }> {
    return this.call('cqInfo', { cq });
  }
  query(qp: number): Promise<TcpQpInfo> {
    return this.call('query', { qp });
  }
  stats(): Promise<number[]> {
    return this.call('stats');
  }

  /** Closes the provider (destroying what is left) and ends the worker; returns free pages. */
  async close(): Promise<number> {
    try {
      return await this.call<number>('close');
    } finally {
      await this._worker.terminate();
    }
  }
}

/** Connects two endpoints to each other (both to RTS unless `upTo` says otherwise). */
export async function connectPair(
  a: TcpPeer,
  ea: Endpoint,
  b: TcpPeer,
  eb: Endpoint,
  access: number,
  extra: Partial<ConnectArgs> = {},
): Promise<void> {
  await a.connect({ qp: ea.qp, destQpNum: eb.qpNum, dlid: b.port, access, ...extra });
  await b.connect({ qp: eb.qp, destQpNum: ea.qpNum, dlid: a.port, access, ...extra });
}
