import assert from 'node:assert/strict';
import {
  CqCtx,
  DevLayout,
  DevWord,
  METRICS_BYTE_OFFSET,
  MetricSlot,
  MrCtx,
  PdCtx,
  QpCtx,
  TABLES_BYTE_OFFSET,
} from '../../../../hypervisor-sim/devices/rnic/DevLayout.js';
import { RnicDevice } from '../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { NIC_VERSION, NicReg, nicBarSize } from '../../../../protocol/rdma/NicRegs.js';

const SIZES = [
  { maxQp: 256, maxCq: 256, maxMr: 4096 },
  { maxQp: 2, maxCq: 2, maxMr: 2 },
  { maxQp: 33, maxCq: 7, maxMr: 100 },
];

describe('rnic layout: device memory tables', () => {
  for (const s of SIZES) {
    it(`tables do not overlap, are Int32-aligned and fill the buffer (${JSON.stringify(s)})`, () => {
      const L = new DevLayout(s);
      const tables = L.tables(s);
      let end = 0;
      for (const t of tables) {
        assert.ok(Number.isInteger(t.word) && t.word >= 0, `${t.name} starts on a word`);
        assert.ok(t.word >= end, `${t.name} starts at word ${t.word}, before the previous table ends (${end})`);
        end = t.word + t.stride * t.count;
      }
      assert.equal(tables[0].word, 0);
      assert.ok(end * 4 <= L.bytes, 'the last table fits');
      assert.equal(L.bytes % 8, 0, 'a multiple of 8 (Float64 metrics view)');
      assert.ok(L.bytes - end * 4 < 8, 'no slack beyond the 8-byte round-up');
    });

    it(`handles index the right entries (${JSON.stringify(s)})`, () => {
      const L = new DevLayout(s);
      assert.equal(L.pdBase(1) - L.pdBase(0), PdCtx.STRIDE);
      assert.equal(L.mrBase(s.maxMr - 1) + MrCtx.STRIDE, L.cq);
      assert.equal(L.cqBase(s.maxCq - 1) + CqCtx.STRIDE, L.qp);
      assert.equal(L.qpBase(s.maxQp - 1) + QpCtx.STRIDE, L.pending);
      assert.ok(L.pendingWords * 32 >= s.maxQp, 'one pending bit per QP');
      assert.equal(L.maxPd, s.maxQp);
    });
  }

  it('the header, metrics block and entry fields sit where the tables say', () => {
    assert.ok(
      DevWord.DB_SEQ < DevWord.HEADER && DevWord.DB_SLEEP < DevWord.HEADER && DevWord.DOORBELLS < DevWord.HEADER,
    );
    assert.equal(METRICS_BYTE_OFFSET, DevWord.HEADER * 4);
    assert.equal(METRICS_BYTE_OFFSET % 8, 0, 'Float64 alignment');
    assert.equal(TABLES_BYTE_OFFSET, METRICS_BYTE_OFFSET + MetricSlot.COUNT * 8);
    assert.ok(PdCtx.USERS < PdCtx.STRIDE);
    assert.ok(MrCtx.IOVA_HI < MrCtx.STRIDE);
    assert.ok(CqCtx.USERS < CqCtx.STRIDE);
    assert.equal(QpCtx.MAX_DEST_RD_ATOMIC, QpCtx.STRIDE - 1, 'QP context fills its 128-byte line');
    // VALID is word 0 of every entry: command handle checks rely on it.
    assert.equal(PdCtx.VALID + MrCtx.VALID + CqCtx.VALID + QpCtx.VALID, 0);
  });

  it('create() sizes the buffers and publishes the read-only registers', () => {
    const st = RnicDevice.create({
      name: 'nicX',
      portId: 9,
      maxQp: 40,
      maxCq: 8,
      maxMr: 64,
      maxQpWr: 512,
      maxCqe: 1024,
    });
    assert.equal(st.bar.byteLength, nicBarSize(40));
    assert.equal(st.dev.byteLength, new DevLayout(st.config).bytes);
    const r = new Int32Array(st.bar);
    assert.equal(r[NicReg.VERSION >> 2], NIC_VERSION);
    assert.equal(r[NicReg.PORT_ID >> 2], 9);
    assert.deepEqual(
      [NicReg.MAX_QP, NicReg.MAX_CQ, NicReg.MAX_MR, NicReg.MAX_QP_WR, NicReg.MAX_CQE].map((o) => r[o >> 2]),
      [40, 8, 64, 512, 1024],
    );
    assert.deepEqual(st.config, {
      name: 'nicX',
      portId: 9,
      maxQp: 40,
      maxCq: 8,
      maxMr: 64,
      maxQpWr: 512,
      maxCqe: 1024,
    });
    assert.equal(structuredClone(st).config.name, 'nicX');
  });

  it('create() refuses bad limits with PV_ERR_CONFIG', () => {
    for (const bad of [
      { maxQp: 1 },
      { maxMr: 1 << 24 },
      { maxCqe: 0 },
      { portId: -1 },
      { name: '' },
      { maxQpWr: 1.5 },
    ]) {
      assert.throws(() => RnicDevice.create({ name: 'n', portId: 1, ...bad }), { code: 'PV_ERR_CONFIG' });
    }
  });
});
