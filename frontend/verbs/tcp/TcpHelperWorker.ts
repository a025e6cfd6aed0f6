/**
 * The software NIC thread of one tcp provider (siw's kernel thread): a Worker that receives the
 * guest's memory buffer and the control block, runs a `SoftNic` on its own event loop (sockets
 * are asynchronous, verbs are not — hence a thread of its own), and tells the provider its port.
 *
 * Messages: provider → helper `{ type: 'close' }`; helper → provider `{ type: 'ready', port }`,
 * `{ type: 'log', line }` (rate-limited: a hostile peer cannot flood the log, XSA-43) and
 * `{ type: 'closed', cpuNs, stagesNs? }` (what this thread spent, for the scenario's
 * `deviceThreads`). After 'closed' the thread exits once its sockets are gone.
 *
 * Stage ledger (when the guest's is on): this thread is the NIC, so its default stage is DEVICE;
 * socket writes are FABRIC (TxSlab.ts); waiting on the bell and for sockets is event-loop idle,
 * folded into IDLE. The receive syscalls run in libuv before a 'data' callback, outside any JS
 * section, so they cannot be told apart from the NIC's own work and stay in DEVICE.
 */

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
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
  /** Run this thread's stage ledger (the guest's is on: an instrumented run). */
  readonly instrumentStages?: boolean;
  /** The stage window the guest's ledger follows (the host's). */
  readonly stageWindow?: SharedArrayBuffer;
}

/** Messages from the helper. */
export type TcpHelperMessage =
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'log'; readonly line: string }
  | {
      readonly type: 'closed';
      /** CPU time of this thread since it started, ns; -1 where schedstat is missing. */
      readonly cpuNs: number;
      /** ns per stage (base DEVICE) when instrumented. */
      readonly stagesNs?: readonly number[];
    };

/**
 * This thread's CPU time in ns from `/proc/thread-self/schedstat`, or -1 off Linux. (The same
 * reading as hypervisor-sim's CpuClock, which frontend/ may not import.)
 */
function threadCpuNs(): number {
  try {
    const ns = Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ', 1)[0]);
    return Number.isFinite(ns) ? ns : -1;
  } catch {
    return -1;
  }
}

/** Log lines per second before lines are dropped (and counted). */
const LOG_PER_SECOND = 50;

function main(data: TcpHelperData): void {
  const port = parentPort;
  if (!port) return;
  const cpu0 = threadCpuNs();
  if (data.instrumentStages === true) {
    stages.enable(Stage.DEVICE, {
      loopIdleMs: () => performance.eventLoopUtilization().idle,
      window: data.stageWindow,
    });
  }
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
    const cpu1 = threadCpuNs();
    const cpuNs = cpu0 < 0 || cpu1 < 0 ? -1 : cpu1 - cpu0;
    const stagesNs = stages.enabled ? stages.snapshot() : undefined;
    port.postMessage({ type: 'closed', cpuNs, stagesNs } satisfies TcpHelperMessage);
    // Let the thread end once the sockets are closed (nothing else keeps it alive).
    port.unref();
  });
  nic.start().then(
    (p) => port.postMessage({ type: 'ready', port: p } satisfies TcpHelperMessage),
    (err: Error) => log(`cannot listen: ${err.message}`),
  );
}

if (!isMainThread) main(workerData as TcpHelperData);
