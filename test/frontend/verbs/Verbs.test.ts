/**
 * The verbs API's own rules, checked above any provider so every transport refuses the same
 * misuse with the same typed error — and a refused call never reaches the provider.
 */

import assert from 'node:assert/strict';
import { Context, type Cq, type Pd, type Qp } from '../../../frontend/verbs/Objects.js';
import {
  allocPd,
  closeDevice,
  createCq,
  createQp,
  deallocPd,
  deregMr,
  destroyCq,
  destroyQp,
  modifyQp,
  postRecv,
  postSend,
  regMr,
} from '../../../frontend/verbs/Verbs.js';
import {
  Access,
  QpAttrMask,
  type QpCap,
  QpState,
  SendFlags,
  type SendWr,
  WrOpcode,
} from '../../../protocol/rdma/Verbs.js';
import { domId, type GuestPhysAddr } from '../../../protocol/Types.js';
import { FakeProvider } from './helpers/FakeProvider.js';
import { fakeEnv } from './helpers/fakeEnv.js';

const CAP: QpCap = { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 2, maxRecvSge: 1, maxInlineData: 16 };
const INIT_MASK = QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS;
const RTR_MASK =
  QpAttrMask.STATE |
  QpAttrMask.AV |
  QpAttrMask.PATH_MTU |
  QpAttrMask.DEST_QPN |
  QpAttrMask.RQ_PSN |
  QpAttrMask.MAX_DEST_RD_ATOMIC |
  QpAttrMask.MIN_RNR_TIMER;
const RTS_MASK =
  QpAttrMask.STATE |
  QpAttrMask.SQ_PSN |
  QpAttrMask.MAX_QP_RD_ATOMIC |
  QpAttrMask.RETRY_CNT |
  QpAttrMask.RNR_RETRY |
  QpAttrMask.TIMEOUT;

function setup() {
  const env = fakeEnv(domId(1));
  const provider = new FakeProvider(env.memory);
  const ctx = new Context(env, { device: 'nic0', kind: 'rdma-nic', transport: 'native' }, provider);
  const pd = allocPd(ctx);
  const cq = createCq(ctx, 16);
  const qp = createQp(pd, { sendCq: cq, recvCq: cq, cap: CAP });
  const buf = ctx.allocBuffer(8192);
  return { env, provider, ctx, pd, cq, qp, buf };
}

function toRts(qp: Qp): void {
  modifyQp(qp, { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, INIT_MASK);
  modifyQp(
    qp,
    {
      qpState: QpState.RTR,
      ahAttr: { dlid: 1 },
      pathMtu: 5,
      destQpNum: 9,
      rqPsn: 0,
      maxDestRdAtomic: 1,
      minRnrTimer: 12,
    },
    RTR_MASK,
  );
  modifyQp(qp, { qpState: QpState.RTS, sqPsn: 0, maxRdAtomic: 1, retryCnt: 7, rnrRetry: 7, timeout: 14 }, RTS_MASK);
}

function write(buf: GuestPhysAddr, nsge: number, extra: Partial<SendWr> = {}): SendWr {
  return {
    wrId: 1,
    opcode: WrOpcode.RDMA_WRITE,
    remoteAddr: 0,
    rkey: 1,
    sgList: Array.from({ length: nsge }, (_, i) => ({ addr: buf + i * 64, length: 64, lkey: 1 })),
    ...extra,
  };
}

describe('verbs: regMr access rules (ibv_reg_mr.3)', () => {
  it('REMOTE_WRITE without LOCAL_WRITE → PV_ERR_RDMA_BAD_ACCESS, nothing registered', () => {
    const { pd, buf } = setup();
    const refs = pd.refs;
    assert.throws(() => regMr(pd, buf, 4096, Access.REMOTE_WRITE), { code: 'PV_ERR_RDMA_BAD_ACCESS' });
    assert.throws(() => regMr(pd, buf, 4096, Access.REMOTE_ATOMIC | Access.REMOTE_READ), {
      code: 'PV_ERR_RDMA_BAD_ACCESS',
    });
    assert.equal(pd.refs, refs);
  });

  it('unknown access bits → PV_ERR_RDMA_BAD_ACCESS', () => {
    const { pd, buf } = setup();
    assert.throws(() => regMr(pd, buf, 4096, 0x40), { code: 'PV_ERR_RDMA_BAD_ACCESS' });
  });

  it('a range outside the caller memory → PV_ERR_RDMA_BAD_MEMORY; length 0 → PV_ERR_BAD_LENGTH', () => {
    const { ctx, pd } = setup();
    assert.throws(() => regMr(pd, (ctx.memory.size - 4096) as GuestPhysAddr, 8192, 0), {
      code: 'PV_ERR_RDMA_BAD_MEMORY',
    });
    assert.throws(() => regMr(pd, 0 as GuestPhysAddr, 0, 0), { code: 'PV_ERR_BAD_LENGTH' });
  });

  it('a valid registration returns lkey, rkey, addr and length', () => {
    const { pd, buf } = setup();
    const mr = regMr(pd, buf, 4096, Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ);
    assert.equal(mr.addr, buf);
    assert.equal(mr.length, 4096);
    assert.equal(mr.rkey, mr.lkey + 0x1000);
  });
});

describe('verbs: createQp (ibv_create_qp.3)', () => {
  it('a non-RC QP type → PV_ERR_NOT_SUPPORTED', () => {
    const { pd, cq } = setup();
    assert.throws(() => createQp(pd, { sendCq: cq, recvCq: cq, cap: CAP, qpType: 4 as never }), {
      code: 'PV_ERR_NOT_SUPPORTED',
    });
  });

  it('more SGEs than a WQE carries → PV_ERR_LIMIT', () => {
    const { pd, cq } = setup();
    assert.throws(() => createQp(pd, { sendCq: cq, recvCq: cq, cap: { ...CAP, maxSendSge: 6 } }), {
      code: 'PV_ERR_LIMIT',
    });
    assert.throws(() => createQp(pd, { sendCq: cq, recvCq: cq, cap: { ...CAP, maxInlineData: 81 } }), {
      code: 'PV_ERR_LIMIT',
    });
  });

  it('a CQ of another context → PV_ERR_INVALID_ARG', () => {
    const { pd } = setup();
    const other = setup();
    assert.throws(() => createQp(pd, { sendCq: other.cq, recvCq: other.cq, cap: CAP }), {
      code: 'PV_ERR_INVALID_ARG',
    });
  });
});

describe('verbs: modifyQp RC transitions (ibv_modify_qp.3 NOTES)', () => {
  it('RESET → RTR skips INIT → PV_ERR_RDMA_BAD_TRANSITION, nothing reaches the provider', () => {
    const { provider, qp } = setup();
    assert.throws(
      () =>
        modifyQp(
          qp,
          {
            qpState: QpState.RTR,
            ahAttr: { dlid: 1 },
            pathMtu: 5,
            destQpNum: 9,
            rqPsn: 0,
            maxDestRdAtomic: 1,
            minRnrTimer: 1,
          },
          RTR_MASK,
        ),
      { code: 'PV_ERR_RDMA_BAD_TRANSITION' },
    );
    assert.equal(provider.modifies.length, 0);
    assert.equal(qp.state, QpState.RESET);
  });

  it('a modify without STATE, or INIT → INIT → PV_ERR_RDMA_BAD_TRANSITION (as the NIC model)', () => {
    const { qp } = setup();
    assert.throws(() => modifyQp(qp, { pkeyIndex: 0 }, QpAttrMask.PKEY_INDEX), { code: 'PV_ERR_RDMA_BAD_TRANSITION' });
    modifyQp(qp, { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, INIT_MASK);
    assert.throws(
      () => modifyQp(qp, { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, INIT_MASK),
      {
        code: 'PV_ERR_RDMA_BAD_TRANSITION',
      },
    );
  });

  it('INIT without PORT in the mask → PV_ERR_RDMA_BAD_TRANSITION', () => {
    const { qp } = setup();
    assert.throws(
      () => modifyQp(qp, { qpState: QpState.INIT, pkeyIndex: 0, qpAccessFlags: 0 }, INIT_MASK & ~QpAttrMask.PORT),
      { code: 'PV_ERR_RDMA_BAD_TRANSITION' },
    );
  });

  it('out-of-range values (rnrRetry 8, pathMtu 6) → PV_ERR_INVALID_ARG; unknown mask bits too', () => {
    const { qp } = setup();
    modifyQp(qp, { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, INIT_MASK);
    const rtr = {
      qpState: QpState.RTR,
      ahAttr: { dlid: 1 },
      pathMtu: 6,
      destQpNum: 9,
      rqPsn: 0,
      maxDestRdAtomic: 1,
      minRnrTimer: 1,
    };
    assert.throws(() => modifyQp(qp, rtr, RTR_MASK), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => modifyQp(qp, { qpState: QpState.INIT }, QpAttrMask.STATE | (1 << 25)), {
      code: 'PV_ERR_INVALID_ARG',
    });
  });

  it('RESET → INIT → RTR → RTS with the required masks succeeds and tracks the state; any state → ERR → RESET', () => {
    const { provider, qp } = setup();
    toRts(qp);
    assert.equal(qp.state, QpState.RTS);
    assert.deepEqual(
      provider.modifies.map((m) => m.attr.qpState),
      [QpState.INIT, QpState.RTR, QpState.RTS],
    );
    modifyQp(qp, { qpState: QpState.ERR }, QpAttrMask.STATE);
    modifyQp(qp, { qpState: QpState.RESET }, QpAttrMask.STATE);
    assert.equal(qp.state, QpState.RESET);
  });
});

describe('verbs: postSend / postRecv', () => {
  it('too many SGEs → PV_ERR_RDMA_BAD_WR, and the WR never reaches the provider', () => {
    const { provider, qp, buf } = setup();
    toRts(qp);
    assert.throws(() => postSend(qp, write(buf, 3)), { code: 'PV_ERR_RDMA_BAD_WR' });
    assert.throws(
      () =>
        postRecv(qp, {
          wrId: 1,
          sgList: [
            { addr: buf, length: 1, lkey: 1 },
            { addr: buf, length: 1, lkey: 1 },
          ],
        }),
      {
        code: 'PV_ERR_RDMA_BAD_WR',
      },
    );
    assert.equal(provider.sends.length + provider.recvs.length, 0);
  });

  it('inline data beyond maxInlineData, or an inline READ → PV_ERR_RDMA_BAD_WR', () => {
    const { qp, buf } = setup();
    toRts(qp);
    assert.throws(() => postSend(qp, write(buf, 1, { sendFlags: SendFlags.INLINE })), { code: 'PV_ERR_RDMA_BAD_WR' });
    assert.throws(() => postSend(qp, { ...write(buf, 0), opcode: WrOpcode.RDMA_READ, sendFlags: SendFlags.INLINE }), {
      code: 'PV_ERR_RDMA_BAD_WR',
    });
  });

  it('an RDMA WR without rkey, or a wrId that is not a safe integer → PV_ERR_RDMA_BAD_WR', () => {
    const { qp, buf } = setup();
    toRts(qp);
    assert.throws(() => postSend(qp, write(buf, 1, { rkey: undefined })), { code: 'PV_ERR_RDMA_BAD_WR' });
    assert.throws(() => postSend(qp, write(buf, 1, { wrId: 2 ** 53 })), { code: 'PV_ERR_RDMA_BAD_WR' });
  });

  it('a send on a QP that is not in RTS → PV_ERR_RDMA_BAD_STATE; a receive in RESET too', () => {
    const { qp, buf } = setup();
    assert.throws(() => postSend(qp, write(buf, 1)), { code: 'PV_ERR_RDMA_BAD_STATE' });
    assert.throws(() => postRecv(qp, { wrId: 1, sgList: [] }), { code: 'PV_ERR_RDMA_BAD_STATE' });
  });

  it('a list of WRs costs ONE flush (doorbell); a bad WR in the middle leaves the ones before it posted and still flushes', () => {
    const { provider, qp, buf } = setup();
    toRts(qp);
    postSend(qp, [write(buf, 1, { wrId: 1 }), write(buf, 2, { wrId: 2 }), write(buf, 1, { wrId: 3 })]);
    assert.equal(provider.flushes, 1);
    assert.deepEqual(
      provider.sends.map((s) => s.wr.wrId),
      [1, 2, 3],
    );
    assert.throws(
      () => postSend(qp, [write(buf, 1, { wrId: 4 }), write(buf, 3, { wrId: 5 }), write(buf, 1, { wrId: 6 })]),
      {
        code: 'PV_ERR_RDMA_BAD_WR',
      },
    );
    assert.equal(provider.flushes, 2);
    assert.deepEqual(
      provider.sends.map((s) => s.wr.wrId),
      [1, 2, 3, 4],
    );
  });
});

describe('verbs: destroy order (EBUSY) and use after destroy', () => {
  let s: ReturnType<typeof setup>;
  let pd: Pd;
  let cq: Cq;
  beforeEach(() => {
    s = setup();
    pd = s.pd;
    cq = s.cq;
  });

  it('deallocPd with a live QP or MR → PV_ERR_RDMA_BUSY; destroyCq with a live QP → PV_ERR_RDMA_BUSY', () => {
    const mr = regMr(pd, s.buf, 4096, Access.LOCAL_WRITE);
    assert.throws(() => deallocPd(pd), { code: 'PV_ERR_RDMA_BUSY' });
    assert.throws(() => destroyCq(cq), { code: 'PV_ERR_RDMA_BUSY' });
    destroyQp(s.qp);
    deregMr(mr);
    destroyCq(cq);
    deallocPd(pd);
    assert.deepEqual(s.provider.destroyed, [`qp${s.qp.handle}`, `mr${mr.handle}`, `cq${cq.handle}`, `pd${pd.handle}`]);
  });

  it('a destroyed QP → PV_ERR_RDMA_BAD_HANDLE', () => {
    destroyQp(s.qp);
    assert.throws(() => postRecv(s.qp, { wrId: 1, sgList: [] }), { code: 'PV_ERR_RDMA_BAD_HANDLE' });
    assert.throws(() => destroyQp(s.qp), { code: 'PV_ERR_RDMA_BAD_HANDLE' });
  });

  it('after closeDevice every verb → PV_ERR_DISCONNECTED, the provider is closed and buffers are freed', async () => {
    const free = s.ctx.memory.freePageCount();
    await closeDevice(s.ctx);
    assert.equal(s.provider.closed, true);
    assert.equal(s.ctx.memory.freePageCount(), free + 2, 'the 2-page buffer went back');
    assert.throws(() => allocPd(s.ctx), { code: 'PV_ERR_DISCONNECTED' });
    assert.throws(() => createCq(s.ctx, 4), { code: 'PV_ERR_DISCONNECTED' });
  });
});
