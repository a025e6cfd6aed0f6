import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PVIO = fileURLToPath(new URL('../../cli/pvio.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [PVIO, ...args], { encoding: 'utf8' });

describe('cli: pvio tells the user what to do', () => {
  it('--help lists the commands with their usage', () => {
    const r = run('--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /usage: pvio <command>/);
    assert.match(r.stdout, /ring-bench/);
  });

  it('an unknown command exits 2 and points at --help', () => {
    const r = run('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'.*pvio --help/);
  });

  it('a bad option exits 1 and prints the usage of that command', () => {
    const r = run('ring-bench', '--bogus');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /usage: pvio ring-bench/);
  });

  it('ring-bench --json prints the floors and the ring figures from one run', function () {
    this.timeout(60_000);
    const r = run('ring-bench', '--json', '--pingpong', '2000', '--throughput', '20000');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, { median?: number; n?: number } | number>;
    for (const k of ['spinFloor', 'waitFloor', 'pingpong']) {
      const s = j[k] as { median: number; n: number };
      assert.ok(s.n > 0 && s.median > 0, `${k} has samples`);
    }
    assert.ok((j.throughput as number) > 0);
  });
});
