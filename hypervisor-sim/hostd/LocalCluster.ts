/**
 * A whole cluster on this machine with one call — what `pvio cluster` runs and what the
 * multi-process tests use: a private etcd (temp data dir, loopback, fast elections) and one
 * `pvio host` OS process per name, each listening on a free loopback port. Hosts print one
 * `ready` line when reachable; `start` waits for all of them (bounded) and fails with their
 * output if one dies first.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pvError } from '../../protocol/errors.js';
import { ControlClient } from './ControlClient.js';
import { EtcdServer } from './EtcdProcess.js';

/** The compiled CLI (dist/cli/pvio.js). */
const PVIO = fileURLToPath(new URL('../../cli/pvio.js', import.meta.url));
const READY = /^pvio host (\S+) ready: host id (\d+), link (\S+),/;
/** How long a host may take to join (etcd connect, listener, directory record). */
const HOST_START_MS = 30_000;

export interface LocalClusterOptions {
  /** Host names (default A, B, C). */
  readonly hosts?: readonly string[];
  /** Hosts that lend their NVMe SSD (`--lend nvme0`). */
  readonly lenders?: readonly string[];
  /** etcd lease TTL, seconds (default 5). */
  readonly ttl?: number;
  /** Receives every output line of the hosts, prefixed `[name] `. Default: dropped. */
  readonly echo?: (line: string) => void;
  /** Extra arguments for every host. */
  readonly hostArgs?: readonly string[];
}

/** One running host process. */
export interface LocalHost {
  readonly name: string;
  readonly hostId: number;
  /** `HOST:PORT` of its host link. */
  readonly link: string;
  readonly proc: ChildProcess;
  /** Its output so far (for diagnostics). */
  readonly log: string[];
}

export class LocalCluster {
  readonly hosts = new Map<string, LocalHost>();
  private _stopped = false;

  private constructor(
    readonly etcd: EtcdServer,
    private readonly _opts: LocalClusterOptions,
  ) {}

  /** The registry flag every host got. */
  get registry(): string {
    return `etcd://127.0.0.1:${this.etcd.clientPort}`;
  }

  static async start(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
    const names = opts.hosts ?? ['A', 'B', 'C'];
    const etcd = await EtcdServer.start('pvio-cluster');
    const c = new LocalCluster(etcd, opts);
    try {
      await Promise.all(names.map((n) => c.startHost(n)));
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** Starts (or restarts) host `name`; resolves once it printed its ready line. */
  async startHost(name: string): Promise<LocalHost> {
    const o = this._opts;
    const args = [
      '--enable-source-maps',
      PVIO,
      'host',
      `--name=${name}`,
      '--listen=127.0.0.1:0',
      `--registry=${this.registry}`,
      `--ttl=${o.ttl ?? 5}`,
      ...(o.lenders?.includes(name) ? ['--lend=nvme0'] : []),
      ...(o.hostArgs ?? []),
    ];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const log: string[] = [];
    return new Promise<LocalHost>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => fail(`did not become ready within ${HOST_START_MS} ms`), HOST_START_MS);
      const fail = (why: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(pvError('PV_ERR_CONFIG', `pvio host ${name} ${why}:\n${log.join('\n')}`));
      };
      const onLine = (line: string) => {
        log.push(line);
        if (log.length > 400) log.shift();
        o.echo?.(`[${name}] ${line}`);
        const m = READY.exec(line);
        if (m && !done) {
          done = true;
          clearTimeout(timer);
          const h: LocalHost = { name, hostId: Number(m[2]), link: m[3], proc, log };
          this.hosts.set(name, h);
          resolve(h);
        }
      };
      lines(proc.stdout, onLine);
      lines(proc.stderr, onLine);
      proc.once('exit', (code, sig) => fail(`exited (${sig ?? `code ${code}`}) before it was ready`));
    });
  }

  /** A control connection to host `name`. */
  async control(name: string): Promise<ControlClient> {
    const h = this.hosts.get(name);
    if (h === undefined) throw pvError('PV_ERR_INVALID_ARG', `no host ${name} in this cluster`);
    return ControlClient.connect(h.link);
  }

  /** Kills host `name` with `signal` (SIGKILL: a crash) and waits until the process is gone. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const h = this.hosts.get(name);
    if (h === undefined) return;
    this.hosts.delete(name);
    if (h.proc.exitCode !== null || h.proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => h.proc.once('exit', () => r()));
    h.proc.kill(signal);
    await gone;
  }

  /** Stops every host (SIGTERM, then SIGKILL after 5 s) and etcd, and removes etcd's data. */
  async stop(): Promise<void> {
    if (this._stopped) return;
    this._stopped = true;
    await Promise.all(
      [...this.hosts.keys()].map(async (n) => {
        const h = this.hosts.get(n) as LocalHost;
        const t = setTimeout(() => h.proc.kill('SIGKILL'), 5000);
        await this.kill(n, 'SIGTERM');
        clearTimeout(t);
      }),
    );
    await this.etcd.destroy();
  }
}

function lines(stream: NodeJS.ReadableStream | null, fn: (line: string) => void): void {
  if (stream === null) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let i = buf.indexOf('\n');
    while (i >= 0) {
      fn(buf.slice(0, i));
      buf = buf.slice(i + 1);
      i = buf.indexOf('\n');
    }
  });
}
