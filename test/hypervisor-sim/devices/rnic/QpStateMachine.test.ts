import assert from 'node:assert/strict';
import { ERROR_CATALOGUE } from '../../../../protocol/errors.js';
import { ModifyQpIn } from '../../../../protocol/rdma/NicRegs.js';
import { QpAttrMask, QpState, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { makeEnd, makeNics, makePair } from './helpers/Fixture.js';
import { INIT_MASK, type NicHarness, RTR_MASK, RTS_MASK } from './helpers/NicHarness.js';

const BAD_TRANSITION = ERROR_CATALOGUE.PV_ERR_RDMA_BAD_TRANSITION.status;

const INIT = { [ModifyQpIn.STATE]: QpState.INIT, [ModifyQpIn.PORT]: 1, [ModifyQpIn.ACCESS]: 7 };
const RTR = {
  [ModifyQpIn.STATE]: QpState.RTR,
  [ModifyQpIn.DEST_PORT]: 1,
  [ModifyQpIn.PATH_MTU]: 5,
  [ModifyQpIn.DEST_QPN]: 1,
  [ModifyQpIn.MIN_RNR_TIMER]: 12,
};
const RTS = { [ModifyQpIn.STATE]: QpState.RTS, [ModifyQpIn.RNR_RETRY]: 3 };

function oneQp(): { drv: NicHarness; qpn: number } {
  const { nics } = makeNics({ count: 1 });
  const end = makeEnd(nics[0]);
  return { drv: end.drv, qpn: end.qp.qpn };
}

function walk(drv: NicHarness, qpn: number, upTo: QpState): void {
  const steps: Array<[QpState, number, Record<number, number>]> = [
    [QpState.INIT, INIT_MASK, INIT],
    [QpState.RTR, RTR_MASK, RTR],
    [QpState.RTS, RTS_MASK, RTS],
  ];
  for (const [st, mask, attrs] of steps) {
    if (st > upTo) return;
    assert.equal(drv.modify(qpn, mask, attrs), 0, `→ ${st}`);
  }
}

describe('rnic QP state machine: RC transitions with the required attribute masks', () => {
  it('RESET → INIT → RTR → RTS → SQD → RTS applies the attributes', () => {
    const { drv, qpn } = oneQp();
    walk(drv, qpn, QpState.RTS);
    const q = drv.query(qpn);
    assert.equal(q.state, QpState.RTS);
    assert.equal(q.destQpn, 1);
    assert.equal(q.destPort, 1);
    assert.equal(drv.modify(qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.SQD }), 0);
    assert.equal(drv.query(qpn).state, QpState.SQD);
    assert.equal(drv.modify(qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RTS }), 0);
    assert.equal(drv.query(qpn).state, QpState.RTS);
  });

  for (const [name, mask, attrs, from] of [
    ['RESET → INIT', INIT_MASK, INIT, QpState.RESET],
    ['INIT → RTR', RTR_MASK, RTR, QpState.INIT],
    ['RTR → RTS', RTS_MASK, RTS, QpState.RTR],
  ] as const) {
    it(`${name} without any one of its required mask bits is BAD_TRANSITION and modifies nothing`, () => {
      const { drv, qpn } = oneQp();
      walk(drv, qpn, from);
      for (let bit = 1; bit <= mask; bit <<= 1) {
        if ((mask & bit) === 0) continue;
        assert.equal(drv.modify(qpn, mask & ~bit, attrs), BAD_TRANSITION, `mask without bit ${bit.toString(16)}`);
        assert.equal(drv.query(qpn).state, from);
      }
      assert.equal(drv.modify(qpn, mask, attrs), 0);
    });
  }

  it('skipping or reversing a state is BAD_TRANSITION; any → RESET and any → ERR are allowed', () => {
    const { drv, qpn } = oneQp();
    const to = (st: QpState, mask = QpAttrMask.STATE | RTR_MASK | RTS_MASK | INIT_MASK) =>
      drv.modify(qpn, mask, { ...INIT, ...RTR, ...RTS, [ModifyQpIn.STATE]: st });
    assert.equal(to(QpState.RTR), BAD_TRANSITION, 'RESET → RTR');
    assert.equal(to(QpState.RTS), BAD_TRANSITION, 'RESET → RTS');
    assert.equal(to(QpState.SQD), BAD_TRANSITION, 'RESET → SQD');
    assert.equal(to(QpState.SQE), BAD_TRANSITION, 'RESET → SQE');
    assert.equal(to(9 as QpState), BAD_TRANSITION, 'RESET → 9');
    walk(drv, qpn, QpState.RTR);
    assert.equal(to(QpState.INIT), BAD_TRANSITION, 'RTR → INIT');
    assert.equal(to(QpState.SQD), BAD_TRANSITION, 'RTR → SQD');
    assert.equal(drv.query(qpn).state, QpState.RTR);
    assert.equal(drv.modify(qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.ERR }), 0);
    assert.equal(drv.query(qpn).state, QpState.ERR);
    assert.equal(to(QpState.RTS), BAD_TRANSITION, 'ERR → RTS');
    assert.equal(drv.modify(qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RESET }), 0);
    assert.equal(drv.query(qpn).state, QpState.RESET);
    walk(drv, qpn, QpState.RTS);
    assert.equal(drv.modify(qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RESET }), 0, 'RTS → RESET');
  });

  it('a missing STATE bit, a wrong CUR_STATE or an out-of-range attribute fails and modifies nothing', () => {
    const { drv, qpn } = oneQp();
    assert.equal(drv.modify(qpn, INIT_MASK & ~QpAttrMask.STATE, INIT), BAD_TRANSITION);
    assert.equal(
      drv.modify(qpn, INIT_MASK | QpAttrMask.CUR_STATE, { ...INIT, [ModifyQpIn.CUR_STATE]: QpState.INIT }),
      BAD_TRANSITION,
    );
    const inv = ERROR_CATALOGUE.PV_ERR_INVALID_ARG.status;
    assert.equal(drv.modify(qpn, INIT_MASK, { ...INIT, [ModifyQpIn.PORT]: 2 }), inv);
    assert.equal(drv.modify(qpn, INIT_MASK, { ...INIT, [ModifyQpIn.PKEY]: 1 }), inv);
    assert.equal(
      drv.modify(qpn, INIT_MASK, { ...INIT, [ModifyQpIn.ACCESS]: 0x40 }),
      ERROR_CATALOGUE.PV_ERR_RDMA_BAD_ACCESS.status,
    );
    assert.equal(drv.query(qpn).state, QpState.RESET);
    assert.equal(
      drv.modify(qpn, INIT_MASK | QpAttrMask.CUR_STATE, { ...INIT, [ModifyQpIn.CUR_STATE]: QpState.RESET }),
      0,
    );
    for (const [word, v] of [
      [ModifyQpIn.PATH_MTU, 6],
      [ModifyQpIn.PATH_MTU, 0],
      [ModifyQpIn.DEST_QPN, 1 << 24],
      [ModifyQpIn.MIN_RNR_TIMER, 32],
    ]) {
      assert.equal(drv.modify(qpn, RTR_MASK, { ...RTR, [word]: v }), inv, `word ${word} = ${v}`);
    }
    const q = drv.query(qpn);
    assert.deepEqual([q.state, q.destQpn], [QpState.INIT, 0], 'no attribute of a failed RTR was applied');
    assert.equal(drv.modify(qpn, RTR_MASK, RTR), 0);
    assert.equal(drv.modify(qpn, RTS_MASK, { ...RTS, [ModifyQpIn.RNR_RETRY]: 8 }), inv);
    assert.equal(drv.modify(qpn, RTS_MASK, { ...RTS, [ModifyQpIn.RETRY_CNT]: 8 }), inv);
    assert.equal(drv.query(qpn).state, QpState.RTR);
  });

  it('WRs posted before RTS wait, then run when the QP reaches RTS; receives are usable from INIT', () => {
    const { a, b } = makePair({ sigAll: true });
    // Take a back to RESET and post while it climbs; b stays connected.
    assert.equal(a.drv.modify(a.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RESET }), 0);
    a.nic.drv.bytes.fill(0x5a, a.buf, a.buf + 64);
    a.drv.postSend(a.qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: a.buf, length: 64, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    assert.equal(a.drv.poll(a.scq).length, 0, 'nothing runs in RESET');
    assert.equal(a.drv.modify(a.qp.qpn, INIT_MASK, { ...INIT }), 0);
    a.drv.postRecv(a.qp, { wrId: 77, sgList: [{ addr: a.buf + 1024, length: 64, lkey: a.lkey }] });
    a.drv.postSend(a.qp, {
      wrId: 2,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: a.buf, length: 64, lkey: a.lkey }],
      remoteAddr: b.buf + 64,
      rkey: b.rkey,
    });
    assert.equal(
      a.drv.modify(a.qp.qpn, RTR_MASK, { ...RTR, [ModifyQpIn.DEST_PORT]: 2, [ModifyQpIn.DEST_QPN]: b.qp.qpn }),
      0,
    );
    // b can already SEND into a's receive (a is RTR).
    b.drv.postSend(b.qp, { wrId: 9, opcode: WrOpcode.SEND, sgList: [{ addr: b.buf + 4096, length: 8, lkey: b.lkey }] });
    assert.deepEqual(
      a.drv.poll(a.rcq).map((w) => [w.wrId, w.status, w.opcode]),
      [[77, WcStatus.SUCCESS, WcOpcode.RECV]],
    );
    assert.equal(a.drv.poll(a.scq).length, 0, 'nothing runs in RTR');
    assert.equal(a.drv.modify(a.qp.qpn, RTS_MASK, RTS), 0);
    assert.deepEqual(
      a.drv.poll(a.scq).map((w) => [w.wrId, w.status]),
      [
        [1, WcStatus.SUCCESS],
        [2, WcStatus.SUCCESS],
      ],
    );
    assert.equal(b.nic.drv.bytes[b.buf + 127], 0x5a);
  });

  it('→ RESET empties both queues without completions; the queues restart at the consumer indices', () => {
    const { a, b } = makePair({ sigAll: true });
    assert.equal(a.drv.modify(a.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.SQD }), 0);
    const w = (wrId: number) =>
      a.drv.postSend(a.qp, { wrId, opcode: WrOpcode.RDMA_WRITE, sgList: [], remoteAddr: b.buf, rkey: b.rkey });
    w(1);
    w(2);
    a.drv.postRecv(a.qp, { wrId: 3, sgList: [] });
    assert.equal(a.drv.modify(a.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RESET }), 0);
    const q = a.drv.query(a.qp.qpn);
    assert.deepEqual([q.state, q.sqCons, q.rqCons], [QpState.RESET, 2, 1]);
    a.drv.connect(a.qp, 2, b.qp.qpn);
    w(4);
    assert.deepEqual(
      a.drv.poll(a.scq).map((x) => x.wrId),
      [4],
      'the WRs dropped by RESET never run',
    );
    assert.equal(a.drv.poll(a.rcq).length, 0);
  });

  it('SQD stops taking new WRs; SQD → RTS resumes them', () => {
    const { a, b } = makePair({ sigAll: true });
    assert.equal(a.drv.modify(a.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.SQD }), 0);
    a.drv.postSend(a.qp, {
      wrId: 5,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: a.buf, length: 8, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    assert.equal(a.drv.poll(a.scq).length, 0);
    assert.equal(a.drv.modify(a.qp.qpn, QpAttrMask.STATE, { [ModifyQpIn.STATE]: QpState.RTS }), 0);
    assert.deepEqual(
      a.drv.poll(a.scq).map((w) => w.wrId),
      [5],
    );
  });
});
