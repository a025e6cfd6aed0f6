/**
 * `pvio fuzz` argument rules: a backend and a budget are required, values are checked, and
 * each usage error says what to do.
 */

import assert from 'node:assert/strict';
import { parseFuzzArgs } from '../../../cli/fuzz.js';

describe('pvio fuzz: usage errors say what to do', () => {
  it('parses backend, budget, seed and --json (also --flag=value)', () => {
    const a = parseFuzzArgs(['--backend', 'rdma', '--seconds', '60', '--seed=42', '--json']);
    assert.deepEqual(a, { backends: ['rdma'], seconds: 60, cases: undefined, seed: 42, json: true });
    assert.deepEqual(parseFuzzArgs(['--backend', 'all', '--cases', '1']).backends, ['rdma', 'blk', 'virtq']);
  });

  it('refuses a missing backend, an unknown backend, a missing budget, bad numbers and unknown flags', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--seconds', '5'], /--backend rdma/],
      [['--backend', 'nvme', '--seconds', '5'], /rdma, blk, virtq or all, got 'nvme'/],
      [['--backend', 'rdma'], /give a budget: --seconds N/],
      [['--backend', 'rdma', '--seconds', '-1'], /--seconds must be an integer/],
      [['--backend', 'rdma', '--seconds'], /--seconds needs a value/],
      [['--backend', 'rdma', '--cases', '1', '--seed', '2.5'], /--seed must be an integer/],
      [['--backend', 'rdma', '--cases', '1', '--fast'], /unknown option '--fast'/],
    ];
    for (const [argv, msg] of cases) {
      assert.throws(
        () => parseFuzzArgs(argv),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'PV_ERR_INVALID_ARG');
          assert.match(e.message, msg);
          return true;
        },
      );
    }
  });
});
