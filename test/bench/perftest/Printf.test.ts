import assert from 'node:assert/strict';
import { fixed, general, significant, sprintf } from '../../../bench/perftest/Printf.js';

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
    ['%#x', [255], '0xff'],
    ['%#06x', [255], '0x00ff'],
    ['%#x', [0], '0'],
    ['%#X', [255], '0XFF'],
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

  // Expected strings were produced by glibc's printf (gcc, x86-64) for the same doubles.
  it('%g: fixed notation when -4 <= X < P, exponent notation otherwise, trailing zeros stripped', () => {
    const g: ReadonlyArray<readonly [string, number, string]> = [
      ['%g', 0.81, '0.81'],
      ['%g', 12.3456789, '12.3457'],
      ['%g', 1234567, '1.23457e+06'],
      ['%g', 100000, '100000'],
      ['%g', 1e6, '1e+06'],
      ['%g', 0.0001, '0.0001'],
      ['%g', 0.00001234, '1.234e-05'],
      ['%g', 0, '0'],
      ['%g', -2.5, '-2.5'],
      ['%g', 9.9999996, '10'],
      ['%g', 5e-324, '4.94066e-324'],
      ['%g', 1.7976931348623157e308, '1.79769e+308'],
      ['%.3g', 2.34567, '2.35'],
      ['%.10g', 0.1, '0.1'],
      ['%#g', 1, '1.00000'],
      ['%#.3g', 100, '100.'],
      ['%G', 1e-10, '1E-10'],
      ['%-8g|', 1.5, '1.5     |'],
      ['%8.3g|', 0.000123456, '0.000123|'],
      ['%e', 1234.5, '1.234500e+03'],
    ];
    for (const [fmt, v, want] of g) assert.equal(sprintf(fmt, v), want, `${fmt} of ${v}`);
    assert.equal(sprintf('%d, %g\n', 7, 582.1105), '7, 582.111\n');
  });

  it('%g and %e round exact binary ties to even, like glibc', () => {
    assert.equal(sprintf('%g', 123456.5), '123456');
    assert.equal(sprintf('%g', 123457.5), '123458');
    assert.equal(sprintf('%.0g', 2.5), '2');
    assert.equal(sprintf('%.0e', 15), '2e+01');
    assert.equal(sprintf('%.0e', 25), '2e+01');
    assert.equal(general(0.5, 0), '0.5');
    // Rounding that carries into a new digit moves the exponent: 9.9999996 -> 10.0000 (X = 1).
    assert.deepEqual(significant(9.9999996, 6), { digits: '100000', exp: 1 });
    assert.deepEqual(significant(0.000123456, 3), { digits: '123', exp: -4 });
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
