/**
 * Issue 9's target ratios from a compare run (Targets.ts) and the bench:check verdicts
 * (BenchCheck.ts): each ratio divides the right two figures of the same run, is judged against
 * its bound, is "not measured" (never guessed) when an input is missing or failed, and a ratio
 * that moved the wrong way by more than the tolerance is named as a regression.
 */

import assert from 'node:assert/strict';
import { checkTargets, medianTargets, type TargetBaseline } from '../../../bench/compare/BenchCheck.js';
import type { CellResult, CompareResults, CompareTransport } from '../../../bench/compare/Results.js';
import { computeTargets, formatTargets } from '../../../bench/compare/Targets.js';
import { compareFixture, summary } from '../report/CompareFixture.js';

const MiB = 1 << 20;

function lat(transport: CompareTransport, median: number, p999: number): CellResult {
  return {
    transport,
    op: 'write',
    kind: 'lat',
    size: 64,
    lat: { iters: 1000, usec: { ...summary(median, median * 2), p999 }, tTypical: median },
    cpu: [],
    elapsedMs: 100,
  };
}

function bw(transport: CompareTransport, size: number, avgMiBps: number): CellResult {
  const mpps = (avgMiBps * MiB) / size / 1e6;
  return {
    transport,
    op: 'write',
    kind: 'bw',
    size,
    bw: { iters: 1000, txDepth: size >= MiB ? 16 : 128, avgMiBps, peakMiBps: avgMiBps, mpps, seconds: 1 },
    cpu: [],
    elapsedMs: 100,
  };
}

/** A run with every input of every target; paravirt 64 B: 30 µs, tcp 150, passthrough 10. */
function run(): CompareResults {
  const base = compareFixture();
  return {
    ...base,
    floors: { ...base.floors, handoffSpinRttUs: summary(0.4, 1), memcpyMiBps: 20000, ringMps: 10 },
    cells: [
      lat('paravirt', 30, 120),
      lat('passthrough', 10, 30),
      lat('tcp', 150, 400),
      bw('paravirt', 64, 0.5 * 64), // 0.5 M msg/s
      bw('paravirt', MiB, 9000),
      bw('passthrough', MiB, 10000),
      bw('paravirt', 4 * MiB, 17000),
      bw('passthrough', 4 * MiB, 17500),
      bw('paravirt-copy', 4 * MiB, 8500),
    ],
    scale: {
      guests: 16,
      seconds: 2,
      oneGuestOpsPerSec: 1000,
      perGuestOpsPerSec: [60, 40, 50, 50],
      aggregateOpsPerSec: 900,
      aggregateOverOne: 0.9,
      jain: 0.98,
    },
  };
}

describe('pvio compare targets (issue 9): ratios of one run, judged against their bounds', () => {
  it('divides the right figures and judges each ratio (≤ / ≥ / report)', () => {
    const t = Object.fromEntries(computeTargets(run()).map((x) => [x.id, x]));
    assert.equal(t['pv/tcp-lat-64'].value, 0.2);
    assert.equal(t['pv/tcp-lat-64'].pass, false, '0.2 > 0.10');
    assert.equal(t['pv/pt-lat-64'].value, 3);
    assert.equal(t['pt/floor-lat-64'].value, 50, '10 µs over half of a 0.4 µs round trip');
    assert.equal(t[`pv/pt-bw-${MiB}`].value, 0.9);
    assert.equal(t[`pv/pt-bw-${MiB}`].pass, false);
    assert.ok(Math.abs((t[`pv/pt-bw-${4 * MiB}`].value ?? 0) - 17000 / 17500) < 1e-12);
    assert.equal(t[`pv/pt-bw-${4 * MiB}`].pass, true);
    assert.equal(t['pv/memcpy-bw-4MiB'].value, 0.85);
    assert.ok(
      Math.abs((t['pv/ring-rate-64'].value ?? 0) - (0.5 * 64 * MiB) / 64 / 1e6 / 10) < 1e-12,
      '0.52 M msg/s over 10',
    );
    assert.equal(t['pv/tail-lat-64'].value, 4);
    assert.equal(t['pv/tail-lat-64'].pass, true);
    assert.equal(t['scale/aggregate'].value, 0.9);
    assert.equal(t['scale/jain'].value, 0.98);
    assert.equal(t['copy/pv-bw-4MiB'].value, 0.5);
    assert.equal(t['copy/pv-bw-4MiB'].pass, undefined, 'report only');
  });

  it('a missing or failed input gives "not measured", never a guess', () => {
    const r = run();
    const cells = r.cells
      .filter((c) => c.transport !== 'tcp')
      .map((c) =>
        c.transport === 'passthrough' && c.kind === 'lat'
          ? { ...c, lat: undefined, error: { code: 'X', message: 'x' } }
          : c,
      );
    const t = Object.fromEntries(computeTargets({ ...r, cells, scale: undefined }).map((x) => [x.id, x]));
    for (const id of ['pv/tcp-lat-64', 'pv/pt-lat-64', 'pt/floor-lat-64', 'scale/aggregate', 'scale/jain']) {
      assert.equal(t[id].value, undefined, id);
      assert.equal(t[id].pass, undefined, id);
      assert.match(t[id].detail, /^not measured/);
    }
    const text = formatTargets(Object.values(t));
    assert.match(text, /· paravirt \/ tcp, 64 B WRITE latency/);
    assert.match(text, /\d+ of \d+ targets met/);
  });

  it('bench:check: a ratio that moved the wrong way beyond the tolerance is a regression, named', () => {
    const rows = computeTargets(run());
    const values = Object.fromEntries(rows.filter((x) => x.value !== undefined).map((x) => [x.id, x.value as number]));
    const base: TargetBaseline = { createdAt: 'then', machine: 'here', values };
    assert.ok(checkTargets(rows, base, 0.2).every((l) => l.verdict === 'ok' || l.verdict === 'report'));
    // Against these baselines the run is worse: latency ratio (≤) 2 → 3, bandwidth ratio (≥)
    // 1.7 → 0.85, tail ratio (≤) 2 → 4.
    const worse: TargetBaseline = {
      ...base,
      values: {
        ...values,
        'pv/pt-lat-64': 2,
        'pv/memcpy-bw-4MiB': 1.7,
        'pv/tail-lat-64': 2,
      },
    };
    const v = Object.fromEntries(checkTargets(rows, worse, 0.2).map((l) => [l.id, l.verdict]));
    assert.equal(v['pv/pt-lat-64'], 'regressed');
    assert.equal(v['pv/memcpy-bw-4MiB'], 'regressed');
    assert.equal(v['pv/tail-lat-64'], 'regressed', 'p99.9/median 2 → 4 is worse');
    const better = Object.fromEntries(
      checkTargets(rows, { ...base, values: { ...values, 'pv/pt-lat-64': 6 } }, 0.2).map((l) => [l.id, l.verdict]),
    );
    assert.equal(better['pv/pt-lat-64'], 'improved');
    const { 'scale/jain': _, ...noJain } = values;
    assert.equal(
      checkTargets(rows, { ...base, values: noJain }, 0.2).find((l) => l.id === 'scale/jain')?.verdict,
      'new',
    );
  });

  it('bench:check takes each ratio’s median over its runs and judges the median', () => {
    const a = computeTargets(run());
    const slower = (k: number) =>
      computeTargets({
        ...run(),
        cells: run().cells.map((c) =>
          c.transport === 'paravirt' && c.kind === 'lat' ? { ...c, lat: c.lat && { ...c.lat, tTypical: k } } : c,
        ),
      });
    const m = Object.fromEntries(medianTargets([a, slower(90), slower(15)]).map((t) => [t.id, t]));
    // paravirt / passthrough over the three runs: 3, 9, 1.5 → median 3, not met (≤ 2).
    assert.equal(m['pv/pt-lat-64'].value, 3);
    assert.equal(m['pv/pt-lat-64'].pass, false);
    assert.match(m['pv/pt-lat-64'].detail, /^median of 3 runs/);
    assert.equal(m['scale/jain'].value, 0.98);
  });
});
