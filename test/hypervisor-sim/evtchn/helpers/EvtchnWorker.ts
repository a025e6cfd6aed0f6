/**
 * Worker side of the cross-thread event-channel tests: attaches to the host's EvtchnSpace as
 * one domain and either sleeps once for an event ('wake') or plays ping-pong ('pingpong').
 * Every wait has a finite timeout, so a lost wake-up is reported instead of hanging the test.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { EvtchnSpace, type EvtchnSpaceConfig } from '../../../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { SimEvtchnOps } from '../../../../hypervisor-sim/evtchn/SimEvtchnOps.js';
import type { WaitOptions } from '../../../../protocol/Hypercalls.js';
import type { DomId, EvtchnPort } from '../../../../protocol/Types.js';

/** What the test passes in `workerData`. */
export interface EvtchnWorkerData {
  readonly mode: 'wake' | 'pingpong';
  readonly buffer: SharedArrayBuffer;
  readonly config: EvtchnSpaceConfig;
  readonly domid: number;
  /** The worker domain's end of the channel. */
  readonly port: number;
  /** Ping-pong rounds (each: wait for the peer's event, then notify back). */
  readonly rounds: number;
  readonly wait: WaitOptions;
}

/** Messages the worker posts. */
export type EvtchnWorkerReport =
  | { readonly type: 'ready' }
  | { readonly type: 'woken'; readonly woken: boolean; readonly pending: boolean }
  | { readonly type: 'lost'; readonly round: number }
  | { readonly type: 'done'; readonly rounds: number; readonly counters: Record<string, number> };

/**
 * Waits until `port` is pending and clears it, the way a ring handler does: snapshot the wake
 * word, then test the port, then sleep on the snapshot (so a notify between the test and the
 * sleep changes the word and the sleep returns at once). False if `opts.timeoutMs` passed
 * in one sleep without an event: a lost wake-up.
 */
export function awaitEvent(ops: SimEvtchnOps, port: EvtchnPort, opts: WaitOptions): boolean {
  for (;;) {
    const snapshot = ops.wakeSnapshot();
    if (ops.testAndClearPending(port)) return true;
    if (!ops.waitForEvent(snapshot, opts)) return ops.testAndClearPending(port);
  }
}

function main(data: EvtchnWorkerData, post: (m: EvtchnWorkerReport) => void): void {
  const ops = new SimEvtchnOps(data.domid as DomId, new EvtchnSpace(data.buffer, data.config));
  const port = data.port as EvtchnPort;
  if (data.mode === 'wake') {
    const snapshot = ops.wakeSnapshot();
    post({ type: 'ready' });
    const woken = ops.waitForEvent(snapshot, data.wait);
    post({ type: 'woken', woken, pending: ops.testAndClearPending(port) });
    return;
  }
  post({ type: 'ready' });
  for (let round = 0; round < data.rounds; round++) {
    if (!awaitEvent(ops, port, data.wait)) {
      post({ type: 'lost', round });
      return;
    }
    ops.notify(port);
  }
  post({ type: 'done', rounds: data.rounds, counters: ops.counters.snapshot() });
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  main(workerData as EvtchnWorkerData, (m) => port.postMessage(m));
}
