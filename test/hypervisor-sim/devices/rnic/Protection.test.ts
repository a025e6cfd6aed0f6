import assert from 'node:assert/strict';
import { NicCmd } from '../../../../protocol/rdma/NicRegs.js';
import {
  Access,
  QpState,
  SendFlags,
  type SendWr,
  WcOpcode,
  WcStatus,
  WrOpcode,
} from '../../../../protocol/rdma/Verbs.js';
import { SendWqeWord } from '../../../../protocol/rdma/Wqe.js';
import { type End, makePair } from './helpers/Fixture.js';

const LW = Access.LOCAL_WRITE;
const RW = Access.REMOTE_WRITE;
const RR = Access.REMOTE_READ;

/** Posts `wr` on `a` and returns its (single) completion status. */
function status(a: End, wr: Partial<SendWr>): WcStatus {
  a.drv.postSend(a.qp, { wrId: 1, opcode: WrOpcode.RDMA_WRITE, sgList: [], ...wr });
  const wcs = a.drv.waitCqes(a.scq, 1);
  return wcs[0].status;
}

const sge = (e: End, off = 0, length = 64) => [{ addr: e.buf + off, length, lkey: e.lkey }];

describe('rnic protection: keys, PDs, bounds and access flags', () => {
  it('a WRITE to an MR without REMOTE_WRITE is REM_ACCESS_ERR; nothing lands; both QPs go to ERR', () => {
    const { a, b } = makePair({ mrAccess: LW | RR });
    a.nic.drv.bytes.fill(7, a.buf, a.buf + 64);
    assert.equal(status(a, { sgList: sge(a), remoteAddr: b.buf, rkey: b.rkey }), WcStatus.REM_ACCESS_ERR);
    assert.equal(b.nic.drv.bytes[b.buf], 0);
    assert.equal(a.drv.query(a.qp.qpn).state, QpState.ERR);
    assert.equal(b.drv.query(b.qp.qpn).state, QpState.ERR, 'the responder QP goes to ERR (IB responder class C)');
  });

  it('a READ from an MR without REMOTE_READ, or via a QP without REMOTE_READ access, is REM_ACCESS_ERR', () => {
    const p1 = makePair({ mrAccess: LW | RW });
    const r1 = status(p1.a, { opcode: WrOpcode.RDMA_READ, sgList: sge(p1.a), remoteAddr: p1.b.buf, rkey: p1.b.rkey });
    assert.equal(r1, WcStatus.REM_ACCESS_ERR);
    const p2 = makePair({ access: LW | RW });
    const r2 = status(p2.a, { opcode: WrOpcode.RDMA_READ, sgList: sge(p2.a), remoteAddr: p2.b.buf, rkey: p2.b.rkey });
    assert.equal(r2, WcStatus.REM_ACCESS_ERR);
    const p3 = makePair({ access: LW | RR });
    assert.equal(status(p3.a, { sgList: sge(p3.a), remoteAddr: p3.b.buf, rkey: p3.b.rkey }), WcStatus.REM_ACCESS_ERR);
  });

  it('a READ into a local MR without LOCAL_WRITE is LOC_PROT_ERR (the NIC writes locally)', () => {
    const { a, b } = makePair();
    const ro = a.drv.regMr(a.pd, a.buf, 4096, RR);
    const st = status(a, {
      opcode: WrOpcode.RDMA_READ,
      sgList: [{ addr: a.buf, length: 64, lkey: ro.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    assert.equal(st, WcStatus.LOC_PROT_ERR);
    assert.equal(b.drv.query(b.qp.qpn).state, QpState.RTS, 'the request never left: the responder is untouched');
  });

  it('out-of-bounds ranges: LOC_PROT_ERR locally, REM_ACCESS_ERR remotely (one byte past the end, below the start)', () => {
    const bufLen = 1 << 16;
    const cases: Array<[string, (a: End, b: End) => Partial<SendWr>, WcStatus]> = [
      [
        'local past end',
        (a, b) => ({ sgList: sge(a, bufLen - 63), remoteAddr: b.buf, rkey: b.rkey }),
        WcStatus.LOC_PROT_ERR,
      ],
      [
        'local below start',
        (a, b) => ({ sgList: [{ addr: a.buf - 1, length: 8, lkey: a.lkey }], remoteAddr: b.buf, rkey: b.rkey }),
        WcStatus.LOC_PROT_ERR,
      ],
      [
        'remote past end',
        (a, b) => ({ sgList: sge(a), remoteAddr: b.buf + bufLen - 63, rkey: b.rkey }),
        WcStatus.REM_ACCESS_ERR,
      ],
      [
        'remote below start',
        (a, b) => ({ sgList: sge(a), remoteAddr: b.buf - 1, rkey: b.rkey }),
        WcStatus.REM_ACCESS_ERR,
      ],
      [
        'remote at 2^53 − 1',
        (a, b) => ({ sgList: sge(a), remoteAddr: Number.MAX_SAFE_INTEGER, rkey: b.rkey }),
        WcStatus.REM_ACCESS_ERR,
      ],
    ];
    for (const [what, wr, expected] of cases) {
      const { a, b } = makePair({ bufLen });
      assert.equal(status(a, wr(a, b)), expected, what);
    }
    // Exactly at the end is fine.
    const { a, b } = makePair({ bufLen });
    assert.equal(
      status(a, { sgList: sge(a, bufLen - 64), remoteAddr: b.buf + bufLen - 64, rkey: b.rkey }),
      WcStatus.SUCCESS,
    );
  });

  it('a forged or stale rkey is REM_ACCESS_ERR and writes nothing', () => {
    const { a, b } = makePair();
    const forged = (b.rkey & ~0xff) | ((b.rkey + 0x55) & 0xff);
    a.nic.drv.bytes.fill(9, a.buf, a.buf + 64);
    assert.equal(status(a, { sgList: sge(a), remoteAddr: b.buf, rkey: forged }), WcStatus.REM_ACCESS_ERR);
    assert.equal(
      status(a, { sgList: sge(a), remoteAddr: b.buf, rkey: 0xffff_ff00 }),
      WcStatus.WR_FLUSH_ERR,
      'later WRs flush',
    );
    const p = makePair();
    const { rkey } = p.b;
    // Deregister b's region and register the same slot again: the old rkey is stale.
    p.b.drv.ok(NicCmd.DESTROY_MR, [rkey]);
    const again = p.b.drv.regMr(p.b.pd, p.b.buf, p.b.bufLen, LW | RW | RR);
    assert.equal(again.rkey >>> 8, rkey >>> 8, 'same slot');
    p.a.nic.drv.bytes.fill(9, p.a.buf, p.a.buf + 64);
    assert.equal(status(p.a, { sgList: sge(p.a), remoteAddr: p.b.buf, rkey }), WcStatus.REM_ACCESS_ERR);
    assert.equal(p.b.nic.drv.bytes[p.b.buf], 0);
  });

  it('keys of another PD fail: LOC_PROT_ERR for an lkey, REM_ACCESS_ERR for an rkey', () => {
    const { a, b } = makePair();
    const otherA = a.drv.createPd();
    const mrA = a.drv.regMr(otherA, a.buf, 4096, LW);
    assert.equal(
      status(a, { sgList: [{ addr: a.buf, length: 8, lkey: mrA.lkey }], remoteAddr: b.buf, rkey: b.rkey }),
      WcStatus.LOC_PROT_ERR,
    );
    const p = makePair();
    const otherB = p.b.drv.createPd();
    const mrB = p.b.drv.regMr(otherB, p.b.buf, 4096, LW | RW);
    assert.equal(status(p.a, { sgList: sge(p.a, 0, 8), remoteAddr: p.b.buf, rkey: mrB.rkey }), WcStatus.REM_ACCESS_ERR);
  });

  it('a receive SGE without LOCAL_WRITE: responder LOC_PROT_ERR, requester REM_OP_ERR', () => {
    const { a, b } = makePair();
    const ro = b.drv.regMr(b.pd, b.buf, 4096, RR);
    b.drv.postRecv(b.qp, { wrId: 5, sgList: [{ addr: b.buf, length: 64, lkey: ro.lkey }] });
    assert.equal(status(a, { opcode: WrOpcode.SEND, sgList: sge(a, 0, 8) }), WcStatus.REM_OP_ERR);
    assert.deepEqual(
      b.drv.waitCqes(b.rcq, 1).map((w) => [w.wrId, w.status, w.opcode]),
      [[5, WcStatus.LOC_PROT_ERR, WcOpcode.RECV]],
    );
  });

  it('a receive too small: responder LOC_LEN_ERR, requester REM_INV_REQ_ERR', () => {
    const { a, b } = makePair();
    b.drv.postRecv(b.qp, {
      wrId: 6,
      sgList: [
        { addr: b.buf, length: 10, lkey: b.lkey },
        { addr: b.buf + 100, length: 10, lkey: b.lkey },
      ],
    });
    assert.equal(status(a, { opcode: WrOpcode.SEND, sgList: sge(a, 0, 21) }), WcStatus.REM_INV_REQ_ERR);
    assert.deepEqual(
      b.drv.waitCqes(b.rcq, 1).map((w) => [w.wrId, w.status]),
      [[6, WcStatus.LOC_LEN_ERR]],
    );
    assert.equal(b.drv.query(b.qp.qpn).state, QpState.ERR);
  });

  it('malformed WQEs: unknown opcode or flags, too many SGEs, inline misuse → LOC_QP_OP_ERR; long inline → LOC_LEN_ERR', () => {
    const cases: Array<[string, Partial<SendWr>, WcStatus]> = [
      ['opcode 5 (atomic)', { opcode: 5 as WrOpcode }, WcStatus.LOC_QP_OP_ERR],
      ['flag 0x10', { sendFlags: 0x10 }, WcStatus.LOC_QP_OP_ERR],
      ['inline READ', { opcode: WrOpcode.RDMA_READ, sendFlags: SendFlags.INLINE }, WcStatus.LOC_QP_OP_ERR],
    ];
    for (const [what, wr, expected] of cases) {
      const { a, b } = makePair();
      assert.equal(status(a, { remoteAddr: b.buf, rkey: b.rkey, ...wr }), expected, what);
    }
    const p = makePair({ maxSendSge: 2, maxInline: 16 });
    const three = [0, 1, 2].map((i) => ({ addr: p.a.buf + i * 8, length: 8, lkey: p.a.lkey }));
    assert.equal(status(p.a, { sgList: three, remoteAddr: p.b.buf, rkey: p.b.rkey }), WcStatus.LOC_QP_OP_ERR);
    const q = makePair({ maxInline: 16 });
    q.a.drv.postSend(
      q.a.qp,
      {
        wrId: 1,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.INLINE,
        sgList: [],
        remoteAddr: q.b.buf,
        rkey: q.b.rkey,
      },
      new Uint8Array(17),
    );
    assert.equal(q.a.drv.waitCqes(q.a.scq, 1)[0].status, WcStatus.LOC_LEN_ERR);
  });

  it('an SGE address that is not a safe integer is LOC_PROT_ERR, never a wrap-around', () => {
    const { a, b } = makePair();
    a.drv.postSend(
      a.qp,
      { wrId: 1, opcode: WrOpcode.RDMA_WRITE, sgList: sge(a, 0, 8), remoteAddr: b.buf, rkey: b.rkey },
      undefined,
      false,
    );
    // Corrupt the posted WQE's SGE address high word, as a hostile driver could.
    const w = a.qp.sqAddr / 4 + SendWqeWord.SGE + 1;
    a.nic.drv.words[w] = 0x0020_0000;
    a.drv.ringSq(a.qp);
    assert.equal(a.drv.waitCqes(a.scq, 1)[0].status, WcStatus.LOC_PROT_ERR);
  });
});
