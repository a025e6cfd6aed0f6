/**
 * A throw-away etcd for tests and for the one-command local cluster (`pvio cluster`): one member on 127.0.0.1 with free ports and a temp data dir,
 * tuned to start in a fraction of a second (`--heartbeat-interval=10 --election-timeout=100`).
 * It can be stopped and started again on the same ports and data dir (an etcd restart), and is
 * removed with `destroy`.
 *
 * The binary comes from Debian `etcd-server` (`.ci/run` installs it). Only its absence is a
 * reason for a test to skip: `etcdBinary()` returns undefined then and the suite calls `this.skip()`.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** How long a start may take before the test fails (etcd normally answers in ~0.1 s). */
const START_TIMEOUT_MS = 15_000;

/** Path of the etcd binary ($ETCD_BIN, else the first `etcd` on $PATH), or undefined. */
export function etcdBinary(): string | undefined {
  const candidates = [process.env.ETCD_BIN, ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'etcd'))];
  for (const c of candidates) {
    if (c === undefined || c === '') continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A port nobody listens on right now (the kernel's choice). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class EtcdServer {
  private _proc: ChildProcess | undefined;
  private _log = '';

  private constructor(
    private readonly _bin: string,
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly _name = 'pvio-test',
  ) {}

  /** Starts a fresh etcd (throws if the binary is missing: check `etcdBinary()` first). */
  static async start(name = 'pvio-test'): Promise<EtcdServer> {
    const bin = etcdBinary();
    if (bin === undefined) {
      throw new Error(
        'etcd binary not found: install it (Debian/Ubuntu: sudo apt-get install etcd-server) or set ETCD_BIN',
      );
    }
    const dir = mkdtempSync(join(tmpdir(), 'pvio-etcd-'));
    const s = new EtcdServer(bin, join(dir, 'data'), await freePort(), await freePort(), name);
    await s.resume();
    return s;
  }

  /** The client URL, for EtcdRegistryOptions.endpoints. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  get running(): boolean {
    return this._proc !== undefined;
  }

  /** (Re)starts etcd on the same ports and data dir and waits until it answers /health. */
  async resume(): Promise<void> {
    if (this._proc !== undefined) return;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const proc = spawn(
      this._bin,
      [
        `--name=${this._name}`,
        `--data-dir=${this.dataDir}`,
        `--listen-client-urls=${this.endpoint}`,
        `--advertise-client-urls=${this.endpoint}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=${this._name}=${peer}`,
        '--heartbeat-interval=10',
        '--election-timeout=100',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this._proc = proc;
    const keep = (b: Buffer) => {
      this._log = (this._log + b.toString()).slice(-8000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        this._proc = undefined;
        throw new Error(`etcd exited while starting:\n${this._log}`);
      }
      if (await this._healthy()) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`etcd did not answer within ${START_TIMEOUT_MS} ms:\n${this._log}`);
      }
      await Promise.race([new Promise((r) => setTimeout(r, 25)), exited]);
    }
  }

  /** Stops etcd (SIGTERM, then SIGKILL if it lingers); the data dir stays for `resume`. */
  async stop(): Promise<void> {
    const proc = this._proc;
    if (proc === undefined) return;
    this._proc = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops etcd and removes its data dir. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(join(this.dataDir, '..'), { recursive: true, force: true });
  }

  private async _healthy(): Promise<boolean> {
    try {
      const res = await fetch(`${this.endpoint}/health`, { signal: AbortSignal.timeout(500) });
      if (!res.ok) return false;
      const body = (await res.json()) as { health?: string };
      return body.health === 'true';
    } catch {
      return false;
    }
  }
}
