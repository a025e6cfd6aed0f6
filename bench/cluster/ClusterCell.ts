/**
 * One side of a perftest cell whose two guests run on two `pvio host` processes: the control op
 * `perftest-cell` a host answers. The host boots a one-guest scenario — its NIC on the host's
 * own port ids, dom0 serving the guest when the transport is paravirtual — whose guest runs the
 * unchanged perftest program (bench/programs/PerftestGuest.ts) against a peer guest on another
 * host:
 *
 *  - the guest's peer domain id is the PROXY id of the remote guest, and the CmRelay carries the
 *    out-of-band records (QPN, rkey, address, port id) between the two stores;
 *  - every domain of the cell gets a wire mailbox: a work request for a port of another host
 *    leaves as a `wire` message on the host link (RemoteWire.ts), and `wire` messages from peers
 *    are answered by this cell's WireResponder.
 *
 * The controller starts the server side and the client side at once and gets each side's
 * program result back (samples, timestamps, CPU) to compute perftest's statistics.
 */

import { serveWireMailbox } from '../../hypervisor-sim/devices/rnic/WireMailbox.js';
import { WireResponder } from '../../hypervisor-sim/devices/rnic/WireResponder.js';
import type { Host } from '../../hypervisor-sim/domain/Host.js';
import { CmRelay, proxyDomid } from '../../hypervisor-sim/hostd/CmRelay.js';
import type { HostDaemon } from '../../hypervisor-sim/hostd/HostDaemon.js';
import { PORTS_PER_HOST } from '../../hypervisor-sim/hostd/HostDirectory.js';
import type { MailboxServer } from '../../hypervisor-sim/link/Mailbox.js';
import { runScenario, type ScenarioResult } from '../../hypervisor-sim/scenario/Scenario.js';
import { pvError } from '../../protocol/errors.js';
import type { WireReqMsg, WireRspMsg } from '../../protocol/link/LinkSchema.js';
import type { Transport } from '../../protocol/Pci.js';
import { WcStatus } from '../../protocol/rdma/Verbs.js';
import type { PerftestArgs } from '../programs/PerftestGuest.js';

const PROGRAM = new URL('../programs/PerftestGuest.js', import.meta.url);
/** Transports a cross-host cell can use (tcp has no NIC; lent placement is a lending cell). */
export const CLUSTER_TRANSPORTS: readonly Transport[] = ['native', 'passthrough', 'paravirt', 'paravirt-copy'];
/** The guest of a cell is the first domain after dom0. */
const GUEST_DOMID = 1;

/** What the controller asks for (the `perftest-cell` and `run-cell` control requests). */
export interface ClusterCellArgs {
  readonly role: 'server' | 'client';
  /** The other side's host name. */
  readonly peerHost: string;
  readonly transport: Transport;
  /** perftest-cell: the perftest guest's arguments. */
  readonly perftest?: PerftestArgs;
  /** run-cell: absolute path or file URL of a compiled guest program (default export main(env)). */
  readonly program?: string;
  /** run-cell: the program's arguments (`self` and `peers` are added). */
  readonly args?: Record<string, unknown>;
  readonly memoryMiB?: number;
  /** Bound on the whole cell (ms). Default 120 s. */
  readonly timeoutMs?: number;
}

/** What a side returns. */
export interface ClusterCellResult {
  readonly host: string;
  readonly role: 'server' | 'client';
  readonly value: unknown;
  readonly cpuNs: { readonly guest: number; readonly dom0: number };
  readonly counters: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly elapsedMs: number;
}

function checkArgs(a: ClusterCellArgs): void {
  if (a.role !== 'server' && a.role !== 'client') throw pvError('PV_ERR_INVALID_ARG', `role must be server or client`);
  if (typeof a.peerHost !== 'string') throw pvError('PV_ERR_INVALID_ARG', 'peerHost must name a host');
  if (!CLUSTER_TRANSPORTS.includes(a.transport)) {
    throw pvError('PV_ERR_INVALID_ARG', `transport must be one of ${CLUSTER_TRANSPORTS.join(', ')}`);
  }
  const guestArgs = a.perftest ?? a.args;
  if (guestArgs === null || typeof guestArgs !== 'object')
    throw pvError('PV_ERR_INVALID_ARG', 'the guest needs arguments');
  if (a.program !== undefined && typeof a.program !== 'string') throw pvError('PV_ERR_INVALID_ARG', 'program: a path');
}

/**
 * Installs the `wire` responder and the `perftest-cell` op on a host. One cell at a time: a
 * second request while one runs is refused (PV_ERR_RDMA_BUSY would mislead; PV_ERR_LIMIT).
 */
export function installClusterCells(daemon: HostDaemon): void {
  let responder: WireResponder | undefined;
  let running = false;
  daemon.onLink((conn) =>
    conn.onRequest('wire', async (req: WireReqMsg, bulk) => {
      // No cell: nobody has this port (as a NIC that is down): the requester retries, then fails.
      if (responder === undefined) return { body: { status: WcStatus.RETRY_EXC_ERR, rnr: false, rnrTimerUs: 0 } };
      const r = await responder.handleWaiting(req, bulk);
      return { body: r.rsp, bulk: r.data };
    }),
  );
  const runCell = async (raw: Record<string, unknown>) => {
    const a = raw as unknown as ClusterCellArgs;
    checkArgs(a);
    if (running) throw pvError('PV_ERR_LIMIT', `host ${daemon.name} is already running a cell`);
    const peer = daemon.directory.byName(a.peerHost);
    if (peer === undefined) throw pvError('PV_ERR_PCIE_LINK_DOWN', `host ${a.peerHost} is not in the cluster`);
    running = true;
    const servers: MailboxServer[] = [];
    let relay: CmRelay | undefined;
    const send = async (req: WireReqMsg, payload: Uint8Array | undefined) => {
      const conn = await daemon.linkToPort(req.dstPort);
      const r = await conn.request<WireRspMsg>('wire', req, payload);
      return { rsp: r.body, data: r.bulk };
    };
    const other = a.role === 'server' ? 'client' : 'server';
    const cleanup = async () => {
      responder = undefined;
      await daemon.setCellStore(undefined);
      await relay?.close();
      await Promise.all(servers.map((x) => x.stop()));
      running = false;
    };
    let settled = false;
    let scenario: Promise<ScenarioResult> | undefined;
    try {
      scenario = runScenario(
        {
          host: { name: daemon.name, nics: 1, portBase: daemon.hostId * PORTS_PER_HOST + 1, deviceEngine: 'inline' },
          guests: [
            {
              name: a.role,
              program:
                a.program === undefined ? PROGRAM : a.program.startsWith('file:') ? new URL(a.program) : a.program,
              memoryMiB: a.memoryMiB ?? 64,
              args: { ...(a.perftest ?? a.args), peers: { [other]: proxyDomid(peer.hostId) } } as Record<
                string,
                unknown
              >,
              devices: [{ device: 'nic0', transport: a.transport }],
            },
          ],
        },
        {
          hostOptions: {
            wireMailboxes: true,
            onWireMailbox: (_domid: number, sab: SharedArrayBuffer) => {
              const s = serveWireMailbox(sab, send);
              servers.push(s);
            },
          },
          onHost: (host: Host) => {
            responder = new WireResponder(host);
            void daemon.setCellStore(host.toolstack);
            void CmRelay.start(
              host.toolstack,
              { localDomid: GUEST_DOMID, remoteHostId: peer.hostId, remoteDomid: GUEST_DOMID, myHostId: daemon.hostId },
              (msg) => daemon.sendCm(peer.hostId, msg),
            ).then(
              (r) => {
                relay = r;
              },
              (err) => console.error(`pvio host ${daemon.name}: cm relay: ${(err as Error).message}`),
            );
          },
        },
      );
      scenario = scenario.finally(() => {
        settled = true;
      });
      const s = await withTimeout(scenario, a.timeoutMs ?? 120_000, `${a.role} cell on ${daemon.name}`);
      const g = s.guests[a.role];
      return {
        host: daemon.name,
        role: a.role,
        value: g.value,
        cpuNs: { guest: g.cpuNs, dom0: s.backend.cpuNs },
        counters: s.counters.nics,
        elapsedMs: s.elapsedMs,
      } satisfies ClusterCellResult;
    } finally {
      // A cell that timed out still runs: the host stays busy (and its mailboxes served) until
      // its scenario really ends, so the next cell never shares the NIC's port ids with it.
      if (settled || scenario === undefined) await cleanup();
      else void scenario.then(cleanup, cleanup);
    }
  };
  daemon.registerControl('perftest-cell', (raw) => {
    if (raw.program !== undefined) throw pvError('PV_ERR_INVALID_ARG', 'perftest-cell runs the perftest guest');
    return runCell(raw);
  });
  daemon.registerControl('run-cell', runCell);
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(pvError('PV_ERR_TIMEOUT', `${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
