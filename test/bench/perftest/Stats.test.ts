import assert from 'node:assert/strict';
import {
  bandwidthFromCompletions,
  bandwidthFromTotals,
  LAT_MEASURE_TAIL,
  latencyFromDuration,
  latencyFromPostTimes,
  latencyFromSamples,
  latencyHistogram,
  rttFactor,
} from '../../../bench/perftest/Stats.js';

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-9, msg ?? `${a} != ${b}`);

describe('perftest Stats: latency exactly as print_report_lat', () => {
  it('rtt_factor is 2 for send/write (report RTT/2) and 1 for read/atomic', () => {
    assert.equal(rttFactor('send'), 2);
    assert.equal(rttFactor('write'), 2);
    assert.equal(rttFactor('read'), 1);
    assert.equal(rttFactor('atomic'), 1);
    assert.equal(LAT_MEASURE_TAIL, 2);
  });

  it('sorts, drops the top 2, t_max = delta[measure_cnt] (2nd largest), odd-n median, avg over kept', () => {
    // sorted: [1,2,3,4,5,50,100]; n = 5 kept; 100 dropped from everything, 50 is t_max.
    const s = latencyFromSamples([5, 1, 3, 2, 4, 100, 50], { ticksPerUsec: 1, rttFactor: 1 });
    assert.equal(s.measureCnt, 5);
    assert.equal(s.tMin, 1);
    assert.equal(s.tMax, 50);
    assert.equal(s.tTypical, 3);
    assert.equal(s.tAvg, 3);
    close(s.tStdev, Math.SQRT2); // deviations 2,1,0,-1,-2 -> sqrt(10/5)
    // ceil(5*0.99) = ceil(5*0.999) = 5 -> delta[5] = 50: on small runs the percentiles equal t_max.
    assert.equal(s.p99, 50);
    assert.equal(s.p999, 50);
  });

  it('divides by ticksPerUsec * rtt_factor', () => {
    const s = latencyFromSamples([5000, 1000, 3000, 2000, 4000, 100000, 50000], { ticksPerUsec: 1000, rttFactor: 2 });
    assert.equal(s.tMin, 0.5);
    assert.equal(s.tMax, 25);
    assert.equal(s.tTypical, 1.5);
    assert.equal(s.tAvg, 1.5);
  });

  it('even n: median is the mean of delta[n/2-1] and delta[n/2]; quirk mode floors it in ticks', () => {
    const samples = [4, 2, 9, 1, 9, 3]; // sorted [1,2,3,4,9,9], n = 4 -> (2+3)/2
    assert.equal(latencyFromSamples(samples, { ticksPerUsec: 1, rttFactor: 1 }).tTypical, 2.5);
    assert.equal(latencyFromSamples(samples, { ticksPerUsec: 1, rttFactor: 1, perftestQuirks: true }).tTypical, 2);
  });

  it('percentile indices are ceil(n*0.99) and ceil(n*0.999) with n = measure_cnt', () => {
    // values 0..201 shuffled: n = 200, ceil(198) = 198, ceil(199.8) = 200.
    const v = Array.from({ length: 202 }, (_, i) => (i * 37) % 202);
    const s = latencyFromSamples(v, { ticksPerUsec: 1, rttFactor: 1 });
    assert.equal(s.measureCnt, 200);
    assert.equal(s.p99, 198);
    assert.equal(s.p999, 200);
    assert.equal(s.tMax, 200);
    // n = 1000 (perftest default -n 1000 gives 999 deltas -> 997; use 1002 samples for round numbers)
    const w = Array.from({ length: 1002 }, (_, i) => (i * 7) % 1002);
    const t = latencyFromSamples(w, { ticksPerUsec: 1, rttFactor: 1 });
    assert.equal(t.p99, 990);
    assert.equal(t.p999, 999);
    assert.equal(t.tTypical, 499.5);
  });

  it('stdev: exact by default; perftest quirk truncates each deviation to whole usec', () => {
    const samples = [1.0, 1.2, 1.4, 1.6, 1.8, 9, 9];
    const exact = latencyFromSamples(samples, { ticksPerUsec: 1, rttFactor: 1 });
    close(exact.tStdev, Math.sqrt(0.08));
    const quirk = latencyFromSamples(samples, { ticksPerUsec: 1, rttFactor: 1, perftestQuirks: true });
    assert.equal(quirk.tStdev, 0);
    // Deviations of whole usec survive truncation: [0,2,4] avg 2, devs 2,0,-2 -> sqrt(8/3).
    const q2 = latencyFromSamples([0, 2, 4, 99, 99], { ticksPerUsec: 1, rttFactor: 1, perftestQuirks: true });
    close(q2.tStdev, Math.sqrt(8 / 3));
  });

  it('from post timestamps: delta[i] = tposted[i+1] - tposted[i]', () => {
    const s = latencyFromPostTimes([0, 10, 30, 60, 100, 150], { ticksPerUsec: 1, rttFactor: 1 });
    // deltas [10,20,30,40,50]; n = 3 kept [10,20,30]
    assert.equal(s.measureCnt, 3);
    assert.equal(s.tMin, 10);
    assert.equal(s.tMax, 40);
    assert.equal(s.tTypical, 20);
    assert.equal(s.tAvg, 20);
  });

  it('rejects fewer than 3 samples and a non-positive clock', () => {
    assert.throws(() => latencyFromSamples([1, 2], { ticksPerUsec: 1, rttFactor: 1 }), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => latencyFromSamples([1, 2, 3], { ticksPerUsec: 0, rttFactor: 1 }), {
      code: 'PV_ERR_INVALID_ARG',
    });
  });
});

describe('perftest Stats: -H dump and -D latency (print_report_lat, print_report_lat_duration)', () => {
  it('-H dumps the kept samples: sorted, the top LAT_MEASURE_TAIL dropped, divided by rtt_factor', () => {
    assert.deepEqual(
      latencyHistogram([5, 1, 3, 2, 4, 100, 50], { ticksPerUsec: 1, rttFactor: 2 }),
      [0.5, 1, 1.5, 2, 2.5],
    );
    assert.deepEqual(latencyHistogram([3000, 1000, 2000, 9000, 8000], { ticksPerUsec: 1000, rttFactor: 1 }), [1, 2, 3]);
    assert.throws(() => latencyHistogram([1, 2], { ticksPerUsec: 1, rttFactor: 1 }), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('-D: t_avg = window usec / rtt_factor / iters; tps = iters / window seconds (no rtt_factor)', () => {
    // 1000 round trips in 2000 usec: 2 usec per round trip, 1 usec one way; 500000 per second.
    const w = latencyFromDuration({ iters: 1000, elapsedTicks: 2000, ticksPerUsec: 1, rttFactor: 2 });
    assert.deepEqual(w, { iters: 1000, tAvg: 1, tps: 500_000 });
    // A read's sample is its round trip: rtt_factor 1 keeps it whole; tps is unchanged.
    const r = latencyFromDuration({ iters: 1000, elapsedTicks: 2000, ticksPerUsec: 1, rttFactor: 1 });
    assert.equal(r.tAvg, 2);
    assert.equal(r.tps, 500_000);
    // Seconds as ticks (what pvio's guest returns): 250 iterations in 0.5 s.
    const sec = latencyFromDuration({ iters: 250, elapsedTicks: 0.5, ticksPerUsec: 1e-6, rttFactor: 2 });
    close(sec.tAvg, 1000);
    close(sec.tps, 500);
  });

  it('-D: an empty window or a non-positive time is refused, not reported as Infinity', () => {
    assert.throws(() => latencyFromDuration({ iters: 0, elapsedTicks: 1, ticksPerUsec: 1, rttFactor: 2 }), {
      code: 'PV_ERR_INVALID_ARG',
    });
    assert.throws(() => latencyFromDuration({ iters: 5, elapsedTicks: 0, ticksPerUsec: 1, rttFactor: 2 }), {
      code: 'PV_ERR_INVALID_ARG',
    });
  });

  it('-D bandwidth is average-only: peak 0, as perftest prints under duration', () => {
    // 10000 messages of 4096 B in 0.5 s: 78.125 MiB/s, 0.02 Mpps.
    const bw = bandwidthFromTotals({ size: 4096, iters: 10_000, elapsedTicks: 0.5, ticksPerSec: 1 });
    assert.equal(bw.bwPeak, 0);
    close(bw.bwAvg, 78.125);
    close(bw.msgRateMpps, 0.02);
  });
});

describe('perftest Stats: bandwidth as print_report_bw', () => {
  it('average in MiB/s (2^20) and Gb/s (10^9/8), MsgRate in Mpps', () => {
    const mib = bandwidthFromTotals({ size: 1048576, iters: 1000, elapsedTicks: 1e9, ticksPerSec: 1e9 });
    assert.equal(mib.bwAvg, 1000);
    assert.equal(mib.msgRateMpps, 0.001);
    assert.equal(mib.bwPeak, 0);
    const gb = bandwidthFromTotals({ size: 125, iters: 1e6, elapsedTicks: 1e9, ticksPerSec: 1e9, unit: 'Gb' });
    assert.equal(gb.bwAvg, 1);
    assert.equal(gb.unit, 'Gb');
  });

  const tposted = [0, 1, 2, 3];
  const tcompleted = [100, 101, 102, 400];
  const base = { size: 1000, ticksPerSec: 1e9, tposted, tcompleted };

  it('peak = min over windows [i,j] with j on CQE positions (cq_mod 1: every completion)', () => {
    const s = bandwidthFromCompletions({ ...base, cqMod: 1 });
    // best window i=0, j=2: 102/3 = 34 ticks per message
    close(s.bwPeak, (1000 * 1e9) / (34 * 1048576));
    close(s.bwAvg, (1000 * 4 * 1e9) / (400 * 1048576));
    close(s.msgRateMpps, (4 * 1e9) / (400 * 1e6));
  });

  it('cq_mod 2: only j = 1, 3 end windows, so the best is (101-0)/2 = 50.5; quirk floors to 50', () => {
    close(bandwidthFromCompletions({ ...base, cqMod: 2 }).bwPeak, (1000 * 1e9) / (50.5 * 1048576));
    close(bandwidthFromCompletions({ ...base, cqMod: 2, perftestQuirks: true }).bwPeak, (1000 * 1e9) / (50 * 1048576));
  });

  it('n % cq_mod != 0: the last completion also ends a window', () => {
    const s = bandwidthFromCompletions({
      size: 1000,
      ticksPerSec: 1e9,
      tposted: [0, 1, 2],
      tcompleted: [100, 101, 102],
      cqMod: 2,
    });
    close(s.bwPeak, (1000 * 1e9) / (34 * 1048576));
  });

  it('rejects mismatched arrays', () => {
    assert.throws(() => bandwidthFromCompletions({ ...base, tcompleted: [1], cqMod: 1 }), {
      code: 'PV_ERR_INVALID_ARG',
    });
  });
});
