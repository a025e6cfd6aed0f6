import assert from 'node:assert/strict';
import { PERFTEST_DEFAULTS, type PerftestTest, parsePerftestFlags } from '../../../bench/perftest/Flags.js';

const WRITE_LAT: PerftestTest = { verb: 'write', kind: 'lat' };
const WRITE_BW: PerftestTest = { verb: 'write', kind: 'bw' };
const SEND_BW: PerftestTest = { verb: 'send', kind: 'bw' };
const READ_LAT: PerftestTest = { verb: 'read', kind: 'lat' };
const READ_BW: PerftestTest = { verb: 'read', kind: 'bw' };
const SEND_LAT: PerftestTest = { verb: 'send', kind: 'lat' };

function rejects(argv: string[], message: string | RegExp, test: PerftestTest = WRITE_BW) {
  assert.throws(
    () => parsePerftestFlags(argv, test),
    (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.equal((e as { code?: string }).code, 'PV_ERR_CONFIG');
      if (typeof message === 'string') assert.equal(e.message, message);
      else assert.match(e.message, message);
      return true;
    },
  );
}

describe('perftest Flags: defaults (perftest_parameters.h)', () => {
  it('ib_write_lat: size 2, 1000 iters, tx depth 1, no moderation, inline 220', () => {
    const c = parsePerftestFlags([], WRITE_LAT);
    assert.deepEqual(c.sizes, [2]);
    assert.equal(c.iters, 1000);
    assert.equal(c.txDepth, 1);
    assert.equal(c.cqMod, 1);
    assert.equal(c.inlineSize, 220);
    assert.equal(c.output, 'full');
    assert.equal(c.outJson, false);
    assert.equal(c.outJsonFile, 'perftest_out.json');
    assert.deepEqual(c.modes, ['paravirt']);
    assert.equal(c.fabric, 'ideal');
    assert.equal(c.deviceEngine, 'inline');
    assert.equal(c.spinUs, undefined, 'no --spin-us: the guest keeps its own spin budgets');
    assert.equal(c.duration, undefined);
    assert.equal(c.noPeak, false);
  });

  it('ib_write_bw: size 65536, 5000 iters, tx depth 128, cq_mod 1 because size > 8192', () => {
    const c = parsePerftestFlags([], WRITE_BW);
    assert.deepEqual(c.sizes, [65536]);
    assert.equal(c.iters, 5000);
    assert.equal(c.txDepth, 128);
    assert.equal(c.cqMod, 1);
  });

  it('ib_send_bw small size keeps DEF_CQ_MOD 100; iters default 1000; read has no inline', () => {
    const c = parsePerftestFlags(['-s', '4096'], SEND_BW);
    assert.equal(c.cqMod, 100);
    assert.equal(c.iters, 1000);
    assert.equal(c.inlineSize, 236);
    assert.equal(parsePerftestFlags([], READ_LAT).inlineSize, 0);
  });

  it('an explicit -Q survives the large-size rule; cq_mod is clamped to tx depth, tx depth to iters', () => {
    assert.equal(parsePerftestFlags(['-Q', '50'], WRITE_BW).cqMod, 50);
    assert.equal(parsePerftestFlags(['-s', '64', '-t', '16'], WRITE_BW).cqMod, 16);
    const c = parsePerftestFlags(['--iters=10', '-s', '64'], WRITE_BW);
    assert.equal(c.txDepth, 10);
    assert.equal(c.cqMod, 10);
  });

  it('-a runs 2^1..2^23 and keeps cq_mod 100', () => {
    const c = parsePerftestFlags(['-a'], WRITE_BW);
    assert.equal(c.sizes.length, 23);
    assert.equal(c.sizes[0], 2);
    assert.equal(c.sizes[22], PERFTEST_DEFAULTS.MAX_SIZE);
    assert.equal(c.cqMod, 100);
  });

  it('-D: iters 0, margin duration/4 unless -f, peak off', () => {
    const c = parsePerftestFlags(['-D', '10'], WRITE_BW);
    assert.equal(c.duration, 10);
    assert.equal(c.iters, 0);
    assert.equal(c.margin, 2);
    assert.equal(c.noPeak, true);
    assert.equal(parsePerftestFlags(['-D', '10', '-f', '4'], WRITE_BW).margin, 4);
  });

  it('long and short spellings and pvio flags', () => {
    const c = parsePerftestFlags(
      [
        '--size=128',
        '--report_gbits',
        '-F',
        '-I',
        '64',
        '--output=bandwidth',
        '--out_json_file',
        'x.json',
        '--mode',
        'paravirt,passthrough,tcp',
        '--fabric',
        'pcie3-x8-ntb',
        '--spin-us',
        '50',
        '--device-engine',
        'dedicated',
      ],
      WRITE_BW,
    );
    assert.deepEqual(c.sizes, [128]);
    assert.equal(c.reportGbits, true);
    assert.equal(c.ignoreCpuFreq, true);
    assert.equal(c.inlineSize, 64);
    assert.equal(c.histogram, false);
    assert.equal(c.output, 'bandwidth');
    assert.equal(c.outJson, true);
    assert.equal(c.outJsonFile, 'x.json');
    assert.deepEqual(c.modes, ['paravirt', 'passthrough', 'tcp']);
    assert.equal(c.fabric, 'pcie3-x8-ntb');
    assert.equal(c.spinUs, 50);
    assert.equal(c.deviceEngine, 'dedicated');
  });
});

describe('perftest Flags: read and send tests (ib_read_*, ib_send_*)', () => {
  it('ib_read_bw: 65536 B, 1000 iters (DEF_ITERS_WB is write only), tx depth 128, no inline', () => {
    const c = parsePerftestFlags([], READ_BW);
    assert.deepEqual(c.sizes, [65536]);
    assert.equal(c.iters, 1000);
    assert.equal(c.txDepth, 128);
    assert.equal(c.cqMod, 1, 'size > 8192 drops moderation to 1');
    assert.equal(c.inlineSize, 0);
  });

  it('ib_send_lat: size 2, 1000 iters, tx depth 1, inline 236 (RC send default)', () => {
    const c = parsePerftestFlags([], SEND_LAT);
    assert.deepEqual(c.sizes, [2]);
    assert.equal(c.iters, 1000);
    assert.equal(c.txDepth, 1);
    assert.equal(c.cqMod, 1);
    assert.equal(c.inlineSize, 236);
  });

  it('-H on latency tests, -D on every test, -I 0 accepted on read', () => {
    assert.equal(parsePerftestFlags(['-H'], READ_LAT).histogram, true);
    assert.equal(parsePerftestFlags(['--report-histogrm'], SEND_LAT).histogram, true);
    const d = parsePerftestFlags(['-D', '3', '-f', '1'], READ_BW);
    assert.equal(d.duration, 3);
    assert.equal(d.margin, 1);
    assert.equal(d.iters, 0);
    assert.equal(d.noPeak, true);
    assert.equal(parsePerftestFlags(['-I', '0'], READ_BW).inlineSize, 0);
  });

  it('--spin-us: absent is undefined (defaults), 0 means never spin', () => {
    assert.equal(parsePerftestFlags([], SEND_BW).spinUs, undefined);
    assert.equal(parsePerftestFlags(['--spin-us', '0'], SEND_BW).spinUs, 0);
    assert.equal(parsePerftestFlags(['--spin-us=25'], READ_LAT).spinUs, 25);
  });
});

describe('perftest Flags: rejections (PV_ERR_CONFIG with perftest messages)', () => {
  it('-D with -a', () => rejects(['-D', '5', '-a'], "Duration mode currently doesn't support running on all sizes."));
  it('DURATION must exceed 2*MARGIN', () =>
    rejects(['-D', '4', '-f', '2'], 'please make sure that DURATION > 2*MARGIN'));
  it('fewer than MIN_ITER iterations', () => rejects(['-n', '4'], 'Iteration num must be at least 5'));
  it('size outside 1..MAX_SIZE', () => {
    rejects(['-s', '0'], 'Message Size should be between 1 and 8388608');
    rejects(['-s', '8388609'], 'Message Size should be between 1 and 8388608');
  });
  it('non-integer values', () => rejects(['-n', '1e3'], /invalid value for -n/));
  it('unknown flags and bad enum values', () => {
    rejects(['--bogus'], /bogus/);
    rejects(['--mode', 'paravirt,warp'], /--mode/);
    rejects(['--mode', 'tcp,tcp'], /duplicate/);
    rejects(['--output', 'json'], /--output/);
    rejects(['--fabric', 'pcie5'], /--fabric/);
    rejects(['--device-engine', 'x'], /--device-engine/);
  });
  it('zero tx depth or cq_mod, inline on read', () => {
    rejects(['-t', '0'], /TX depth/);
    rejects(['-Q', '0'], /CQ moderation/);
    rejects(['-I', '16'], /Inline/, READ_LAT);
    rejects(['-I', '1'], /Inline/, READ_BW);
  });
  it('-H outside latency tests', () => {
    rejects(['-H'], 'Available only on Latency tests', WRITE_BW);
    rejects(['-H'], 'Available only on Latency tests', SEND_BW);
    rejects(['-H'], 'Available only on Latency tests', READ_BW);
  });
  it('--spin-us must be a non-negative integer', () =>
    rejects(['--spin-us=1.5'], /invalid value for --spin-us/, WRITE_LAT));
});
