/**
 * `pvio write_lat` and `pvio write_bw`: ib_write_lat / ib_write_bw work-alikes (issue 4, first
 * step). Flags are perftest's (Flags.ts), statistics are perftest's (Stats.ts), and the text and
 * JSON are perftest's byte for byte (Report.ts); each (mode, size) runs PerftestGuest in a fresh
 * two-guest scenario — simple, and affordable enough for -a for now.
 *
 *   pvio write_lat [-s SIZE | -a] [-n ITERS] [--mode paravirt,passthrough,...] [--output=latency] [--out_json]
 *   pvio write_bw  [-s SIZE | -a] [-n ITERS] [-t TXDEPTH] [-Q CQMOD] [--report_gbits] [--output=bandwidth|message_rate]
 */

import { writeFileSync } from 'node:fs';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import { pvError } from '../../protocol/errors.js';
import { MAX_INLINE_DATA } from '../../protocol/rdma/Wqe.js';
import type { PerftestArgs, PerftestResult } from '../programs/PerftestGuest.js';
import { type PerftestConfig, type PvioMode, parsePerftestFlags } from './Flags.js';
import {
  formatBwRow,
  formatHeader,
  formatJson,
  formatLatencyRow,
  formatOutputValue,
  formatTestInfo,
  type LatencyRowJson,
  RESULT_LINE,
  type TestInfo,
} from './Report.js';
import { type BwStats, bandwidthFromCompletions, latencyFromSamples, rttFactor } from './Stats.js';

const PROGRAM = new URL('../programs/PerftestGuest.js', import.meta.url);

/** The perftest binaries pvio imitates so far. */
export type PerftestVerb = 'write_lat' | 'write_bw';

/** The device a guest of a mode opens: the NIC (nic0 server, nic1 client), or tcp0 for tcp. */
export function deviceName(mode: PvioMode, index: 0 | 1): string {
  return mode === 'tcp' ? 'tcp0' : `nic${index}`;
}

async function runOne(cfg: PerftestConfig, mode: PvioMode, size: number): Promise<PerftestResult> {
  const args: PerftestArgs = {
    test: cfg.test.kind === 'lat' ? 'write_lat' : 'write_bw',
    size,
    iters: cfg.iters,
    txDepth: cfg.txDepth,
    cqMod: cfg.cqMod,
    inlineSize: inlineUsed(cfg),
    tag: `${mode}-${size}`,
  };
  // Two halves of the message buffer per guest, plus room for rings and the program.
  const memoryMiB = Math.max(32, Math.ceil((4 * size) / (1 << 20)) + 16);
  const guest = (name: string, i: 0 | 1) => ({
    name,
    program: PROGRAM,
    memoryMiB,
    args: args as unknown as Record<string, unknown>,
    devices: [{ device: deviceName(mode, i), transport: mode }],
  });
  const r = await runScenario({
    host: { deviceEngine: cfg.deviceEngine },
    guests: [guest('server', 0), guest('client', 1)],
  });
  return r.guests.client.value as PerftestResult;
}

function testInfo(cfg: PerftestConfig, mode: PvioMode): TestInfo {
  return {
    verb: 'write',
    kind: cfg.test.kind,
    device: deviceName(mode, 1),
    transport: mode,
    txDepth: cfg.txDepth,
    cqMod: cfg.cqMod,
    inlineSize: inlineUsed(cfg),
  };
}

/**
 * Inline bytes actually used: perftest's -I (default 220 for write) capped at what pvio's send
 * WQE can carry (MAX_INLINE_DATA), so the banner reports what really happens.
 */
function inlineUsed(cfg: PerftestConfig): number {
  return Math.min(cfg.inlineSize, MAX_INLINE_DATA);
}

/** Runs `pvio write_lat|write_bw` with perftest-style argv (without node, script and verb). */
export async function perftestMain(verb: PerftestVerb, argv: string[]): Promise<void> {
  const kind = verb === 'write_lat' ? 'lat' : 'bw';
  const cfg = parsePerftestFlags(argv, { verb: 'write', kind });
  if (cfg.duration !== undefined) {
    throw pvError('PV_ERR_NOT_SUPPORTED', 'duration mode (-D) is not supported by pvio yet; use -n');
  }
  const full = cfg.output === 'full';
  const progress = process.stdout.isTTY === true;
  const out = (s: string) => process.stdout.write(s);
  const jsonDocs: string[] = [];

  for (const mode of cfg.modes) {
    const info = testInfo(cfg, mode);
    if (full) out(formatTestInfo(info) + formatHeader(kind, cfg.reportGbits));
    const rows: Array<LatencyRowJson | BwStats> = [];
    for (const size of cfg.sizes) {
      if (progress) process.stderr.write(`pvio ${verb}: ${mode} ${size} B x ${cfg.iters}...\n`);
      const r = await runOne(cfg, mode, size);
      if (kind === 'lat') {
        // Samples are round trips in µs; perftest reports half of each (rtt_factor 2 for write).
        const stats = latencyFromSamples(r.rttUs ?? [], { ticksPerUsec: 1, rttFactor: rttFactor('write') });
        rows.push({ size, iters: cfg.iters, stats });
        out(full ? formatLatencyRow(size, cfg.iters, stats) : formatOutputValue(cfg.output as 'latency', stats));
      } else {
        if (!r.tposted || !r.tcompleted) throw pvError('PV_ERR_BAD_REQUEST', 'write_bw guest returned no timestamps');
        const stats = bandwidthFromCompletions({
          size,
          ticksPerSec: 1000, // performance.now() milliseconds
          unit: cfg.reportGbits ? 'Gb' : 'MiB',
          tposted: r.tposted,
          tcompleted: r.tcompleted,
          cqMod: cfg.cqMod,
        });
        rows.push(stats);
        out(full ? formatBwRow(stats) : formatOutputValue(cfg.output as 'bandwidth', stats));
      }
    }
    if (full) out(RESULT_LINE);
    if (cfg.outJson) jsonDocs.push(formatJson(info, rows));
  }
  if (cfg.outJson) {
    // One mode: perftest's document. Several: one document per mode, in an array.
    const docs = jsonDocs.map((d) => JSON.parse(d) as unknown);
    const text = docs.length === 1 ? jsonDocs[0] : `${JSON.stringify(docs, null, 2)}\n`;
    writeFileSync(cfg.outJsonFile, text);
  }
}
