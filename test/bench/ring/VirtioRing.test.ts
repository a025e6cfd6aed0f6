/**
 * `pvio ring-bench` over virtio (bench/ring/VirtioRing.ts): a guest Worker and a device Worker
 * over virtio-mmio, one guest memory. Each mode must answer every request exactly once with the
 * request's own 64 bytes echoed (the guest checks word for word), with counters that add up: no
 * more kicks than publishes, no more publishes than requests, no more interrupts than chains.
 * Rates and round trips are printed by the bench, never asserted here (wall clock).
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runVirtioRing, type VirtioRun, type VirtqKind } from '../../../bench/ring/VirtioRing.js';
import { parseRingBenchArgs, RING_TRANSPORTS } from '../../../bench/ring.bench.js';
import { PvError } from '../../../protocol/errors.js';
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED } from '../../../protocol/virtio/DeviceStatus.js';

const CLI = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));

/** The checks every run must pass, whatever the timing. */
function assertExactlyOnce(r: VirtioRun, count: number): void {
  const g = r.guest;
  assert.equal(g.completed, count, 'every request answered');
  assert.equal(g.distinct, count, 'no request answered twice in place of another');
  assert.equal(g.badData, 0, 'every response is the echo of its own request');
  assert.equal(r.device.served, count, 'the device popped each chain once');
  assert.equal(r.device.broken, false);
  assert.equal(g.timeouts, 0, 'no interrupt wait timed out (no lost interrupt)');
  assert.ok(g.kicks <= g.publishes, `kicks ${g.kicks} ≤ publishes ${g.publishes}`);
  assert.ok(g.publishes <= count, `publishes ${g.publishes} ≤ requests ${count}`);
  assert.ok(r.device.interrupts <= count, `interrupts ${r.device.interrupts} ≤ requests`);
  assert.ok(
    r.device.kicksSeen <= g.kicks,
    `device saw ${r.device.kicksSeen} kicks of ${g.kicks} (kicks coalesce, never appear)`,
  );
  const want = featureBit(VIRTIO_F_EVENT_IDX) | (r.kind === 'packed' ? featureBit(VIRTIO_F_RING_PACKED) : 0n);
  const negotiated = BigInt(g.negotiated);
  assert.equal(negotiated & want, want, `EVENT_IDX (and RING_PACKED for packed) negotiated: ${g.negotiated}`);
  if (r.kind === 'split') assert.equal(negotiated & featureBit(VIRTIO_F_RING_PACKED), 0n);
  assert.ok(Number.isFinite(g.rate) && g.rate > 0);
}

for (const kind of ['split', 'packed'] as VirtqKind[]) {
  describe(`virtio ${kind} ring bench: every request answered exactly once with its bytes (real Workers)`, function () {
    this.timeout(60_000);

    it('pingpong: one chain in flight, one round-trip sample per request', async () => {
      const r = await runVirtioRing(kind, 'pingpong', 2000, 1000);
      assertExactlyOnce(r, 2000);
      const s = r.guest.samples ?? [];
      assert.equal(s.length, 2000);
      assert.ok(
        s.every((x) => Number.isFinite(x) && x > 0),
        'every request has a positive sample',
      );
      // One chain in flight: each publish carries exactly one request.
      assert.equal(r.guest.publishes, 2000);
    });

    it('throughput: the queue is kept full and publishes are batched', async () => {
      const r = await runVirtioRing(kind, 'throughput', 50_000, 1000);
      assertExactlyOnce(r, 50_000);
      assert.equal(r.guest.samples, undefined);
      // The first round adds all 32 slots before its single publish, so publishes < requests.
      assert.ok(r.guest.publishes < 50_000, `publishes ${r.guest.publishes}`);
    });

    it('with no spin budget both sides sleep at once and still lose no kick or interrupt', async () => {
      const r = await runVirtioRing(kind, 'pingpong', 500, 0);
      assertExactlyOnce(r, 500);
      // The device's first round finds no queue yet and, with no budget, sleeps on the doorbell.
      assert.ok(r.device.sleeps > 0, `device sleeps ${r.device.sleeps}`);
    });
  });
}

describe('ring-bench --transports: which transports run, and an unknown one refused by name', () => {
  it('defaults to xen, split and packed, and keeps that order whatever the flag order', () => {
    assert.deepEqual(parseRingBenchArgs([]).transports, ['xen', 'split', 'packed']);
    assert.deepEqual(RING_TRANSPORTS, ['xen', 'split', 'packed']);
    assert.deepEqual(parseRingBenchArgs(['--transports', 'packed,xen,packed']).transports, ['xen', 'packed']);
    assert.deepEqual(parseRingBenchArgs(['--transports', 'split']).transports, ['split']);
    const a = parseRingBenchArgs(['--pingpong', '7', '--throughput', '9', '--spin', '0', '--json']);
    assert.deepEqual([a.pingpong, a.throughput, a.spin, a.json], [7, 9, 0, true]);
  });

  it('an unknown transport is PV_ERR_INVALID_ARG naming it and the valid choices', () => {
    assert.throws(
      () => parseRingBenchArgs(['--transports', 'xen,virtio']),
      (e: unknown) =>
        e instanceof PvError &&
        e.code === 'PV_ERR_INVALID_ARG' &&
        /unknown transport 'virtio'/.test(e.message) &&
        /xen, split, packed/.test(e.message),
    );
    assert.throws(() => parseRingBenchArgs(['--transports', '']), /unknown transport ''/);
    assert.throws(() => parseRingBenchArgs(['--pingpong', 'many']), /--pingpong takes an integer/);
  });

  it('the CLI exits 1 on an unknown transport, before measuring anything, and prints the usage with --transports', () => {
    const r = spawnSync(process.execPath, [CLI, 'ring-bench', '--transports', 'xen,bogus'], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /unknown transport 'bogus'/);
    assert.match(r.stderr, /usage: pvio ring-bench .*--transports xen,split,packed/);
    assert.doesNotMatch(r.stdout, /measuring/);
  });
});
