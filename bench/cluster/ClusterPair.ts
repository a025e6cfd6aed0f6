/**
 * The controller's half of a cross-host perftest cell: ask one host for the server side and
 * another for the client side at the same time (`perftest-cell`, ClusterCell.ts), then turn the
 * client's raw samples into perftest's statistics exactly as a single-process cell does
 * (bench/compare/CellWorker.ts), so the two can be printed side by side.
 */

import type { ControlClient } from '../../hypervisor-sim/hostd/ControlClient.js';
import type { Transport } from '../../protocol/Pci.js';
import { cellMemoryMiB, perftestCqMod } from '../compare/Matrix.js';
import { bandwidthFromCompletions, rttFactor } from '../perftest/Stats.js';
import type { PerftestArgs, PerftestResult, PerftestTestName } from '../programs/PerftestGuest.js';
import { type Summary, summarize } from '../stats/Summary.js';
import type { ClusterCellResult } from './ClusterCell.js';

/** One cross-host pair run. */
export interface PairOptions {
  readonly transport: Transport;
  readonly test: PerftestTestName;
  readonly size: number;
  readonly iters: number;
  readonly txDepth?: number;
  readonly timeoutMs?: number;
  /** Polls a guest waiter makes before it sleeps (perftest guest default when undefined). */
  readonly spinBudget?: number;
}

/** What a pair run gives. */
export interface PairResult {
  readonly serverHost: string;
  readonly clientHost: string;
  readonly iters: number;
  /** Latency tests: µs (half round trip for WRITE/SEND, round trip for READ), perftest's way. */
  readonly medianUs: number;
  readonly usec?: Summary;
  /** Bandwidth tests. */
  readonly avgMiBps?: number;
  readonly peakMiBps?: number;
  readonly mpps?: number;
  readonly cpuNs: {
    readonly client: number;
    readonly server: number;
    readonly clientDom0: number;
    readonly serverDom0: number;
  };
  readonly elapsedMs: number;
}

/** Runs `o` with the server on `server`'s host and the client on `client`'s. */
export async function runClusterPair(
  server: ControlClient,
  client: ControlClient,
  o: PairOptions,
): Promise<PairResult> {
  const txDepth = o.txDepth ?? (o.test.endsWith('_bw') ? 128 : 1);
  const perftest: PerftestArgs = {
    test: o.test,
    size: o.size,
    iters: o.iters,
    txDepth,
    cqMod: perftestCqMod(o.test.endsWith('_bw') ? 'bw' : 'lat', o.size, txDepth),
    inlineSize: 0,
    spinBudget: o.spinBudget,
    tag: `x-${o.transport}-${o.test}-${o.size}`,
  };
  const memoryMiB = cellMemoryMiB(o.size);
  const side = (role: 'server' | 'client', peerHost: string, c: ControlClient) =>
    c.call<ClusterCellResult>(
      'perftest-cell',
      { role, peerHost, transport: o.transport, perftest, memoryMiB, timeoutMs: o.timeoutMs ?? 120_000 },
      (o.timeoutMs ?? 120_000) + 10_000,
    );
  const [s, c] = await Promise.all([side('server', client.host, server), side('client', server.host, client)]);
  const r = c.value as PerftestResult;
  const cpuNs = { client: c.cpuNs.guest, server: s.cpuNs.guest, clientDom0: c.cpuNs.dom0, serverDom0: s.cpuNs.dom0 };
  const base = { serverHost: server.host, clientHost: client.host, iters: o.iters, cpuNs, elapsedMs: c.elapsedMs };
  if (o.test.endsWith('_lat')) {
    const factor = rttFactor(o.test.split('_')[0] as 'write' | 'read' | 'send');
    const samples = r.rttUs ?? [];
    const usec = summarize(samples.map((x) => x / factor));
    return { ...base, medianUs: usec.median, usec };
  }
  const bw = bandwidthFromCompletions({
    size: o.size,
    ticksPerSec: 1000,
    tposted: r.tposted ?? [],
    tcompleted: r.tcompleted ?? [],
    cqMod: perftest.cqMod ?? 1,
  });
  return { ...base, medianUs: Number.NaN, avgMiBps: bw.bwAvg, peakMiBps: bw.bwPeak, mpps: bw.msgRateMpps };
}
