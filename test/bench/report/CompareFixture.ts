/**
 * A hand-made `pvio compare` run for the report tests: three transports, two sizes per kind, one
 * failed cell (paravirt write_bw 64K), one cell that never ran (passthrough write_lat 4K) and a
 * per-stage breakdown. The numbers are shaped like a 2-core run on the ideal fabric, and the
 * paravirt/native write_lat 2 B pair is 10 µs vs 2 µs so ratios have a known answer.
 */

import type { CellResult, CompareResults, CompareTransport, DomainCpu } from '../../../bench/compare/Results.js';
import { RESULTS_SCHEMA } from '../../../bench/compare/Results.js';
import type { Summary } from '../../../bench/stats/Summary.js';

/** A latency summary with the given median and p99 (the rest derived so it stays consistent). */
export function summary(median: number, p99: number): Summary {
  return { n: 1000, min: median * 0.8, max: p99 * 1.5, mean: median * 1.05, median, p99, p999: p99 * 1.2, stdev: 0.1 };
}

function cpu(client: number, server: number, dom0?: number): DomainCpu[] {
  const msgs = 1000;
  const list = [
    { domain: 'client', cpuNs: client * msgs, nsPerMsg: client },
    { domain: 'server', cpuNs: server * msgs, nsPerMsg: server },
  ];
  if (dom0 !== undefined) list.push({ domain: 'dom0', cpuNs: dom0 * msgs, nsPerMsg: dom0 });
  return list;
}

function lat(transport: CompareTransport, size: number, median: number, p99: number, c: DomainCpu[]): CellResult {
  return {
    transport,
    op: 'write',
    kind: 'lat',
    size,
    lat: { iters: 1000, usec: summary(median, p99), tTypical: median },
    cpu: c,
    elapsedMs: 180,
  };
}

function bw(transport: CompareTransport, size: number, avgMiBps: number, c: DomainCpu[]): CellResult {
  const mpps = (avgMiBps * 2 ** 20) / size / 1e6;
  return {
    transport,
    op: 'write',
    kind: 'bw',
    size,
    bw: { iters: 5000, txDepth: 128, avgMiBps, peakMiBps: avgMiBps * 1.1, mpps, seconds: 0.25 },
    cpu: c,
    elapsedMs: 420,
  };
}

/** The paravirt write_bw 64K cell's failure. */
export const FAILED_ERROR = { code: 'PV_ERR_TIMEOUT', message: 'cell did not finish within 60 s' } as const;

/** A fresh copy of the fixture run (tests may not share mutations). */
export function compareFixture(): CompareResults {
  return {
    schema: RESULTS_SCHEMA,
    command: 'pvio compare --modes native,passthrough,paravirt --sizes 2,4096',
    startedAt: '2025-11-22T18:30:00.000Z',
    durationS: 94.2,
    environment: {
      cpuModel: 'Intel(R) Xeon(R) CPU @ 2.20GHz',
      cores: 2,
      node: 'v20.20.2',
      platform: 'linux x64',
      pvioVersion: '0.1.0',
      fabric: 'ideal',
      spinUs: 10,
      deviceEngine: 'inline',
      concurrency: 1,
      quick: false,
    },
    floors: { handoffSpinRttUs: summary(0.2, 0.9), handoffWaitRttUs: summary(13, 40), memcpyMiBps: 22000 },
    cells: [
      lat('native', 2, 2, 3.5, cpu(2100, 2000)),
      lat('native', 4096, 2.6, 4.1, cpu(2600, 2500)),
      lat('passthrough', 2, 2.2, 3.9, cpu(2300, 2200)),
      lat('paravirt', 2, 10, 25, cpu(5200, 5000, 9800)),
      lat('paravirt', 4096, 11.5, 31, cpu(5600, 5300, 10400)),
      bw('native', 4096, 3100, cpu(900, 300)),
      bw('native', 65536, 9800, cpu(6000, 800)),
      bw('passthrough', 4096, 2900, cpu(950, 320)),
      bw('passthrough', 65536, 9500, cpu(6100, 820)),
      bw('paravirt', 4096, 1200, cpu(2400, 400, 3100)),
      {
        transport: 'paravirt',
        op: 'write',
        kind: 'bw',
        size: 65536,
        cpu: [],
        elapsedMs: 60000,
        error: FAILED_ERROR,
      },
    ],
    breakdown: ['native', 'passthrough', 'paravirt'].map((t, i) => ({
      transport: t as CompareTransport,
      op: 'write',
      kind: 'lat',
      size: 2,
      messages: 2000,
      nsPerMsg: {
        frontend: 1500 + 100 * i,
        'ring+notify': t === 'paravirt' ? 2400 : 0,
        backend: t === 'paravirt' ? 3100 : 0,
        'grant map/copy': t === 'paravirt' ? 450 : 0,
        device: 900,
        fabric: 0,
      },
      cpu: cpu(2100 + 1000 * i, 2000 + 900 * i, t === 'paravirt' ? 9800 : undefined),
    })),
  };
}

/** Width and height from a PNG's IHDR chunk, after checking the 8-byte signature and the chunk type. */
export function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (png.length < 24 || signature.some((b, i) => png[i] !== b)) throw new Error('not a PNG signature');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  // Bytes 8..11: IHDR length (13); 12..15: 'IHDR'; 16..19 width and 20..23 height, big-endian.
  const type = String.fromCharCode(png[12], png[13], png[14], png[15]);
  if (view.getUint32(8) !== 13 || type !== 'IHDR') throw new Error(`first chunk is ${type}, not IHDR`);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}
