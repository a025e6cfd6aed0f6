/**
 * How `pvio top` and `pvio console` reach a running pvio process: each process that runs hosts
 * listens on a unix socket `<tmpdir>/pvio-monitor/<pid>.sock` (only this user can reach it) and
 * answers newline-delimited JSON requests, one JSON line each:
 *
 * ```
 * {"op":"snapshot"}                    → MonitorSnapshot (Snapshot.ts)
 * {"op":"console","domain":"name|id"}  → ConsoleAnswer, or {"error": "..."} (no such domain)
 * anything else                        → {"error": "..."}
 * ```
 * The answers are built on the main thread from shared memory and the hosts' console terminals,
 * so a monitor never messages a domain. The server is unref'd (it never keeps the process alive)
 * and removes its socket when the process exits. A viewer finds the newest live socket with
 * `findMonitors` (stale sockets of dead processes are removed on the way).
 */

import { chmodSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pvError } from '../../protocol/errors.js';
import type { MonitorSnapshot } from './Snapshot.js';

/** One domain's console screen. */
export interface ConsoleAnswer {
  readonly host: string;
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  /** The visible screen, one string per line, trailing blank lines dropped. */
  readonly screen: readonly string[];
}

/** What the server serves. */
export interface MonitorSource {
  snapshot(): MonitorSnapshot | Promise<MonitorSnapshot>;
  /** The console of the domain named or numbered `domain` (`host/name` when several hosts run). */
  console(domain: string): Promise<ConsoleAnswer | undefined>;
}

/** Longest request line accepted (a request is a few dozen bytes). */
const MAX_REQUEST = 4096;

/** The folder of every process's monitor socket. */
export function monitorDir(): string {
  return join(tmpdir(), 'pvio-monitor');
}

/** A running monitor server. */
export class MonitorServer {
  private constructor(
    private readonly _server: Server,
    readonly path: string,
  ) {}

  /** Listens at `<dir>/<pid>.sock`. */
  static async start(source: MonitorSource, dir = monitorDir()): Promise<MonitorServer> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${process.pid}.sock`);
    rmSync(path, { force: true });
    const server = createServer((sock) => serve(sock, source));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    server.unref();
    const cleanup = () => rmSync(path, { force: true });
    process.once('exit', cleanup);
    const s = new MonitorServer(server, path);
    s._cleanup = cleanup;
    return s;
  }

  private _cleanup: () => void = () => {};

  /** Stops listening and removes the socket. */
  async close(): Promise<void> {
    process.removeListener('exit', this._cleanup);
    await new Promise<void>((resolve) => this._server.close(() => resolve()));
    this._cleanup();
  }
}

function serve(sock: Socket, source: MonitorSource): void {
  let buf = '';
  let queue = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_REQUEST && !buf.includes('\n')) {
      sock.end(`${JSON.stringify({ error: 'request line too long' })}\n`);
      return;
    }
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      // Answers go out in request order.
      queue = queue.then(async () => {
        const answer = await handle(line, source);
        if (!sock.destroyed) sock.write(`${JSON.stringify(answer)}\n`);
      });
    }
  });
}

async function handle(line: string, source: MonitorSource): Promise<unknown> {
  let req: { op?: unknown; domain?: unknown };
  try {
    req = JSON.parse(line) as typeof req;
  } catch {
    return { error: 'not JSON' };
  }
  try {
    if (req.op === 'snapshot') return source.snapshot();
    if (req.op === 'console' && typeof req.domain === 'string') {
      return (await source.console(req.domain)) ?? { error: `no running domain '${req.domain.slice(0, 64)}'` };
    }
    return { error: `unknown request ${JSON.stringify(req.op)?.slice(0, 32)}` };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** A live monitor socket. */
export interface MonitorEndpoint {
  readonly pid: number;
  readonly path: string;
}

/** True when something accepts connections at `path`. */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Live monitor sockets, newest process first (other than this one); removes stale ones. */
export async function findMonitors(dir = monitorDir()): Promise<MonitorEndpoint[]> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: MonitorEndpoint[] = [];
  for (const n of names) {
    const m = /^(\d+)\.sock$/.exec(n);
    if (m === null || Number(m[1]) === process.pid) continue;
    const path = join(dir, n);
    if (await alive(path)) out.push({ pid: Number(m[1]), path });
    else rmSync(path, { force: true });
  }
  return out.sort((a, b) => b.pid - a.pid);
}

/** A connection to a monitor server: one request at a time, answers in order. */
export class MonitorClient {
  private _buf = '';
  private readonly _waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private _closed = false;

  private constructor(private readonly _sock: Socket) {
    _sock.setEncoding('utf8');
    _sock.on('data', (chunk: string) => {
      this._buf += chunk;
      for (let nl = this._buf.indexOf('\n'); nl >= 0; nl = this._buf.indexOf('\n')) {
        const line = this._buf.slice(0, nl);
        this._buf = this._buf.slice(nl + 1);
        this._waiting.shift()?.resolve(JSON.parse(line));
      }
    });
    const fail = () => {
      this._closed = true;
      for (const w of this._waiting.splice(0)) {
        w.reject(pvError('PV_ERR_DISCONNECTED', 'the monitored pvio process went away'));
      }
    };
    _sock.on('close', fail);
    _sock.on('error', fail);
  }

  /** Connects to `path`. */
  static connect(path: string): Promise<MonitorClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(new MonitorClient(s)));
      s.once('error', (e) => reject(pvError('PV_ERR_DISCONNECTED', `cannot reach ${path}: ${e.message}`)));
    });
  }

  /** Sends one request and resolves with its answer. */
  request(req: Record<string, unknown>): Promise<unknown> {
    if (this._closed) return Promise.reject(pvError('PV_ERR_DISCONNECTED', 'the monitored pvio process went away'));
    return new Promise((resolve, reject) => {
      this._waiting.push({ resolve, reject });
      this._sock.write(`${JSON.stringify(req)}\n`);
    });
  }

  close(): void {
    this._closed = true;
    this._sock.destroy();
  }
}
