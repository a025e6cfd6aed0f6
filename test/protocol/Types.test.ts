import assert from 'node:assert/strict';
import { ArgError } from '../../protocol/errors.js';
import {
  addrOf,
  DOMID_MAX,
  domId,
  evtchnPort,
  gfn,
  gfnOf,
  grantRef,
  guestPhysAddr,
  hostPhysAddr,
  iova,
  PAGE_SIZE,
  ringIndex,
} from '../../protocol/Types.js';

const NOT_INTEGERS = [0.5, -0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

/** [constructor name, constructor, largest valid value, smallest invalid value above it]. */
const CHECKED: ReadonlyArray<readonly [string, (v: number) => number, number, number]> = [
  ['domId', domId, DOMID_MAX, DOMID_MAX + 1],
  ['grantRef', grantRef, 0xffff_ffff, 2 ** 32],
  ['evtchnPort', evtchnPort, 0xffff_ffff, 2 ** 32],
  ['gfn', gfn, 0xffff_ffff, 2 ** 32],
  ['guestPhysAddr', guestPhysAddr, Number.MAX_SAFE_INTEGER, 2 ** 53],
  ['iova', iova, Number.MAX_SAFE_INTEGER, 2 ** 53],
  ['hostPhysAddr', hostPhysAddr, Number.MAX_SAFE_INTEGER, 2 ** 53],
];

function invalidArg(e: unknown): boolean {
  assert.ok(e instanceof ArgError, `expected ArgError, got ${String(e)}`);
  assert.equal(e.code, 'PV_ERR_INVALID_ARG');
  return true;
}

describe('types (style §3.3): checking constructors for branded handles and addresses', () => {
  for (const [name, make, max, tooBig] of CHECKED) {
    it(`${name} accepts 0 and ${max}, rejects negatives, non-integers and ${tooBig} with PV_ERR_INVALID_ARG`, () => {
      assert.equal(make(0), 0);
      assert.equal(make(max), max);
      for (const bad of [-1, tooBig, ...NOT_INTEGERS]) {
        assert.throws(() => make(bad), invalidArg, `${name}(${bad})`);
      }
    });
  }

  it('ringIndex wraps modulo 2^32 as RING_IDX arithmetic does', () => {
    const cases: ReadonlyArray<readonly [number, number]> = [
      [0, 0],
      [0xffff_ffff, 0xffff_ffff],
      [2 ** 32, 0],
      [2 ** 32 + 5, 5],
      [-1, 0xffff_ffff],
      [-(2 ** 32), 0],
      [0x7fff_ffff + 1, 0x8000_0000],
    ];
    for (const [input, wrapped] of cases) assert.equal(ringIndex(input), wrapped, `ringIndex(${input})`);
  });

  it('gfnOf / addrOf convert between frames and addresses', () => {
    assert.equal(gfnOf(guestPhysAddr(3 * PAGE_SIZE + 17)), 3);
    assert.equal(addrOf(gfn(5)), 5 * PAGE_SIZE);
  });
});
