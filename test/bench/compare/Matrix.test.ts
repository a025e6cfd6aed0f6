import assert from 'node:assert/strict';
import { parseCompareFlags } from '../../../bench/compare/Compare.js';
import { ALL_TRANSPORTS, formatSize, planBreakdown, planMatrix } from '../../../bench/compare/Matrix.js';
import { LENT_TRANSPORTS } from '../../../bench/compare/Results.js';

describe('bench/compare matrix and flags', () => {
  it('the quick matrix runs every single-host transport for each (op, kind, size) row, write rows plus 64 B read/send latency', () => {
    const plan = planMatrix({ quick: true }).filter((p) => !p.op.startsWith('blk-'));
    const rows = new Set(plan.map((p) => `${p.op} ${p.kind} ${p.size}`));
    const single = ALL_TRANSPORTS.filter((t) => !LENT_TRANSPORTS.includes(t));
    for (const row of rows) {
      const ts = plan.filter((p) => `${p.op} ${p.kind} ${p.size}` === row).map((p) => p.transport);
      assert.deepEqual(
        ts.filter((t) => !LENT_TRANSPORTS.includes(t)),
        single,
        `row ${row}`,
      );
    }
    assert.ok(rows.has('read lat 64') && rows.has('send lat 64') && rows.has('write bw 4194304'));
  });

  it('block rows: 4 KiB randread latency at iodepth 1 and 128 KiB sequential read bandwidth at iodepth 16, over the block paths only', () => {
    const blk = planMatrix({ quick: true }).filter((p) => p.op.startsWith('blk-'));
    assert.deepEqual(
      blk.map((p) => `${p.op} ${p.kind} ${p.size} ${p.transport} ${p.txDepth}`),
      [
        'blk-randread lat 4096 native 1',
        'blk-randread lat 4096 passthrough 1',
        'blk-randread lat 4096 paravirt 1',
        'blk-randread lat 4096 lent 1',
        'blk-seqread bw 131072 native 16',
        'blk-seqread bw 131072 passthrough 16',
        'blk-seqread bw 131072 paravirt 16',
        'blk-seqread bw 131072 lent 16',
      ],
      'the quick matrix runs a lent SSD natively only',
    );
    const lentBlk = (opts: Parameters<typeof planMatrix>[0]) =>
      planMatrix(opts)
        .filter((p) => p.op.startsWith('blk-') && LENT_TRANSPORTS.includes(p.transport))
        .map((p) => `${p.op} ${p.transport}`);
    const both = [
      'blk-randread lent',
      'blk-randread lent-passthrough',
      'blk-seqread lent',
      'blk-seqread lent-passthrough',
    ];
    assert.deepEqual(lentBlk({ quick: false }), both, 'the full matrix runs it passed through too');
    assert.deepEqual(lentBlk({ quick: true, transports: LENT_TRANSPORTS, transportsNamed: true }), both);
    assert.equal(parseCompareFlags(['--transports', 'lent']).transportsNamed, true);
    assert.equal(parseCompareFlags([]).transportsNamed, false);
    for (const p of blk) assert.ok((p.deviceBytes ?? 0) >= p.size);
    // Chosen ops and transports narrow them; picked sizes (RDMA message sizes) leave them out.
    assert.deepEqual(
      planMatrix({ quick: true, ops: ['blk-seqread'], transports: ['paravirt', 'tcp'] }).map((p) => p.transport),
      ['paravirt'],
    );
    assert.ok(planMatrix({ quick: true, sizes: [64] }).every((p) => !p.op.startsWith('blk-')));
    assert.deepEqual(parseCompareFlags(['--ops', 'blk-randread']).ops, ['blk-randread']);
  });

  it('the full matrix covers write, read and send, latency and bandwidth', () => {
    const plan = planMatrix({ quick: false });
    for (const op of ['write', 'read', 'send']) {
      for (const kind of ['lat', 'bw'])
        assert.ok(
          plan.some((p) => p.op === op && p.kind === kind),
          `${op} ${kind}`,
        );
    }
  });

  it('iteration counts stay within perftest limits and tx depth never exceeds iterations', () => {
    for (const p of [...planMatrix({ quick: true }), ...planMatrix({ quick: false, bwBytes: 1 << 20 })]) {
      assert.ok(p.iters >= 5, `${p.kind} ${p.size}: ${p.iters}`);
      assert.ok(p.txDepth >= 1 && p.txDepth <= p.iters);
      if (p.kind === 'lat') assert.equal(p.txDepth, 1);
    }
  });

  it('user choices narrow the matrix', () => {
    const plan = planMatrix({ quick: true, transports: ['tcp'], kinds: ['lat'], sizes: [8], latIters: 50 });
    assert.deepEqual(
      plan.map((p) => [p.transport, p.op, p.kind, p.size, p.iters]),
      [['tcp', 'write', 'lat', 8, 50]],
    );
  });

  it('the breakdown runs one latency and one bandwidth cell per transport', () => {
    const b = planBreakdown(['native', 'paravirt'], true);
    assert.deepEqual(
      b.map((p) => `${p.transport} ${p.kind}`),
      ['native lat', 'paravirt lat', 'native bw', 'paravirt bw'],
    );
  });

  it('flags: defaults, lists and rejections with a message that says what to do', () => {
    const d = parseCompareFlags([]);
    assert.equal(d.quick, false);
    assert.equal(d.concurrency, 1);
    assert.deepEqual(d.transports, ALL_TRANSPORTS);
    const q = parseCompareFlags([
      '--quick',
      '--transports',
      'tcp,paravirt',
      '--sizes',
      '64,4096',
      '--concurrency',
      '2',
    ]);
    assert.deepEqual(q.transports, ['tcp', 'paravirt']);
    assert.deepEqual(q.sizes, [64, 4096]);
    assert.equal(q.concurrency, 2);
    assert.throws(() => parseCompareFlags(['--transports', 'rdma']), {
      code: 'PV_ERR_CONFIG',
      message: /unknown value 'rdma'/,
    });
    assert.throws(() => parseCompareFlags(['--concurrency', '0']), { code: 'PV_ERR_CONFIG' });
    assert.equal(parseCompareFlags(['--fabric', 'pcie3-x8-ntb']).fabric, 'pcie3-x8-ntb');
    assert.throws(() => parseCompareFlags(['--fabric', 'pcie4']), {
      code: 'PV_ERR_CONFIG',
      message: /unknown profile 'pcie4' \(ideal\|pcie3-x8-ntb\)/,
    });
    assert.throws(() => parseCompareFlags(['--bogus']));
  });

  it('lent NICs run the headline write rows in the quick matrix, every write row in the full one, and no breakdown', () => {
    const lent = (quick: boolean) =>
      planMatrix({ quick })
        .filter((p) => LENT_TRANSPORTS.includes(p.transport) && !p.op.startsWith('blk-'))
        .map((p) => `${p.transport} ${p.op} ${p.kind} ${p.size}`);
    assert.deepEqual(lent(true), [
      'lent write lat 64',
      'lent-passthrough write lat 64',
      'lent write bw 4194304',
      'lent-passthrough write bw 4194304',
    ]);
    const full = lent(false);
    assert.ok(full.length > 4 && full.every((r) => r.includes(' write ')));
    assert.ok(planBreakdown(ALL_TRANSPORTS, true).every((p) => !LENT_TRANSPORTS.includes(p.transport)));
  });

  it('sizes print in binary units', () => {
    assert.equal(formatSize(64), '64 B');
    assert.equal(formatSize(4096), '4 KiB');
    assert.equal(formatSize(4 << 20), '4 MiB');
    assert.equal(formatSize(1000), '1000 B');
  });
});
