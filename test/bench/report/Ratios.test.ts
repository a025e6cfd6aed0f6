import assert from 'node:assert/strict';
import type { CellResult, CompareResults } from '../../../bench/compare/Results.js';
import { findCell } from '../../../bench/compare/Results.js';
import { cellValue, floorFor, ratio, ratios } from '../../../bench/report/Ratios.js';
import { compareFixture, summary } from './CompareFixture.js';

function cell(r: CompareResults, transport: CellResult['transport'], kind: 'lat' | 'bw', size: number): CellResult {
  const c = findCell(r, { transport, op: 'write', kind, size });
  assert.ok(c, `fixture has ${transport} write_${kind} ${size}`);
  return c;
}

describe('report Ratios: every ratio is this cell / the reference cell of the same op, kind and size', () => {
  it('paravirt 10 µs vs native 2 µs is 5.00 to native; passthrough 2.2 µs gives 10/2.2', () => {
    const r = compareFixture();
    const q = ratios(r, cell(r, 'paravirt', 'lat', 2));
    assert.equal(q.value, 10);
    assert.equal(q.toNative?.toFixed(2), '5.00');
    assert.equal(q.toPassthrough, 10 / 2.2);
  });

  it('a transport is 1 to itself', () => {
    const r = compareFixture();
    assert.equal(ratios(r, cell(r, 'native', 'lat', 2)).toNative, 1);
    assert.equal(ratios(r, cell(r, 'passthrough', 'bw', 4096)).toPassthrough, 1);
  });

  it('write/send latency floor is half the spinning hand-off round trip, read latency the full one', () => {
    const r = compareFixture();
    assert.equal(floorFor(r, { op: 'write', kind: 'lat' }), 0.1);
    assert.equal(floorFor(r, { op: 'send', kind: 'lat' }), 0.1);
    assert.equal(floorFor(r, { op: 'read', kind: 'lat' }), 0.2);
    const q = ratios(r, cell(r, 'paravirt', 'lat', 2));
    assert.equal(q.floor, 0.1);
    assert.equal(q.toFloor, 100);
  });

  it('bandwidth compares average MiB/s, and its floor is the memcpy bandwidth', () => {
    const r = compareFixture();
    const q = ratios(r, cell(r, 'paravirt', 'bw', 4096));
    assert.equal(q.value, 1200);
    assert.equal(q.toNative, 1200 / 3100);
    assert.equal(q.toPassthrough, 1200 / 2900);
    assert.equal(q.floor, 22000);
    assert.equal(q.toFloor, 1200 / 22000);
  });

  it('a failed cell has no value and no ratios; a cell whose reference failed or never ran has no ratio to it', () => {
    const r = compareFixture();
    const failed = ratios(r, cell(r, 'paravirt', 'bw', 65536));
    assert.equal(failed.value, undefined);
    assert.equal(failed.toNative, undefined);
    assert.equal(failed.toFloor, undefined);
    assert.equal(failed.floor, 22000);
    // passthrough write_lat 4096 never ran.
    const q = ratios(r, cell(r, 'paravirt', 'lat', 4096));
    assert.equal(q.toPassthrough, undefined);
    assert.equal(q.toNative, 11.5 / 2.6);
  });

  it('a zero, NaN or missing figure gives no ratio rather than 0 or Infinity', () => {
    assert.equal(ratio(1, 0), undefined);
    assert.equal(ratio(0, 1), undefined);
    assert.equal(ratio(Number.NaN, 1), undefined);
    assert.equal(ratio(undefined, 1), undefined);
    assert.equal(ratio(3, 2), 1.5);
    const r = { ...compareFixture(), floors: { ...compareFixture().floors, handoffSpinRttUs: summary(Number.NaN, 1) } };
    assert.equal(floorFor(r, { op: 'write', kind: 'lat' }), undefined);
    assert.equal(cellValue(undefined), undefined);
  });
});
