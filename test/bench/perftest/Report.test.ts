import assert from 'node:assert/strict';
import {
  BW_PEAK_WARNING,
  formatBwRow,
  formatHeader,
  formatHistogram,
  formatHistogramTrailer,
  formatJson,
  formatLatencyDurationRow,
  formatLatencyRow,
  formatOutputValue,
  formatTestInfo,
  RESULT_FMT,
  RESULT_FMT_G,
  RESULT_FMT_LAT,
  RESULT_FMT_LAT_DUR,
  RESULT_LINE,
  type TestInfo,
  testTitle,
} from '../../../bench/perftest/Report.js';
import type { BwStats, DurationLatency, LatencyStats } from '../../../bench/perftest/Stats.js';

const LAT: LatencyStats = {
  measureCnt: 997,
  tMin: 0.81,
  tMax: 2.95,
  tTypical: 0.84,
  tAvg: 0.85,
  tStdev: 0.03,
  p99: 1.02,
  p999: 2.95,
};
const BW: BwStats = { size: 65536, iters: 5000, bwPeak: 11758.21, bwAvg: 11755.06, msgRateMpps: 0.188081, unit: 'MiB' };
const WRITE_LAT: TestInfo = {
  verb: 'write',
  kind: 'lat',
  device: 'pvrdma0',
  transport: 'paravirt',
  txDepth: 1,
  cqMod: 1,
  inlineSize: 220,
};
const WRITE_BW: TestInfo = { ...WRITE_LAT, kind: 'bw', txDepth: 128, cqMod: 100 };
const DUR: DurationLatency = { iters: 1795, tAvg: 277.77, tps: 1800.02 };

describe('perftest Report: golden strings (reference §1.3, perftest >= 24.07)', () => {
  it('RESULT_LINE is 87 dashes and a newline', () => {
    assert.equal(RESULT_LINE, `${'-'.repeat(87)}\n`);
    assert.equal(RESULT_LINE.length, 88);
  });

  it('latency header, verbatim with its trailing space', () => {
    assert.equal(
      RESULT_FMT_LAT,
      ' #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ',
    );
    assert.ok(formatHeader('lat').endsWith('[usec] \n'));
    assert.equal(RESULT_FMT_LAT_DUR, ' #bytes        #iterations       t_avg[usec]    tps average');
  });

  it('bandwidth headers: MiB/sec by default, Gb/sec with --report_gbits', () => {
    assert.equal(RESULT_FMT, ' #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]');
    assert.equal(RESULT_FMT_G, ' #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]');
    assert.equal(formatHeader('bw'), `${RESULT_FMT}\n`);
    assert.equal(formatHeader('bw', true), `${RESULT_FMT_G}\n`);
  });

  it('latency row matches the reference example byte for byte (TABs, padding)', () => {
    assert.equal(
      formatLatencyRow(2, 1000, LAT),
      ' 2       1000          0.81           2.95         0.84     \t       0.85        \t0.03   \t\t1.02    \t\t2.95   \n',
    );
  });

  it('bandwidth row matches the reference example byte for byte', () => {
    assert.equal(formatBwRow(BW), ' 65536      5000             11758.21            11755.06\t\t     0.188081\n');
  });

  it('Gb/sec rows switch to REPORT_FMT_EXT (six decimals) only when the average is below 0.1', () => {
    const small: BwStats = { size: 2, iters: 5000, bwPeak: 0.05, bwAvg: 0.04, msgRateMpps: 2.5, unit: 'Gb' };
    assert.equal(formatBwRow(small), ' 2          5000           0.050000            0.040000            2.500000\n');
    assert.equal(
      formatBwRow({ ...small, unit: 'MiB' }),
      ' 2          5000             0.05               0.04   \t\t     2.500000\n',
    );
    assert.ok(formatBwRow({ ...small, bwAvg: 0.2 }).includes('0.20   '));
  });

  it('banner titles follow ctx_print_test_info', () => {
    assert.equal(testTitle(WRITE_LAT), 'RDMA_Write Latency Test');
    assert.equal(testTitle(WRITE_BW), 'RDMA_Write BW Test');
    assert.equal(
      testTitle({ ...WRITE_BW, verb: 'send', bidirectional: true, postList: 4 }),
      'Send Bidirectional Post List BW Test',
    );
  });

  it('test-info block: perftest line shapes with pvio values', () => {
    assert.equal(
      formatTestInfo(WRITE_BW),
      [
        RESULT_LINE,
        '                    RDMA_Write BW Test\n',
        ' Dual-port       : OFF\t\tDevice         : pvrdma0\n',
        ' Number of qps   : 1\t\tTransport type : paravirt\n',
        ' Connection type : RC\t\tUsing SRQ      : OFF\n',
        ' TX depth        : 128\n',
        ' CQ Moderation   : 100\n',
        ' Mtu             : 4096[B]\n',
        ' Link type       : IB\n',
        ' Max inline data : 220[B]\n',
        ' rdma_cm QPs\t : OFF\n',
        ' Data ex. method : store\n',
        RESULT_LINE,
      ].join(''),
    );
    const lat = formatTestInfo(WRITE_LAT);
    assert.ok(!lat.includes('CQ Moderation'), 'latency tests print no CQ moderation');
    const read = formatTestInfo({ ...WRITE_LAT, verb: 'read', outReads: 16 });
    assert.ok(read.includes(' Outstand reads  : 16\n') && !read.includes('Max inline'));
  });

  it('--output prints one %lf number', () => {
    assert.equal(formatOutputValue('latency', LAT), '0.840000\n');
    assert.equal(formatOutputValue('bandwidth', BW), '11755.060000\n');
    assert.equal(formatOutputValue('message_rate', BW), '0.188081\n');
  });
});

describe('perftest Report: -D, -H and the read banner (golden strings)', () => {
  it('-D latency: RESULT_FMT_LAT_DUR header and REPORT_FMT_LAT_DUR row (size, iterations, t_avg, tps)', () => {
    assert.equal(formatHeader('lat', false, true), ' #bytes        #iterations       t_avg[usec]    tps average\n');
    // " %-7lu       %lu            %-7.2f        %-7.2f"
    assert.equal(formatLatencyDurationRow(64, DUR), ' 64            1795            277.77         1800.02\n');
    assert.equal(
      formatLatencyDurationRow(2, { iters: 5, tAvg: 0.5, tps: 12 }),
      ' 2             5            0.50           12.00  \n',
    );
    assert.equal(formatOutputValue('latency', DUR), '277.770000\n', '--output=latency prints t_avg under -D');
  });

  it('-D bandwidth: the warning perftest prints while parsing, and peak 0.00 in the row', () => {
    assert.equal(BW_PEAK_WARNING, " WARNING: BW peak won't be measured in this run.\n");
    assert.equal(
      formatBwRow({ ...BW, bwPeak: 0, iters: 437900 }),
      ' 65536      437900           0.00               11755.06\t\t     0.188081\n',
    );
  });

  it("-H: '#, usec' then '%d, %g' per kept sample, then RESULT_LINE and the header again", () => {
    assert.equal(formatHistogram([0.5, 1, 12.3456789, 1234567]), '#, usec\n1, 0.5\n2, 1\n3, 12.3457\n4, 1.23457e+06\n');
    assert.equal(formatHistogram([]), '#, usec\n');
    assert.equal(formatHistogramTrailer(), `${RESULT_LINE}${RESULT_FMT_LAT}\n`);
  });

  it('read banner: RDMA_Read Latency Test with Outstand reads instead of Max inline data', () => {
    const READ_LAT: TestInfo = {
      verb: 'read',
      kind: 'lat',
      device: 'nic1',
      transport: 'native',
      txDepth: 1,
      cqMod: 1,
      outReads: 16,
    };
    assert.equal(
      formatTestInfo(READ_LAT),
      [
        RESULT_LINE,
        '                    RDMA_Read Latency Test\n',
        ' Dual-port       : OFF\t\tDevice         : nic1\n',
        ' Number of qps   : 1\t\tTransport type : native\n',
        ' Connection type : RC\t\tUsing SRQ      : OFF\n',
        ' TX depth        : 1\n',
        ' Mtu             : 4096[B]\n',
        ' Link type       : IB\n',
        ' Outstand reads  : 16\n',
        ' rdma_cm QPs\t : OFF\n',
        ' Data ex. method : store\n',
        RESULT_LINE,
      ].join(''),
    );
    assert.equal(testTitle({ ...READ_LAT, kind: 'bw' }), 'RDMA_Read BW Test');
    assert.equal(testTitle({ ...WRITE_LAT, verb: 'send' }), 'Send Latency Test');
    const doc = JSON.parse(formatJson(READ_LAT, [{ size: 2, iters: 1000, stats: LAT }]));
    assert.equal(doc.test_info.test, 'RDMA_Read_Latency_Test');
    assert.equal(doc.test_info.Outstand_reads, 16);
    assert.equal(doc.test_info.Max_inline_data, undefined);
  });
});

describe('perftest Report: JSON (--out_json), one results entry per size', () => {
  it('-D latency: keys MsgSize, n_iterations, t_avg, tps_average; n_iterations is the window count', () => {
    const doc = JSON.parse(formatJson(WRITE_LAT, [{ size: 64, dur: DUR }]));
    assert.deepEqual(doc.results, [{ MsgSize: 64, n_iterations: 1795, t_avg: 277.77, tps_average: 1800.02 }]);
  });

  it('latency: valid JSON, quoted keys, perftest key names, an array of every size', () => {
    const text = formatJson(WRITE_LAT, [
      { size: 2, iters: 1000, stats: LAT },
      { size: 4, iters: 1000, stats: { ...LAT, tMin: 0.9 } },
    ]);
    const doc = JSON.parse(text);
    assert.deepEqual(Object.keys(doc), ['test_info', 'results']);
    assert.equal(doc.test_info.test, 'RDMA_Write_Latency_Test');
    assert.equal(doc.test_info.Device, 'pvrdma0');
    assert.equal(doc.test_info.Data_ex_method, 'store');
    assert.equal(doc.test_info.CQ_Moderation, undefined);
    assert.equal(doc.results.length, 2);
    assert.deepEqual(doc.results[0], {
      MsgSize: 2,
      n_iterations: 1000,
      t_min: 0.81,
      t_max: 2.95,
      t_typical: 0.84,
      t_avg: 0.85,
      t_stdev: 0.03,
      percentile_99: 1.02,
      'percentile_99.9': 2.95,
    });
    assert.equal(doc.results[1].MsgSize, 4);
    assert.equal(doc.results[1].t_min, 0.9);
    assert.ok(/"MsgSize": 2/.test(text));
  });

  it('bandwidth: keys MsgSize, n_iterations, BW_peak, BW_average, MsgRate; values at table precision', () => {
    const sizes = [2, 4, 8];
    const doc = JSON.parse(
      formatJson(
        WRITE_BW,
        sizes.map((size) => ({ ...BW, size, bwAvg: 1.23456 })),
      ),
    );
    assert.equal(doc.test_info.test, 'RDMA_Write_BW_Test');
    assert.equal(doc.test_info.CQ_Moderation, 100);
    assert.deepEqual(
      doc.results.map((r: { MsgSize: number }) => r.MsgSize),
      sizes,
    );
    assert.deepEqual(doc.results[0], {
      MsgSize: 2,
      n_iterations: 5000,
      BW_peak: 11758.21,
      BW_average: 1.23,
      MsgRate: 0.188081,
    });
  });
});
