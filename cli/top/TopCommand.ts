/**
 * `pvio top [--pid N] [--interval MS] [--sort cpu|id|name|notify] [--once] [--frames N]
 *  [--demo [--seconds N]]`: xentop for pvio. It reads a running pvio process's counters through
 * its monitor socket (hypervisor-sim/monitor/MonitorServer.ts; the newest process unless `--pid`)
 * or, with `--demo`, runs a small live workload in this process (TopDemo.ts) and watches that.
 * On a terminal it is a live dashboard (TopScreen.ts: keys q, s, d, ↑↓; redrawn in place every
 * interval and on resize); otherwise — or with `--once` — it prints the same table as plain
 * lines every interval until the watched run ends (or `--frames` tables were printed).
 */

import { parseArgs } from 'node:util';
import { findMonitors, MonitorClient } from '../../hypervisor-sim/monitor/MonitorServer.js';
import type { MonitorSnapshot } from '../../hypervisor-sim/monitor/Snapshot.js';
import { pvError } from '../../protocol/errors.js';
import { startDemo } from './TopDemo.js';
import { topRows } from './TopRates.js';
import { TopScreen } from './TopScreen.js';
import { renderTop, SORT_KEYS, type SortKey, type TopState } from './TopView.js';

/** Where snapshots come from. */
interface TopSource {
  snapshot(): Promise<MonitorSnapshot>;
  /** Resolves when the watched run is over. */
  readonly ended: Promise<string>;
  close(): void | Promise<void>;
}

async function socketSource(pid: number | undefined): Promise<TopSource> {
  const all = await findMonitors();
  const ep = pid === undefined ? all[0] : all.find((e) => e.pid === pid);
  if (ep === undefined) {
    throw pvError(
      'PV_ERR_CONFIG',
      pid === undefined
        ? 'no running pvio process to watch: start one (e.g. `pvio compare --quick`) in another terminal, or try `pvio top --demo`'
        : `no pvio process ${pid} is running (running: ${all.map((e) => e.pid).join(', ') || 'none'})`,
    );
  }
  const client = await MonitorClient.connect(ep.path);
  let end: (why: string) => void = () => {};
  const ended = new Promise<string>((resolve) => {
    end = resolve;
  });
  return {
    ended,
    async snapshot() {
      try {
        return (await client.request({ op: 'snapshot' })) as MonitorSnapshot;
      } catch (err) {
        end(`pvio process ${ep.pid} exited`);
        throw err;
      }
    },
    close: () => client.close(),
  };
}

/** Plain lines of one frame (no key line, no padding). */
function plainFrame(prev: MonitorSnapshot | undefined, cur: MonitorSnapshot, st: TopState): string {
  const rows = topRows(prev, cur);
  const height = rows.domains.length + rows.rings.length + rows.devices.length + 8;
  const lines = renderTop(rows, cur, st, 120, height)
    .slice(0, -1)
    .map((s) => s.trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return `${lines.join('\n')}\n\n`;
}

/** The command; see the file comment. */
export async function topMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      pid: { type: 'string' },
      interval: { type: 'string', default: '1000' },
      sort: { type: 'string', default: 'cpu' },
      once: { type: 'boolean', default: false },
      frames: { type: 'string' },
      demo: { type: 'boolean', default: false },
      seconds: { type: 'string', default: '30' },
    },
    strict: true,
  });
  const interval = Number(values.interval);
  if (!Number.isFinite(interval) || interval < 100 || interval > 60_000)
    throw pvError('PV_ERR_CONFIG', `--interval: milliseconds in [100, 60000], got '${values.interval}'`);
  if (!(SORT_KEYS as readonly string[]).includes(values.sort))
    throw pvError('PV_ERR_CONFIG', `--sort: one of ${SORT_KEYS.join(', ')}, got '${values.sort}'`);
  const pid = values.pid === undefined ? undefined : Number(values.pid);
  if (pid !== undefined && !(Number.isInteger(pid) && pid > 0))
    throw pvError('PV_ERR_CONFIG', `--pid: a process id, got '${values.pid}'`);
  const frames = values.frames === undefined ? undefined : Number(values.frames);
  if (frames !== undefined && !(Number.isInteger(frames) && frames > 0))
    throw pvError('PV_ERR_CONFIG', `--frames: a positive integer, got '${values.frames}'`);
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
    throw pvError('PV_ERR_CONFIG', `--seconds: a number in (0, 3600], got '${values.seconds}'`);

  const source: TopSource = values.demo ? startDemo(seconds) : await socketSource(pid);
  const st: TopState = { sort: values.sort as SortKey, selected: 0, details: false };
  const tty = process.stdout.isTTY === true && process.stdin.isTTY === true && !values.once;
  try {
    if (tty) await interactive(source, st, interval);
    else await plain(source, { ...st, selected: -1 }, interval, values.once ? 1 : frames);
  } finally {
    await source.close();
  }
}

async function plain(source: TopSource, st: TopState, interval: number, frames: number | undefined): Promise<void> {
  let prev = await source.snapshot();
  let done = false;
  void source.ended.then(() => {
    done = true;
  });
  for (let n = 0; frames === undefined || n < frames; n++) {
    await new Promise((r) => setTimeout(r, interval));
    let cur: MonitorSnapshot;
    try {
      cur = await source.snapshot();
    } catch {
      break;
    }
    process.stdout.write(`${new Date(cur.t).toISOString().slice(11, 19)} ${plainFrame(prev, cur, st)}`);
    prev = cur;
    if (done) break;
  }
}

function interactive(source: TopSource, st: TopState, interval: number): Promise<void> {
  const screen = new TopScreen(process.stdout, process.stdin);
  let prev: MonitorSnapshot | undefined;
  let cur: MonitorSnapshot | undefined;
  let domains = 0;
  let timer: NodeJS.Timeout | undefined;
  return new Promise<void>((resolve) => {
    const draw = () => {
      if (cur === undefined) return;
      const rows = topRows(prev, cur);
      domains = rows.domains.length;
      st.selected = Math.min(st.selected, Math.max(0, domains - 1));
      screen.draw(renderTop(rows, cur, st, screen.width, screen.height));
    };
    const quit = () => {
      if (timer !== undefined) clearTimeout(timer);
      screen.restore();
      resolve();
    };
    const tick = async () => {
      try {
        const next = await source.snapshot();
        // A finished run leaves no host: keep its last frame on screen.
        if (next.hosts.length > 0 || cur === undefined) {
          prev = cur;
          cur = next;
        }
      } catch {
        // The watched process went away: `ended` says so below.
      }
      draw();
      timer = setTimeout(tick, interval);
    };
    screen.open((k) => {
      if (k === 'quit') return quit();
      if (k === 'sort') st.sort = SORT_KEYS[(SORT_KEYS.indexOf(st.sort) + 1) % SORT_KEYS.length];
      else if (k === 'details') st.details = !st.details;
      else if (k === 'up') st.selected = Math.max(0, st.selected - 1);
      else if (k === 'down') st.selected = Math.min(st.selected + 1, Math.max(0, domains - 1));
      draw();
    }, draw);
    void source.ended.then((why) => {
      st.note = `${why} — q to quit`;
      draw();
    });
    void tick();
  });
}
