/**
 * The multi-machine commands as a user runs them: `pvio host` errors that say what to do,
 * `pvio cluster --check` (the one-command local cluster), and `pvio compare --cluster` (the RDMA
 * rows across two host processes beside one process). Real processes, loopback only.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterCompareResults } from '../../bench/cluster/ClusterCompare.js';
import { etcdBinary } from '../helpers/EtcdServer.js';

const PVIO = fileURLToPath(new URL('../../cli/pvio.js', import.meta.url));

/** Runs pvio to completion (bounded: a hang fails the test with what it printed). */
function run(args: string[], boundMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [PVIO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => {
      stdout += b;
    });
    p.stderr.on('data', (b) => {
      stderr += b;
    });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`pvio ${args.join(' ')} did not end within ${boundMs} ms:\n${stdout}\n${stderr}`));
    }, boundMs);
    p.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('cli: pvio host, cluster and compare --cluster', function () {
  this.timeout(180_000);

  it('pvio host without --name or --registry says which flag to give', () => {
    const a = spawnSync(process.execPath, [PVIO, 'host', '--registry', 'etcd://127.0.0.1:2379'], { encoding: 'utf8' });
    assert.equal(a.status, 1);
    assert.match(a.stderr, /--name is required/);
    const b = spawnSync(process.execPath, [PVIO, 'host', '--name', 'A'], { encoding: 'utf8' });
    assert.equal(b.status, 1);
    assert.match(b.stderr, /--registry etcd:\/\/HOST:PORT is required/);
    const c = spawnSync(process.execPath, [PVIO, 'host', '--name', 'A', '--registry', 'nonsense'], {
      encoding: 'utf8',
    });
    assert.match(c.stderr, /expected etcd:\/\/HOST:PORT/);
  });

  it('pvio host against an etcd nobody runs fails with a message instead of hanging', async () => {
    const r = await run(['host', '--name', 'A', '--registry', 'etcd://127.0.0.1:1'], 60_000);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach etcd at http:\/\/127\.0\.0\.1:1.*is etcd running/);
  });

  describe('with etcd installed', () => {
    before(function () {
      if (etcdBinary() === undefined) this.skip();
    });

    it('pvio cluster --check: etcd + three hosts, cross-host RDMA and a lent SSD, then everything stops', async () => {
      const r = await run(['cluster', '--check', '--quiet'], 120_000);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /host A: id \d+, link 127\.0\.0\.1:\d+/);
      assert.match(r.stdout, /check: RDMA WRITE 64 B between a guest on A and a guest on B: median [\d.]+ µs/);
      assert.match(r.stdout, /check: A borrowed C\/nvme0 \(lease \d+\), wrote and read back 32768 bytes: data matches/);
      assert.match(r.stdout, /check: ok/);
    });

    it('pvio compare --cluster prints each RDMA row across two host processes beside one process, and writes it', async () => {
      const out = mkdtempSync(join(tmpdir(), 'pvio-cc-'));
      try {
        const r = await run(
          ['compare', '--cluster', '--transports', 'native,paravirt', '--lat-iters', '100', '--out', out],
          150_000,
        );
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /floor \(this run\): host link round trip [\d.]+ µs median/);
        for (const head of [
          'RDMA WRITE latency 64 B',
          'RDMA READ latency 64 B',
          'SEND latency 64 B',
          'RDMA WRITE bandwidth 65536 B',
        ]) {
          assert.ok(r.stdout.includes(head), `table ${head}`);
        }
        const j = JSON.parse(readFileSync(join(out, 'cluster.json'), 'utf8')) as ClusterCompareResults;
        assert.equal(j.rows.length, 8);
        for (const row of j.rows) {
          const one = row.kind === 'lat' ? row.oneProcess.medianUs : row.oneProcess.avgMiBps;
          const two = row.kind === 'lat' ? row.twoProcesses.medianUs : row.twoProcesses.avgMiBps;
          assert.ok(
            one !== undefined && one > 0 && two !== undefined && two > 0,
            `${row.transport} ${row.op} ${row.kind}`,
          );
        }
        assert.ok(j.linkRttUs.n === 500 && j.linkRttUs.median > 0);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  });
});
