/**
 * `pvio console <domain> [-f] [--pid N] [--interval MS]`: `xl console` for pvio — prints the
 * current screen of a running domain's console (its console ring, kept by an @xterm/headless
 * terminal in the host: hypervisor-sim/console/ConsoleTerminal.ts), read through the running
 * process's monitor socket (the newest pvio process unless `--pid`). `<domain>` is a name, a
 * domain id, or `host/name`. With `-f` it follows: on a terminal the screen is redrawn in place
 * when it changes; otherwise each changed screen is printed after a separator line. It ends when
 * the domain or the process is gone.
 */

import { parseArgs } from 'node:util';
import { type ConsoleAnswer, findMonitors, MonitorClient } from '../hypervisor-sim/monitor/MonitorServer.js';
import { pvError } from '../protocol/errors.js';

async function fetch(client: MonitorClient, domain: string): Promise<ConsoleAnswer | string> {
  const a = (await client.request({ op: 'console', domain })) as ConsoleAnswer | { error: string };
  return 'error' in a ? a.error : a;
}

/** The command; see the file comment. */
export async function consoleMain(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      follow: { type: 'boolean', short: 'f', default: false },
      pid: { type: 'string' },
      interval: { type: 'string', default: '250' },
    },
    strict: true,
  });
  if (positionals.length !== 1) throw pvError('PV_ERR_CONFIG', 'usage: pvio console <domain> [-f] [--pid N]');
  const domain = positionals[0];
  const interval = Number(values.interval);
  if (!Number.isFinite(interval) || interval < 50) throw pvError('PV_ERR_CONFIG', '--interval: milliseconds ≥ 50');
  const pid = values.pid === undefined ? undefined : Number(values.pid);
  const all = await findMonitors();
  const ep = pid === undefined ? all[0] : all.find((e) => e.pid === pid);
  if (ep === undefined) {
    throw pvError(
      'PV_ERR_CONFIG',
      'no running pvio process: start a run (e.g. `pvio top --demo` or `pvio compare --quick`) first; a finished ' +
        "run's consoles are saved in its results folder (consoles/)",
    );
  }
  const client = await MonitorClient.connect(ep.path);
  try {
    const first = await fetch(client, domain);
    if (typeof first === 'string') throw pvError('PV_ERR_NO_DOMAIN', `${first} in pvio process ${ep.pid}`);
    const tty = process.stdout.isTTY === true;
    const show = (a: ConsoleAnswer, again: boolean) => {
      const text = `${a.screen.join('\n')}\n`;
      if (!again) process.stdout.write(text);
      else if (tty) process.stdout.write(`\x1b[H\x1b[2J${text}`);
      else process.stdout.write(`--- ${a.host}/${a.name} (dom${a.domid}, ${a.state})\n${text}`);
    };
    if (values.follow && tty) process.stdout.write('\x1b[H\x1b[2J');
    show(first, false);
    if (!values.follow) return;
    let last = first.screen.join('\n');
    for (;;) {
      await new Promise((r) => setTimeout(r, interval));
      let a: ConsoleAnswer | string;
      try {
        a = await fetch(client, domain);
      } catch {
        process.stderr.write(`pvio console: process ${ep.pid} ended\n`);
        return;
      }
      if (typeof a === 'string') {
        process.stderr.write(`pvio console: ${domain} is gone\n`);
        return;
      }
      const now = a.screen.join('\n');
      if (now !== last) show(a, true);
      last = now;
    }
  } finally {
    client.close();
  }
}
