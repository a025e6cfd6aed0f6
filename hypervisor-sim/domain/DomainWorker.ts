/**
 * Entry point of every domain thread. The host starts one Worker per domain with this module;
 * it attaches the hypervisor's shared state (own memory, the host-wide grant and event-channel
 * spaces, the store port), builds the `Hypercalls` the program sees (with `foreign`, other
 * domains' memory, for the privileged dom0 only: memory/SimForeignOps.ts), attaches the devices
 * the host handed it (DomainDevices.ts), imports the program module and runs its `main(env)`.
 * The program never sees this file: it only gets a `DomainEnv`.
 */

import { performance } from 'node:perf_hooks';
import { format } from 'node:util';
import type { MessagePort } from 'node:worker_threads';
import { parentPort, workerData } from 'node:worker_threads';
import { ConsoleWriter } from '../../protocol/console/ConsoleRing.js';
import { toWireError } from '../../protocol/errors.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import type { DomainEnv, DomainMain } from '../../protocol/Program.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import { type ThreadReport, takeThreadReports } from '../../protocol/stage/ThreadReports.js';
import { type DomId, domId } from '../../protocol/Types.js';
import { EvtchnSpace, type EvtchnSpaceConfig } from '../evtchn/EvtchnSpace.js';
import { SimEvtchnOps } from '../evtchn/SimEvtchnOps.js';
import { type GrantSpaceConfig, GrantTableSpace } from '../grant/GrantTableSpace.js';
import { SimGrantOps } from '../grant/SimGrantOps.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../memory/SharedArrayGuestMemory.js';
import { SimForeignOps } from '../memory/SimForeignOps.js';
import { MonitorSpace } from '../monitor/MonitorSpace.js';
import { SimMonitorOps } from '../monitor/SimMonitorOps.js';
import { currentTid } from '../monitor/ThreadStat.js';
import { StoreClient } from '../store/StoreClient.js';
import { threadCpuTime } from './CpuClock.js';
import { attachDevices } from './DomainDevices.js';
import type { DomainDeviceData } from './HostDevices.js';

/** What the host passes in `workerData`. */
export interface DomainWorkerData {
  readonly domid: number;
  readonly name: string;
  readonly program: string;
  readonly args: Record<string, unknown>;
  readonly memory: SharedArrayBuffer;
  readonly grantBuffer: SharedArrayBuffer;
  readonly grantConfig: GrantSpaceConfig;
  readonly evtchnBuffer: SharedArrayBuffer;
  readonly evtchnConfig: EvtchnSpaceConfig;
  readonly storePort: MessagePort;
  /** Memories of the domains that already exist (for grant maps and copies). */
  readonly peers: ReadonlyArray<{ readonly domid: number; readonly buffer: SharedArrayBuffer }>;
  /** Devices: the NICs to attach, the ones this domain owns, and pass-through attachments. */
  readonly devices: DomainDeviceData;
  /**
   * The host's stage window buffer (protocol/stage/StageLedger.ts), present when the host
   * instruments stages: this thread then runs its ledger. Absent in measuring runs.
   */
  readonly stageWindow?: SharedArrayBuffer;
  /** The host's monitor buffer (protocol/monitor/MonitorLayout.ts): TID, grant/notify counters, ring records. */
  readonly monitorBuffer?: SharedArrayBuffer;
  /** This domain's console page (protocol/console/ConsoleRing.ts): env.log and console.* go there. */
  readonly consolePage: SharedArrayBuffer;
}

/** Messages from the host to a domain thread. */
export type HostToDomain =
  | { readonly type: 'domain-added'; readonly domid: number; readonly buffer: SharedArrayBuffer }
  | { readonly type: 'domain-removed'; readonly domid: number };

/** Messages from a domain thread to the host. */
export type DomainToHost =
  | {
      readonly type: 'result';
      readonly value: unknown;
      readonly cpuNs: number;
      readonly cpuSource: string;
      /** ns per stage from `main()` to its return or within the stage window, when instrumented. */
      readonly stagesNs?: readonly number[];
      /** Helper threads the program started (tcp NIC threads), as their owners filed them. */
      readonly threads?: readonly ThreadReport[];
    }
  | { readonly type: 'error'; readonly error: { code: string; message: string; stack?: string } };

async function run(): Promise<void> {
  const data = workerData as DomainWorkerData;
  const port = parentPort;
  if (!port) throw new Error('DomainWorker must run in a worker thread');
  const domid: DomId = domId(data.domid);
  // The console ring, as a Xen guest's hvc console: env.log and the thread's console.* write to it.
  const consoleRing = new ConsoleWriter(data.consolePage);
  const encoder = new TextEncoder();
  const writeConsole = (text: string): void => {
    consoleRing.write(encoder.encode(text));
  };
  const toConsole = (...args: unknown[]): void => writeConsole(`${format(...args)}\r\n`);
  console.log = toConsole;
  console.info = toConsole;
  console.warn = toConsole;
  console.error = toConsole;
  console.debug = toConsole;
  const memory = new SharedArrayGuestMemory(domid, data.memory);
  const directory = new MemoryDirectory();
  directory.addMemory(memory);
  for (const p of data.peers) directory.add(domId(p.domid), p.buffer);
  // Monitor: this thread's TID (the host reads its CPU time) and its counters in the host's buffer.
  const monitorSpace = data.monitorBuffer === undefined ? undefined : new MonitorSpace(data.monitorBuffer);
  monitorSpace?.setTid(domid, currentTid());
  const monitorCounters = monitorSpace?.domainCounters(domid);
  const monitor = monitorSpace === undefined ? undefined : new SimMonitorOps(domid, monitorSpace);
  const evtchn = new SimEvtchnOps(domid, new EvtchnSpace(data.evtchnBuffer, data.evtchnConfig), monitorCounters);

  port.on('message', (msg: HostToDomain) => {
    if (msg.type === 'domain-added') {
      // A reused domid arrives with a new buffer: drop any stale entry first.
      directory.remove(domId(msg.domid));
      directory.add(domId(msg.domid), msg.buffer);
    } else if (msg.type === 'domain-removed') {
      directory.remove(domId(msg.domid));
    }
  });

  const devices = attachDevices(data.devices, directory);
  const hypercalls: Hypercalls = {
    domid,
    memory,
    grant: new SimGrantOps(domid, new GrantTableSpace(data.grantBuffer, data.grantConfig), directory, {
      devices: devices.iommus,
      deviceDmaBase: devices.dmaBases,
      monitor: monitorCounters,
    }),
    evtchn,
    store: new StoreClient(data.storePort),
    monitor,
    // Privileged (dom0) only: a guest's hypercalls carry no way into another guest's memory.
    foreign: SimForeignOps.forDomain(domid, directory, { devices: devices.iommus, deviceDmaBase: devices.dmaBases }),
  };
  const env: DomainEnv = {
    domid,
    name: data.name,
    hypercalls,
    devices: devices.attachments,
    args: data.args,
    log(line: string): void {
      writeConsole(`${line}\r\n`);
    },
  };

  // Once the program has returned, the store port is closed below and requests it left behind
  // (an unwatch it did not await) reject: expected, and not a failure of the finished domain.
  let finished = false;
  process.on('unhandledRejection', (reason) => {
    if (!finished) throw reason;
  });
  const start = threadCpuTime();
  try {
    const mod = (await import(data.program)) as { default?: DomainMain; main?: DomainMain };
    const main = mod.default ?? mod.main;
    if (typeof main !== 'function') {
      throw new Error(`program ${data.program} has no default export or main() to run`);
    }
    // Stage ledger on from here: the program's module is loaded (compiling it is not a stage of
    // any message), its `main` is what runs. HOME is this domain's own work (frontend in a guest,
    // backend in the driver domain); event-loop idle (awaiting the store) is folded into IDLE.
    if (data.stageWindow !== undefined) {
      stages.enable(Stage.HOME, {
        loopIdleMs: () => performance.eventLoopUtilization().idle,
        window: data.stageWindow,
      });
    }
    const value = await main(env);
    const stagesNs = stages.enabled ? stages.snapshot() : undefined;
    const end = threadCpuTime();
    const threads = takeThreadReports();
    port.postMessage({
      type: 'result',
      value,
      cpuNs: end.ns - start.ns,
      cpuSource: end.source,
      stagesNs,
      threads: threads.length > 0 ? threads : undefined,
    } satisfies DomainToHost);
  } catch (err) {
    const wire = toWireError(err);
    port.postMessage({
      type: 'error',
      error: { ...wire, stack: err instanceof Error ? err.stack : undefined },
    } satisfies DomainToHost);
  } finally {
    finished = true;
    // The store port keeps the thread alive; close it so the worker can exit.
    data.storePort.close();
    port.close();
  }
}

void run();
