/**
 * Ring micro-benchmarks over the real Worker path (issue 2): a guest domain and the "io"
 * backend in dom0, connected by the xenbus handshake, exchanging 64-byte slots through a
 * granted ring with event-channel notifies — and the same two measurements over a split and a
 * packed virtqueue (issue 10, bench/ring/VirtioRing.ts: guest and device Workers over virtio-mmio,
 * EVENT_IDX, the same spin budget). Printed beside the raw floors measured in the same run: two
 * Workers handing one Int32 back and forth, spinning and with `Atomics.wait`/`notify`.
 *
 *   npm run bench            (defaults)
 *   pvio ring-bench --pingpong 20000 --throughput 1000000 --spin 1000 --transports xen,split --json
 */

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Host } from '../hypervisor-sim/domain/Host.js';
import { pvError } from '../protocol/errors.js';
import { measureHandoff } from './floor/Floor.js';
import { runVirtioRing, type VirtioRun, type VirtqKind } from './ring/VirtioRing.js';
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

/** The transports `--transports` may name, in printing order. */
export const RING_TRANSPORTS = ['xen', 'split', 'packed'] as const;
/** One of them: the Xen granted ring, or a split / packed virtqueue. */
export type RingTransport = (typeof RING_TRANSPORTS)[number];

/** Parsed `pvio ring-bench` arguments. */
export interface RingBenchArgs {
  readonly pingpong: number;
  readonly throughput: number;
  readonly spin: number;
  readonly json: boolean;
  /** Distinct, in RING_TRANSPORTS order. */
  readonly transports: readonly RingTransport[];
}

function count(raw: string, flag: string, min: number): number {
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw pvError('PV_ERR_INVALID_ARG', `--${flag} takes an integer ≥ ${min}, got '${raw}'`);
  }
  return n;
}

/** Parses the command line; an unknown option or transport is PV_ERR_INVALID_ARG naming it. */
export function parseRingBenchArgs(argv: string[]): RingBenchArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      pingpong: { type: 'string', default: '20000' },
      throughput: { type: 'string', default: '1000000' },
      spin: { type: 'string', default: '1000' },
      transports: { type: 'string', default: RING_TRANSPORTS.join(',') },
      json: { type: 'boolean', default: false },
    },
  });
  const names = values.transports.split(',').map((t) => t.trim());
  for (const t of names) {
    if (!(RING_TRANSPORTS as readonly string[]).includes(t)) {
      throw pvError(
        'PV_ERR_INVALID_ARG',
        `--transports: unknown transport '${t}' (choose from ${RING_TRANSPORTS.join(', ')})`,
      );
    }
  }
  return {
    pingpong: count(values.pingpong, 'pingpong', 1),
    throughput: count(values.throughput, 'throughput', 1),
    spin: count(values.spin, 'spin', 0),
    json: values.json,
    transports: RING_TRANSPORTS.filter((t) => names.includes(t)),
  };
}

/** One transport's two measurements, in the form the Xen ring reports them. */
interface TransportResult {
  readonly pingpong: Summary;
  readonly rate: number;
  /** Requests of the throughput run, and how many notified the other side (notifies / kicks). */
  readonly requests: number;
  readonly notifies: number;
  /**
   * Guest sleeps in the throughput run: waits entered with notification armed. The Xen frontend
   * arms rsp_event and then spins on its wake word inside the wait; the virtio guest polls the
   * used ring with interrupts suppressed for the same budget and only then arms and waits.
   */
  readonly sleeps: number;
  /** virtio only: interrupts raised, device doorbell sleeps, publishes (avail.idx stores). */
  readonly interrupts?: number;
  readonly deviceSleeps?: number;
  readonly publishes?: number;
}

/** Fails the run if a virtio run lost, duplicated or corrupted a request (a fast wrong answer is not a figure). */
function checked(r: VirtioRun, count: number): VirtioRun {
  const g = r.guest;
  if (g.completed !== count || g.distinct !== count || g.badData !== 0 || r.device.served !== count) {
    throw pvError(
      'PV_ERR_BAD_REQUEST',
      `${r.kind} virtqueue: ${g.completed} answers, ${g.distinct} distinct, ${g.badData} bad, ${r.device.served} served of ${count}`,
    );
  }
  return r;
}

async function runTransport(t: RingTransport, a: RingBenchArgs, log: (l: string) => void): Promise<TransportResult> {
  const label = t === 'xen' ? 'ring' : `${t} virtqueue`;
  log(`measuring ${label} ping-pong…`);
  if (t === 'xen') {
    const pp = await runRing('pingpong', a.pingpong, a.spin);
    log(`measuring ${label} throughput…`);
    const tp = await runRing('throughput', a.throughput, a.spin);
    const c = tp.counters;
    return {
      pingpong: summarize(pp.samples ?? []),
      rate: tp.rate,
      requests: c.requests,
      notifies: c.notifies,
      sleeps: tp.sleeps,
    };
  }
  const kind: VirtqKind = t;
  const pp = checked(await runVirtioRing(kind, 'pingpong', a.pingpong, a.spin), a.pingpong);
  log(`measuring ${label} throughput…`);
  const tp = checked(await runVirtioRing(kind, 'throughput', a.throughput, a.spin), a.throughput);
  return {
    pingpong: summarize(pp.guest.samples ?? []),
    rate: tp.guest.rate,
    requests: tp.guest.completed,
    notifies: tp.guest.kicks,
    sleeps: tp.guest.sleeps,
    interrupts: tp.device.interrupts,
    deviceSleeps: tp.device.sleeps,
    publishes: tp.guest.publishes,
  };
}

const pct = (n: number, of: number): string => `${((100 * n) / of).toFixed(1)}%`;

/** Runs the ring benchmark with command-line style arguments. */
export async function ringBenchMain(argv: string[]): Promise<void> {
  const a = parseRingBenchArgs(argv);
  const spin = a.spin;
  const log = (line: string): void => {
    if (!a.json) process.stdout.write(`${line}\n`);
  };
  log(`pvio ring bench — ${process.version}, ${(await import('node:os')).cpus().length} cores, spin budget ${spin}`);
  log('measuring floors…');
  const spinFloor = await measureHandoff('spin');
  const waitFloor = await measureHandoff('wait');
  const runs = new Map<RingTransport, TransportResult>();
  for (const t of a.transports) runs.set(t, await runTransport(t, a, log));

  if (a.json) {
    const xen = runs.get('xen');
    const transports = Object.fromEntries(runs);
    // The top-level pingpong/throughput stay the Xen ring's, as before the virtio rows existed.
    const top = xen === undefined ? {} : { pingpong: xen.pingpong, throughput: xen.rate };
    process.stdout.write(`${JSON.stringify({ spinFloor, waitFloor, ...top, spin, transports }, null, 2)}\n`);
    return;
  }
  log('');
  log(`${'round trip (µs)'.padEnd(34)}${'median'.padStart(9)}${'p99'.padStart(9)}${'× spin'.padStart(10)}`);
  log(row('floor: Int32 hand-off, spinning', spinFloor, spinFloor.median));
  log(row('floor: Int32 hand-off, wait/notify', waitFloor, spinFloor.median));
  for (const [t, r] of runs) {
    const name = t === 'xen' ? 'ring: 64 B request → response' : `virtio ${t}: 64 B req → rsp`;
    log(row(name, r.pingpong, spinFloor.median));
  }
  const floorRate = 1e6 / spinFloor.median;
  for (const [t, r] of runs) {
    log('');
    const label = t === 'xen' ? 'ring' : `virtio ${t}`;
    log(
      `${label} throughput: ${(r.rate / 1e6).toFixed(3)} M req/s (${fmt(r.rate / floorRate)}× the spinning hand-off rate)`,
    );
    if (t === 'xen') {
      log(`notifies: ${r.notifies} of ${r.requests} pushes (${pct(r.notifies, r.requests)}), guest sleeps ${r.sleeps}`);
    } else {
      log(
        `kicks: ${r.notifies} of ${r.requests} requests (${pct(r.notifies, r.requests)}) in ${r.publishes} publishes, ` +
          `interrupts ${r.interrupts} (${pct(r.interrupts ?? 0, r.requests)}), guest sleeps ${r.sleeps}, device sleeps ${r.deviceSleeps}`,
      );
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await ringBenchMain(process.argv.slice(2));
}
