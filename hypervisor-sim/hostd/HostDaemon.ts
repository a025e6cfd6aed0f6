/**
 * One `pvio host`: a simulated machine in its own OS process, one of a cluster whose members
 * find each other on etcd and talk over TCP host links.
 *
 * ```
 *            etcd (/pvio/<cluster>/…): host directory · device registry (leases, watches)
 *                 ▲                          ▲
 *   pvio host A ──┘   host link (TCP)        └── pvio host B
 *     main thread ◄══ frames: wire · mmio · dma · lend-* · cm-record · control ══► main thread
 *       ▲ Mailbox (SharedArrayBuffer)                                 │
 *     domain workers (NIC requester inline, drivers)          WireResponder / lent devices
 * ```
 * The main thread owns every socket; simulated hardware threads reach the network through their
 * Mailbox (hypervisor-sim/link/Mailbox.ts). Links are made on demand (the first message to a
 * host) and accepted from anyone who says hello; a message for a NIC port goes to the host whose
 * id owns the port (HostDirectory.ts). Controllers (the CLI, tests) connect with role `control`
 * and send `control` requests `{ op, ... }` that `registerControl` handlers answer.
 */

import { pvError } from '../../protocol/errors.js';
import type { StoreOps } from '../../protocol/Hypercalls.js';
import { LINK_VERSION } from '../../protocol/link/LinkFrame.js';
import type { CmRecordMsg, HelloMsg, JsonMsgBody } from '../../protocol/link/LinkSchema.js';
import { EtcdRegistry } from '../lending/EtcdRegistry.js';
import type { LinkConn } from '../link/LinkConn.js';
import { connectLink, listenLinks } from '../link/LinkListener.js';
import { CmRelay } from './CmRelay.js';
import { HostDirectory, type HostRecord, hostIdOfPort } from './HostDirectory.js';

/** Options of a host process. */
export interface HostDaemonOptions {
  /** Host name, unique in the cluster. */
  readonly name: string;
  /** Where the host link listens (port 0: any free port). */
  readonly listenHost: string;
  readonly listenPort: number;
  /** Address peers use to reach it (default: the listen address). */
  readonly advertiseHost?: string;
  /** etcd client URLs. */
  readonly etcd: readonly string[];
  readonly cluster?: string;
  /** etcd lease TTL in seconds (host record, registered devices, borrows). Default 5. */
  readonly ttl?: number;
}

/** Answers one `control` request. */
export type ControlHandler = (args: Record<string, unknown>, from: LinkConn) => Promise<unknown>;

/** How long a link connect may take. */
const CONNECT_TIMEOUT_MS = 5000;

export class HostDaemon {
  readonly name: string;
  readonly hostId: number;
  /** `HOST:PORT` of the host link. */
  readonly link: string;
  readonly directory: HostDirectory;
  readonly registry: EtcdRegistry;
  private readonly _links = new Map<string, LinkConn>();
  private readonly _connecting = new Map<string, Promise<LinkConn>>();
  private readonly _controls = new Map<string, ControlHandler>();
  private readonly _controllers = new Set<LinkConn>();
  private _closeListener: (() => Promise<void>) | undefined;
  private _hello: HelloMsg;
  /** Link hooks other parts install (wire responder, lending): called for each new link. */
  private readonly _linkHooks: Array<(conn: LinkConn) => void> = [];
  private _stopped = false;
  /** Relayed connection records go into the running cell's store, or wait here until it starts. */
  private _cmStore: StoreOps | undefined;
  private _cmPending: CmRecordMsg[] = [];

  private constructor(opts: HostDaemonOptions, hostId: number, directory: HostDirectory, registry: EtcdRegistry) {
    this.name = opts.name;
    this.hostId = hostId;
    this.directory = directory;
    this.registry = registry;
    this.link = '';
    this._hello = { host: opts.name, hostId, version: LINK_VERSION, role: 'host' };
  }

  /** Joins the cluster: etcd, a host id, the link listener, the directory record. */
  static async start(opts: HostDaemonOptions): Promise<HostDaemon> {
    const directory = await HostDirectory.connect({ endpoints: opts.etcd, cluster: opts.cluster, ttl: opts.ttl });
    let registry: EtcdRegistry | undefined;
    try {
      const live = directory.byName(opts.name);
      if (live !== undefined && live.pid !== process.pid) {
        throw pvError(
          'PV_ERR_CONFIG',
          `a host named ${opts.name} is already in cluster ${opts.cluster ?? 'default'} (pid ${live.pid} at ${live.link}); pick another --name, stop it, or — if it crashed — wait ${opts.ttl ?? 5} s for its record to expire`,
        );
      }
      const hostId = await directory.allocateId(opts.name);
      registry = await EtcdRegistry.connect({ endpoints: opts.etcd, cluster: opts.cluster, ttl: opts.ttl });
      const d = new HostDaemon(opts, hostId, directory, registry);
      const srv = await listenLinks({
        host: opts.listenHost,
        port: opts.listenPort,
        hello: d._hello,
        onLink: (conn) => d._adopt(conn),
      });
      d._closeListener = srv.close;
      (d as { link: string }).link = `${opts.advertiseHost ?? opts.listenHost}:${srv.port}`;
      d._registerBuiltins();
      await directory.publish({ name: d.name, hostId, link: d.link, pid: process.pid });
      return d;
    } catch (err) {
      await registry?.close().catch(() => undefined);
      await directory.close().catch(() => undefined);
      throw err;
    }
  }

  /** Adds a `control` operation. */
  registerControl(op: string, handler: ControlHandler): void {
    if (this._controls.has(op)) throw pvError('PV_ERR_CONFIG', `control op ${op} is registered twice`);
    this._controls.set(op, handler);
  }

  /** Runs `hook` on every link (present and future): to install request handlers. */
  onLink(hook: (conn: LinkConn) => void): void {
    this._linkHooks.push(hook);
    for (const c of this._links.values()) hook(c);
  }

  /** The link to host `name` (made if needed). PV_ERR_PCIE_LINK_DOWN when it is not reachable. */
  async linkTo(name: string): Promise<LinkConn> {
    const cur = this._links.get(name);
    if (cur?.isOpen) return cur;
    const pending = this._connecting.get(name);
    if (pending !== undefined) return pending;
    const rec = this.directory.byName(name);
    if (rec === undefined) throw pvError('PV_ERR_PCIE_LINK_DOWN', `host ${name} is not in the cluster directory`);
    const p = this._connect(rec);
    this._connecting.set(name, p);
    try {
      return await p;
    } finally {
      this._connecting.delete(name);
    }
  }

  /** The link to the host that owns NIC port `port`. */
  async linkToPort(port: number): Promise<LinkConn> {
    const rec = this.directory.byId(hostIdOfPort(port));
    if (rec === undefined) throw pvError('PV_ERR_PCIE_LINK_DOWN', `no live host owns NIC port ${port}`);
    return this.linkTo(rec.name);
  }

  /** Sends a relayed connection record to the host with id `hostId`. */
  async sendCm(hostId: number, msg: CmRecordMsg): Promise<void> {
    const rec = this.directory.byId(hostId);
    if (rec === undefined) throw pvError('PV_ERR_PCIE_LINK_DOWN', `no live host with id ${hostId}`);
    await (await this.linkTo(rec.name)).request('cm-record', msg);
  }

  /** What `pvio host` prints and `control {op: 'status'}` returns. */
  status(): Record<string, unknown> {
    return {
      name: this.name,
      hostId: this.hostId,
      link: this.link,
      pid: process.pid,
      hosts: this.directory.hosts(),
      links: [...this._links.entries()].map(([peer, c]) => ({ peer, open: c.isOpen, ...c.stats() })),
    };
  }

  /** Leaves the cluster: links closed, etcd lease revoked (graceful) or left to expire. */
  async stop(graceful = true): Promise<void> {
    if (this._stopped) return;
    this._stopped = true;
    for (const c of [...this._links.values(), ...this._controllers]) c.close('host stopping');
    await this._closeListener?.();
    await this.registry.close({ graceful }).catch(() => undefined);
    await this.directory.close(graceful).catch(() => undefined);
  }

  private async _connect(rec: HostRecord): Promise<LinkConn> {
    const i = rec.link.lastIndexOf(':');
    try {
      const conn = await connectLink({
        host: rec.link.slice(0, i),
        port: Number(rec.link.slice(i + 1)),
        hello: this._hello,
        timeoutMs: CONNECT_TIMEOUT_MS,
      });
      this._adopt(conn);
      return conn;
    } catch (err) {
      throw pvError('PV_ERR_PCIE_LINK_DOWN', `cannot reach host ${rec.name} at ${rec.link}: ${(err as Error).message}`);
    }
  }

  /** A link after hello: file it by peer and install the handlers. */
  private _adopt(conn: LinkConn): void {
    const peer = conn.peer;
    if (peer === undefined) return;
    conn.onRequest('control', (body: JsonMsgBody) => this._control(body, conn));
    conn.onRequest('cm-record', async (msg: CmRecordMsg) => {
      await this._cmSink(msg);
      return { body: {} };
    });
    if (peer.role === 'control') {
      this._controllers.add(conn);
      void conn.closed.then(() => this._controllers.delete(conn));
      return;
    }
    const prev = this._links.get(peer.host);
    if (prev === undefined || !prev.isOpen) this._links.set(peer.host, conn);
    void conn.closed.then((why) => {
      if (this._links.get(peer.host) === conn) this._links.delete(peer.host);
      if (!this._stopped) console.error(`pvio host ${this.name}: link to ${peer.host} closed: ${why.reason}`);
    });
    for (const hook of this._linkHooks) hook(conn);
  }

  private async _control(body: JsonMsgBody, conn: LinkConn): Promise<{ body: JsonMsgBody }> {
    let args: Record<string, unknown>;
    try {
      args = JSON.parse(body.json) as Record<string, unknown>;
    } catch {
      throw pvError('PV_ERR_BAD_REQUEST', 'control request is not JSON');
    }
    if (args === null || typeof args !== 'object' || typeof args.op !== 'string') {
      throw pvError('PV_ERR_BAD_REQUEST', 'control request needs an "op" string');
    }
    const h = this._controls.get(args.op);
    if (h === undefined) {
      throw pvError(
        'PV_ERR_NOT_SUPPORTED',
        `unknown control op ${args.op} (known: ${[...this._controls.keys()].join(', ')})`,
      );
    }
    const result = await h(args, conn);
    return { body: { json: JSON.stringify(result ?? null) } };
  }

  private async _cmSink(msg: CmRecordMsg): Promise<void> {
    if (this._cmStore === undefined) {
      if (this._cmPending.length >= 256)
        throw pvError('PV_ERR_LIMIT', 'too many connection records waiting for a cell');
      this._cmPending.push(msg);
      return;
    }
    await CmRelay.deliver(this._cmStore, msg);
  }

  /** The store cell records go to (a cell's host toolstack), or undefined when no cell runs. */
  async setCellStore(store: StoreOps | undefined): Promise<void> {
    this._cmStore = store;
    if (store === undefined) {
      this._cmPending = [];
      return;
    }
    for (const m of this._cmPending.splice(0)) await CmRelay.deliver(store, m);
  }

  private _registerBuiltins(): void {
    this.registerControl('status', async () => this.status());
    this.registerControl('noop', async () => ({}));
    // The host link round trip to a peer: the floor every cross-host message pays.
    this.registerControl('ping-peer', async (args) => {
      const count = Number(args.count ?? 100);
      if (!Number.isInteger(count) || count < 1 || count > 100_000) {
        throw pvError('PV_ERR_INVALID_ARG', 'count must be an integer in [1, 100000]');
      }
      const conn = await this.linkTo(String(args.peer));
      const noop = { json: '{"op":"noop"}' };
      await conn.request('control', noop);
      const us: number[] = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        await conn.request('control', noop);
        us.push((performance.now() - t0) * 1000);
      }
      us.sort((a, b) => a - b);
      const at = (p: number) => us[Math.min(us.length - 1, Math.ceil(p * us.length) - 1)];
      return { median: at(0.5), p99: at(0.99), n: us.length };
    });
  }
}
