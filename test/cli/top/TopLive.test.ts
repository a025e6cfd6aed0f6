/**
 * `pvio top` and `pvio console` against a REAL running pvio process: the real CLI in a tmux
 * terminal (send-keys, capture-pane) — a live domain row appears, `s` changes the sort, `d` shows a
 * domain's details, `q` quits and gives the terminal back; without a terminal it prints plain
 * tables and ends with the run; another process reads the run's snapshots and dom0's console
 * screen through the monitor socket. tmux is required (.ci/run installs it).
 */

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findMonitors, MonitorClient } from '../../../hypervisor-sim/monitor/MonitorServer.js';
import type { MonitorSnapshot } from '../../../hypervisor-sim/monitor/Snapshot.js';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));

/** Polls `f` every 100 ms until it returns a value, or fails after `ms` with `what`. */
async function until<T>(what: string, ms: number, f: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, { encoding: 'utf8' });
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (p.exitCode !== null) resolve(p.exitCode);
    else p.once('exit', (code) => resolve(code));
  });
}

describe('pvio top / pvio console on a live run (real processes)', function () {
  this.timeout(120_000);

  it('in tmux: a domain row appears, s changes the sort, d shows details, q quits and restores the screen', async () => {
    try {
      execFileSync('tmux', ['-V']);
    } catch {
      assert.fail('tmux is not installed: `apt-get install tmux` (.ci/run does)');
    }
    const session = `pviotop${process.pid}`;
    // The shell prints pvio's exit status on the screen pvio gives back.
    // (then waits, so tmux reads that line before the pane closes).
    const cmd = `node ${PVIO} top --demo --seconds 30 --interval 250; echo "pvio top exited with $?"; sleep 60`;
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', cmd);
    const pane = () => tmux('capture-pane', '-p', '-t', session);
    const alive = () => {
      try {
        tmux('has-session', '-t', session);
        return true;
      } catch {
        return false;
      }
    };
    try {
      const first = await until('a live frame with the demo guests', 30_000, () => {
        const s = pane();
        return /rdma-flood/.test(s) && /vrdma-data/.test(s) && /dom0 +running +\d+\.\d/.test(s) ? s : undefined;
      });
      assert.match(first, /^pvio top · pid \d+ · host0 · 4 domains/m);
      assert.match(first, /sort: cpu/);
      assert.match(first, /^nic0 +rdma-nic/m);
      tmux('send-keys', '-t', session, 's');
      await until('sort: id', 10_000, () => /sort: id/.test(pane()));
      const rows = pane()
        .split('\n')
        .filter((x) => /^[ >] +\d+ \S/.test(x))
        .map((x) => Number(x.slice(1, 5)));
      assert.deepEqual(
        rows,
        [...rows].sort((a, b) => a - b),
        'sorted by domain id',
      );
      tmux('send-keys', '-t', session, 'd');
      // A capture can catch a frame half drawn: wait for the whole details frame.
      const details = await until('the details view', 10_000, () => {
        const s = pane();
        return /^domain 0 'dom0' on host0/m.test(s) && /q quit {2}d back/.test(s) ? s : undefined;
      });
      assert.match(details, /grants: \d+ maps/);
      assert.match(details, /q quit {2}d back/);
      tmux('send-keys', '-t', session, 'q');
      // The alternate screen is gone (the dashboard no longer shows) and the exit status was 0.
      const after = await until('pvio top to exit', 30_000, () => {
        const p = pane();
        return /^pvio top exited with \d+$/m.test(p) ? p : undefined;
      });
      assert.match(after, /^pvio top exited with 0$/m);
      assert.doesNotMatch(after, /pvio top ·/);
    } finally {
      if (alive()) tmux('kill-session', '-t', session);
    }
  });

  it('without a terminal: plain tables every interval, no escape codes; another process reads its snapshot and dom0’s console', async () => {
    const child = spawn(process.execPath, [PVIO, 'top', '--demo', '--seconds', '4', '--interval', '500'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    try {
      const ep = await until('the run’s monitor socket', 20_000, async () =>
        (await findMonitors()).find((e) => e.pid === child.pid),
      );
      const client = await MonitorClient.connect(ep.path);
      try {
        const snap = await until('the demo guests in a snapshot', 20_000, async () => {
          const s = (await client.request({ op: 'snapshot' })) as MonitorSnapshot;
          return s.hosts[0]?.domains.length === 4 ? s : undefined;
        });
        assert.deepEqual(snap.hosts[0].domains.map((d) => d.name).sort(), [
          'blk-reader',
          'dom0',
          'rdma-flood',
          'rdma-lat',
        ]);
        assert.equal(snap.pid, child.pid);
        assert.match(snap.command, /^pvio top --demo/);
        assert.deepEqual(await client.request({ op: 'console', domain: 'nobody' }), {
          error: "no running domain 'nobody'",
        });
      } finally {
        client.close();
      }
      // dom0 logs each frontend it connects: its console screen shows them once they are in.
      const screen = await until('dom0’s console to show both RDMA guests connected', 20_000, () => {
        const text = execFileSync(process.execPath, [PVIO, 'console', 'dom0', '--pid', String(child.pid)], {
          encoding: 'utf8',
        });
        return (text.match(/rdma backend: dom\d+\/0 connected/g) ?? []).length === 2 ? text : undefined;
      });
      assert.match(screen, /^rdma backend: dom\d+\/0 connected \(zero-copy on nic0\)$/m);
      assert.equal(await exited(child), 0, err);
    } finally {
      child.kill();
    }
    const tables = out.split(/^\d\d:\d\d:\d\d pvio top/m).length - 1;
    assert.ok(tables >= 2, `periodic tables (${tables}):\n${out}`);
    assert.match(out, /rdma-lat/);
    assert.ok(!out.includes('\x1b'), 'no escape codes when stdout is not a terminal');
  });
});
