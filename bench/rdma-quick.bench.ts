/**
 * Quick per-transport RDMA figures from ONE run (issue 3's closing figure; the full perftest CLI
 * and comparison matrix build on the same guest program): 64 B RDMA WRITE ping-pong latency
 * (half round trip, as ib_write_lat reports) and 4 MiB RDMA WRITE bandwidth, for each transport,
 * beside the in-run floors (thread hand-off round trip; SharedArrayBuffer memcpy bandwidth).
 *
 *   pvio quick [--lat-iters N] [--bw-iters N] [--transports a,b]      (npm start runs it)
 */

import { cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runScenario } from '../hypervisor-sim/scenario/Scenario.js';
import type { Transport } from '../protocol/Pci.js';
import { measureHandoff, measureMemcpy } from './floor/Floor.js';
import type { PerftestResult } from './programs/PerftestGuest.js';
import { summarize } from './stats/Summary.js';

const PROGRAM = new URL('./programs/PerftestGuest.js', import.meta.url);

async function run(transport: Transport, args: Record<string, unknown>): Promise<PerftestResult> {
  const dev = (i: number) => (transport === 'tcp' ? 'tcp0' : `nic${i}`);
  const r = await runScenario({
    guests: [
      { name: 'server', program: PROGRAM, memoryMiB: 32, args, devices: [{ device: dev(0), transport }] },
      { name: 'client', program: PROGRAM, memoryMiB: 32, args, devices: [{ device: dev(1), transport }] },
    ],
  });
  return r.guests.client.value as PerftestResult;
}

/** Runs the quick comparison with command-line style arguments. */
export async function quickMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'lat-iters': { type: 'string', default: '5000' },
      'bw-iters': { type: 'string', default: '200' },
      transports: { type: 'string', default: 'native,passthrough,paravirt,paravirt-copy,tcp' },
    },
  });
  const latIters = Number(values['lat-iters']);
  const bwIters = Number(values['bw-iters']);
  const transports = values.transports.split(',') as Transport[];

  process.stdout.write(
    `pvio quick RDMA figures — ${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores, ${process.version}\n`,
  );
  const spin = await measureHandoff('spin');
  const memcpy = measureMemcpy(4 << 20);
  process.stdout.write(
    `floors: thread hand-off round trip ${spin.median.toFixed(2)} µs (half ${(spin.median / 2).toFixed(2)}); memcpy 4 MiB ${memcpy.toFixed(0)} MiB/s\n\n`,
  );
  process.stdout.write(
    `${'transport'.padEnd(15)}${'64B lat med'.padStart(12)}${'p99'.padStart(9)}${'× floor'.padStart(9)}${'4MiB BW MiB/s'.padStart(15)}${'× memcpy'.padStart(10)}\n`,
  );
  for (const t of transports) {
    const lat = await run(t, { test: 'write_lat', size: 64, iters: latIters });
    const s = summarize((lat.rttUs ?? []).map((x) => x / 2));
    const bw = await run(t, { test: 'write_bw', size: 4 << 20, iters: bwIters, txDepth: 16 });
    const mibs = ((4 << 20) * bwIters) / (bw.seconds ?? 1) / (1 << 20);
    process.stdout.write(
      `${t.padEnd(15)}${s.median.toFixed(2).padStart(12)}${s.p99.toFixed(2).padStart(9)}${(s.median / (spin.median / 2)).toFixed(1).padStart(9)}${mibs.toFixed(0).padStart(15)}${(mibs / memcpy).toFixed(2).padStart(10)}\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await quickMain(process.argv.slice(2));
}
