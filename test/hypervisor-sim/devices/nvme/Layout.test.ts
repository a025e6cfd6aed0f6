import assert from 'node:assert/strict';
import {
  CqCtx,
  NVME_METRIC_NAMES,
  NVME_METRICS_BYTE_OFFSET,
  NVME_QUEUES_BYTE_OFFSET,
  NvmeDevWord,
  NvmeMetric,
  nvmeDevBytes,
  QUEUE_ENTRY_WORDS,
  queueBase,
  SqCtx,
} from '../../../../hypervisor-sim/devices/nvme/NvmeLayout.js';

describe('nvme device memory layout: header, metrics and queue contexts', () => {
  it('the header words fit the header, the metrics block is Float64 aligned and holds every counter', () => {
    for (const w of [NvmeDevWord.LOCK, NvmeDevWord.DOORBELLS, NvmeDevWord.NSQA, NvmeDevWord.NCQA]) {
      assert.ok(w < NvmeDevWord.HEADER);
    }
    assert.equal(NVME_METRICS_BYTE_OFFSET, NvmeDevWord.HEADER * 4);
    assert.equal(NVME_METRICS_BYTE_OFFSET % 8, 0);
    assert.ok(NVME_METRIC_NAMES.length <= NvmeMetric.COUNT);
    assert.equal(NVME_METRIC_NAMES[NvmeMetric.CQ_FULL_STALLS], 'cqFullStalls');
    assert.equal(NVME_QUEUES_BYTE_OFFSET, NVME_METRICS_BYTE_OFFSET + NvmeMetric.COUNT * 8);
  });

  it('an entry is an SQ context (words 0-7) then a CQ context (8-15), and entries tile the buffer', () => {
    const sq = [SqCtx.VALID, SqCtx.SIZE, SqCtx.BASE_LO, SqCtx.BASE_HI, SqCtx.HEAD, SqCtx.TAIL, SqCtx.CQID];
    const cq = [
      CqCtx.VALID,
      CqCtx.SIZE,
      CqCtx.BASE_LO,
      CqCtx.BASE_HI,
      CqCtx.TAIL,
      CqCtx.HEAD,
      CqCtx.PHASE,
      CqCtx.SQ_USERS,
    ];
    assert.equal(new Set([...sq, ...cq]).size, sq.length + cq.length, 'no two fields share a word');
    assert.ok(sq.every((w) => w < SqCtx.WORDS));
    assert.ok(cq.every((w) => w >= SqCtx.WORDS && w < QUEUE_ENTRY_WORDS));
    for (const q of [1, 16, 1024]) {
      assert.equal(nvmeDevBytes(q), NVME_QUEUES_BYTE_OFFSET + (q + 1) * 64);
      assert.equal(queueBase(q) + QUEUE_ENTRY_WORDS, nvmeDevBytes(q) / 4, 'the last entry ends the buffer');
    }
    assert.equal(queueBase(0) * 4, NVME_QUEUES_BYTE_OFFSET);
  });
});
