import assert from 'node:assert/strict';
import { fixed, sprintf } from '../../../bench/perftest/Printf.js';

describe('perftest Printf: C printf semantics for the conversions perftest rows use', () => {
  const cases: ReadonlyArray<readonly [string, readonly (number | bigint | string)[], string]> = [
    ['%-7lu|', [2], '2      |'],
    ['%-7lu|', [12345678], '12345678|'],
    ['%-10lu|', [5000], '5000      |'],
    ['%lu', [1000], '1000'],
    ['%5d', [42], '   42'],
    ['%05d', [42], '00042'],
    ['%-05d|', [42], '42   |'],
    ['%+d', [5], '+5'],
    ['% d', [5], ' 5'],
    ['%.3d', [7], '007'],
    ['%d', [-7], '-7'],
    ['%lu', [2n ** 64n - 1n], '18446744073709551615'],
    ['%x', [255], 'ff'],
    ['%#x', [255], 'ff'],
    ['%-7.2f|', [0.81], '0.81   |'],
    ['%-7.2f|', [11758.214], '11758.21|'],
    ['%7.2f', [-1.5], '  -1.50'],
    ['%07.2f', [-1.5], '-001.50'],
    ['%-7.6lf|', [0.188081], '0.188081|'],
    ['%lf', [1], '1.000000'],
    ['%f', [1e21], '1000000000000000000000.000000'],
    ['%.2f', [-0], '-0.00'],
    ['%s=%-4s|', ['a', 'bc'], 'a=bc  |'],
    ['%.1s', ['xyz'], 'x'],
    ['100%%', [], '100%'],
    ['\t%d\t\t', [1], '\t1\t\t'],
  ];
  for (const [fmt, args, want] of cases) {
    it(`sprintf(${JSON.stringify(fmt)}, ${args.map(String).join(', ')}) === ${JSON.stringify(want)}`, () => {
      assert.equal(sprintf(fmt, ...args), want);
    });
  }

  it('rounds exact binary ties to even like glibc, unlike toFixed', () => {
    assert.equal(fixed(0.125, 2), '0.12'); // toFixed gives 0.13
    assert.equal(fixed(0.375, 2), '0.38');
    assert.equal(fixed(2.5, 0), '2');
    assert.equal(fixed(3.5, 0), '4');
    assert.equal(fixed(0.5, 0), '0');
    assert.equal(fixed(9.5, 0), '10');
    assert.equal(fixed(0.0625, 3), '0.062');
  });

  it('rounds non-ties by the exact binary value (1.005 is just below 1.005)', () => {
    assert.equal(fixed(1.005, 2), '1.00');
    assert.equal(fixed(2.675, 2), '2.67');
    assert.equal(fixed(0.1 + 0.2, 2), '0.30');
    assert.equal(fixed(1.0051, 2), '1.01');
  });

  it('prints nan and inf as C does', () => {
    assert.equal(sprintf('%f', Number.NaN), 'nan');
    assert.equal(sprintf('%f', Number.POSITIVE_INFINITY), 'inf');
    assert.equal(sprintf('%f', Number.NEGATIVE_INFINITY), '-inf');
  });

  it('throws PV_ERR_INVALID_ARG on too few arguments or a non-finite integer', () => {
    assert.throws(() => sprintf('%d %d', 1), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => sprintf('%lu', Number.NaN), { code: 'PV_ERR_INVALID_ARG' });
  });
});
