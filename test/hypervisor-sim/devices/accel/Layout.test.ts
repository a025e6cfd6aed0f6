import assert from 'node:assert/strict';
import {
  ACCEL_CTL_BYTES,
  ACCEL_METRIC_NAMES,
  ACCEL_METRICS_BYTE_OFFSET,
  AccelCtlWord,
  AccelMetric,
} from '../../../../hypervisor-sim/devices/accel/AccelLayout.js';

describe('accel control memory layout: header words, then the Float64 metrics block', () => {
  it('LOCK at 0, DOORBELLS at 4, metrics at byte 64 (Float64 aligned), 192 bytes in all', () => {
    assert.equal(AccelCtlWord.LOCK * 4, 0);
    assert.equal(AccelCtlWord.DOORBELLS * 4, 4);
    assert.equal(ACCEL_METRICS_BYTE_OFFSET, 64);
    assert.equal(ACCEL_METRICS_BYTE_OFFSET % 8, 0);
    assert.equal(ACCEL_CTL_BYTES, 192);
  });

  it('every counter has a slot inside the block, and the names follow the slots', () => {
    assert.ok(ACCEL_METRIC_NAMES.length <= AccelMetric.COUNT);
    assert.equal(ACCEL_METRIC_NAMES[AccelMetric.DMA_TRANSFERS], 'dmaTransfers');
    assert.equal(ACCEL_METRIC_NAMES[AccelMetric.DMA_FAULTS], 'dmaFaults');
    assert.equal(ACCEL_METRIC_NAMES[AccelMetric.MATMULS], 'matmuls');
    assert.equal(ACCEL_METRIC_NAMES[AccelMetric.RESETS], 'resets');
    assert.equal(new Set(ACCEL_METRIC_NAMES).size, ACCEL_METRIC_NAMES.length);
  });
});
