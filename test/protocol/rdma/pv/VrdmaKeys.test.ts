import assert from 'node:assert/strict';
import { indirectPagesFor, PV_REFS_PER_INDIRECT_PAGE, pagesSpanned } from '../../../../protocol/rdma/pv/PvConstants.js';
import {
  formatBackendInfo,
  formatFrontendKeys,
  parseBackendInfo,
  parseFrontendKeys,
  parseStoreUint,
  type VrdmaBackendInfo,
} from '../../../../protocol/rdma/pv/VrdmaKeys.js';

const INFO: VrdmaBackendInfo = {
  portId: 2,
  maxQp: 64,
  maxCq: 128,
  maxMr: 256,
  maxPinnedPages: 65536,
  maxOutstandingWr: 16384,
  maxCqe: 4096,
  maxQpWr: 8192,
  featureCopy: true,
};

const FRONT = {
  ctrlRingRef: 8,
  dataRingOrder: 3,
  dataRingRefs: [9, 10, 11, 12, 13, 14, 15, 16],
  eventChannel: 4,
  mode: 'copy' as const,
};

describe('vrdma xenbus keys: what each end publishes parses back to the same values', () => {
  it('backend probe keys round-trip', () => {
    assert.deepEqual(parseBackendInfo(formatBackendInfo(INFO)), INFO);
    assert.equal(formatBackendInfo(INFO)['port-id'], '2');
  });

  it('frontend keys round-trip: data-ring-ref0..7, one event channel, the mode', () => {
    const keys = formatFrontendKeys(FRONT);
    assert.equal(keys['data-ring-ref7'], '16');
    assert.deepEqual(parseFrontendKeys(keys, 3), FRONT);
  });
});

describe('vrdma xenbus keys §6 (hostile peer): store values are parsed strictly', () => {
  it('numbers are plain decimals ≤ 2^32 − 1: no sign, blanks, hex, leading zeros or overflow', () => {
    for (const bad of ['-1', ' 1', '0x10', '01', '1e3', '', '4294967296', '99999999999']) {
      assert.throws(() => parseStoreUint(bad, 'k'), { code: 'PV_ERR_BAD_REQUEST' }, bad);
    }
    assert.throws(() => parseStoreUint(undefined, 'k'), { code: 'PV_ERR_BAD_REQUEST' });
    assert.equal(parseStoreUint('4294967295', 'k'), 0xffff_ffff);
    assert.equal(parseStoreUint('0', 'k'), 0);
  });

  it('the data ring must be exactly the order the backend serves; a missing ref or bad mode is refused', () => {
    const keys = formatFrontendKeys(FRONT);
    assert.throws(() => parseFrontendKeys({ ...keys, 'data-ring-page-order': '4' }, 3), {
      code: 'PV_ERR_BAD_REQUEST',
    });
    const { 'data-ring-ref5': _gone, ...missing } = keys;
    assert.throws(() => parseFrontendKeys(missing, 3), { code: 'PV_ERR_BAD_REQUEST' });
    assert.throws(() => parseFrontendKeys({ ...keys, mode: 'turbo' }, 3), { code: 'PV_ERR_BAD_REQUEST' });
    assert.throws(() => parseFrontendKeys({ ...keys, 'event-channel': 'x' }, 3), { code: 'PV_ERR_BAD_REQUEST' });
  });
});

describe('vrdma MR refs: pages spanned and indirect pages needed', () => {
  it('a range counts every page it touches, aligned or not', () => {
    assert.equal(pagesSpanned(0, 1), 1);
    assert.equal(pagesSpanned(0, 4096), 1);
    assert.equal(pagesSpanned(4095, 2), 2);
    assert.equal(pagesSpanned(100, 8 << 20), 2049);
    assert.equal(pagesSpanned(2 ** 52, 4096), 1);
  });

  it('1024 refs fit one indirect page', () => {
    assert.equal(PV_REFS_PER_INDIRECT_PAGE, 1024);
    assert.equal(indirectPagesFor(1), 1);
    assert.equal(indirectPagesFor(1024), 1);
    assert.equal(indirectPagesFor(1025), 2);
    assert.equal(indirectPagesFor(2049), 3);
  });
});
