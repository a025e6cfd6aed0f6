/**
 * Ring micro-benchmarks over the real Worker path (issue 2): a guest domain and the "io"
 * backend in dom0, connected by the xenbus handshake, exchanging 64-byte slots through a
 * granted ring with event-channel notifies. Printed beside the raw floors measured in the same
 * run: two Workers handing one Int32 back and forth, spinning and with `Atomics.wait`/`notify`.
 *
 *   npm run bench            (defaults)
 *   pvio ring-bench --pingpong 20000 --throughput 1000000 --spin 1000 --json
 */

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Host } from '../hypervisor-sim/domain/Host.js';
import { measureHandoff } from './floor/Floor.js';
import { type Summary, summarize } from './stats/Summary.js';

const BACKEND = new URL('../backend/io/IoBackendProgram.js', import.meta.url);
const FRONTEND = new URL('../frontend/io/IoFrontendProgram.js', import.meta.url);

interface RingRun {
  readonly rate: number;
  readonly samples?: number[];
  readonly counters: { requests: number; notifies: number; suppressed: number };
  readonly sleeps: number;
}

async function runRing(mode: 'pingpong' | 'throughput', count: number, spinBudget: number): Promise<RingRun> {
  const host = new Host({ name: 'bench' });
  try {
    const dom0 = host.createDomain({ name: 'dom0', program: BACKEND, args: { spinBudget } });
    const guest = host.createDomain({
      name: 'guest',
      program: FRONTEND,
      args: { mode, count, spinBudget, payload: mode === 'pingpong' ? 0 : 64 },
    });
    await host.addDevice({ type: 'io', devid: 0, frontDomid: guest.domid, backDomid: dom0.domid });
    const r = (await guest.result).value as RingRun;
    await host.shutdownDomain(dom0.domid);
    return r;
  } finally {
    await host.shutdown();
  }
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

function row(name: string, s: Summary, floor: number): string {
  return `${name.padEnd(34)}${fmt(s.median).padStart(9)}${fmt(s.p99).padStart(9)}${fmt(s.median / floor).padStart(10)}`;
}

/** Runs the ring benchmark with command-line style arguments. */
export async function ringBenchMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      pingpong: { type: 'string', default: '20000' },
      throughput: { type: 'string', default: '1000000' },
      spin: { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
    },
  });
  const spin = Number(values.spin);
  const log = (line: string): void => {
    if (!values.json) process.stdout.write(`${line}\n`);
  };
  log(`pvio ring bench — ${process.version}, ${(await import('node:os')).cpus().length} cores, spin budget ${spin}`);
  log('measuring floors…');
  const spinFloor = await measureHandoff('spin');
  const waitFloor = await measureHandoff('wait');
  log('measuring ring ping-pong…');
  const pp = await runRing('pingpong', Number(values.pingpong), spin);
  const ppSummary = summarize(pp.samples ?? []);
  log('measuring ring throughput…');
  const tp = await runRing('throughput', Number(values.throughput), spin);

  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ spinFloor, waitFloor, pingpong: ppSummary, throughput: tp.rate, spin }, null, 2)}\n`,
    );
    return;
  }
  log('');
  log(`${'round trip (µs)'.padEnd(34)}${'median'.padStart(9)}${'p99'.padStart(9)}${'× spin'.padStart(10)}`);
  log(row('floor: Int32 hand-off, spinning', spinFloor, spinFloor.median));
  log(row('floor: Int32 hand-off, wait/notify', waitFloor, spinFloor.median));
  log(row('ring: 64 B request → response', ppSummary, spinFloor.median));
  log('');
  const floorRate = 1e6 / spinFloor.median;
  log(
    `ring throughput: ${(tp.rate / 1e6).toFixed(3)} M req/s (${fmt(tp.rate / floorRate)}× the spinning hand-off rate)`,
  );
  log(
    `notifies: ${tp.counters.notifies} of ${tp.counters.requests} pushes (${((100 * tp.counters.notifies) / tp.counters.requests).toFixed(1)}%), guest sleeps ${tp.sleeps}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await ringBenchMain(process.argv.slice(2));
}
