import assert from 'node:assert/strict';
import { ERROR_CATALOGUE, type ErrorCode } from '../../../../protocol/errors.js';
import { cqBytes } from '../../../../protocol/rdma/Cq.js';
import { NicCmd, PORT_ACTIVE } from '../../../../protocol/rdma/NicRegs.js';
import { Access, QpState } from '../../../../protocol/rdma/Verbs.js';
import { makeNics, type Nic } from './helpers/Fixture.js';
import type { NicHarness } from './helpers/NicHarness.js';

const S = (code: ErrorCode) => ERROR_CATALOGUE[code].status;
const LW = Access.LOCAL_WRITE;

function nic(config = {}): Nic {
  return makeNics({ count: 1, config }).nics[0];
}

/** Asserts `op(args)` fails with `code` and leaves CMD_OUT zeroed. */
function refuses(drv: NicHarness, code: ErrorCode, op: number, args: number[]): void {
  const r = drv.cmd(op, args);
  assert.equal(r.status, S(code), `command ${op}(${args.join(',')}) → ${r.status}, expected ${code}`);
  assert.ok(
    r.out.every((w) => w === 0),
    'results are zero on failure',
  );
}

describe('rnic commands: every argument is validated and a failure changes nothing', () => {
  it('QUERY_PORT reports the port id, ACTIVE and MTU 4096', () => {
    const { drv } = makeNics({ count: 1, config: { portId: 1 } }).nics[0];
    assert.deepEqual(drv.ok(NicCmd.QUERY_PORT).slice(0, 3), [1, PORT_ACTIVE, 5]);
  });

  it('an unknown opcode is PV_ERR_BAD_OP; a non-zero unused argument word is PV_ERR_INVALID_ARG', () => {
    const { drv } = nic();
    refuses(drv, 'PV_ERR_BAD_OP', 0, []);
    refuses(drv, 'PV_ERR_BAD_OP', 99, []);
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_PD, [1]);
    refuses(
      drv,
      'PV_ERR_INVALID_ARG',
      NicCmd.QUERY_PORT,
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
    );
  });

  it('PDs: exhaustion is PV_ERR_RDMA_RESOURCE, bad handles PV_ERR_RDMA_BAD_HANDLE, a PD in use PV_ERR_RDMA_BUSY', () => {
    const { drv } = nic({ maxQp: 4 });
    assert.deepEqual([drv.createPd(), drv.createPd(), drv.createPd()], [1, 2, 3]);
    refuses(drv, 'PV_ERR_RDMA_RESOURCE', NicCmd.CREATE_PD, []);
    drv.ok(NicCmd.DESTROY_PD, [2]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_PD, [2]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_PD, [0]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_PD, [4]);
    const buf = drv.alloc(4096);
    const mr = drv.regMr(1, buf, 4096, LW);
    refuses(drv, 'PV_ERR_RDMA_BUSY', NicCmd.DESTROY_PD, [1]);
    drv.ok(NicCmd.DESTROY_MR, [mr.lkey]);
    drv.ok(NicCmd.DESTROY_PD, [1]);
  });

  it('CREATE_MR: lkey = rkey = index << 8 | key, and the key byte changes on every registration', () => {
    const { drv } = nic();
    const pd = drv.createPd();
    const buf = drv.alloc(8192);
    const m1 = drv.regMr(pd, buf, 8192, LW);
    assert.equal(m1.index, 1);
    assert.equal(m1.lkey, m1.rkey);
    assert.equal(m1.lkey >>> 8, 1);
    drv.ok(NicCmd.DESTROY_MR, [m1.lkey]);
    const m2 = drv.regMr(pd, buf, 8192, LW);
    assert.equal(m2.index, 1, 'the slot is reused');
    assert.notEqual(m2.lkey, m1.lkey, 'with a new key byte');
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_MR, [m1.lkey]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_MR, [(m2.lkey & ~0xff) | ((m2.lkey + 1) & 0xff)]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_MR, [0]);
  });

  it('CREATE_MR refuses bad PDs, lengths, addresses and access flags (REMOTE_WRITE needs LOCAL_WRITE)', () => {
    const { drv } = nic({ maxMr: 3 });
    const pd = drv.createPd();
    const mr = (args: number[]) => [pd, 4096, 0, 4096, LW, 4096, 0].map((v, i) => args[i] ?? v);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.CREATE_MR, mr([9]));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_MR, mr([pd, 4096, 0, 0]));
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_MR, mr([pd, 0, 0x20_0000]));
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_MR, mr([pd, 0xffff_ffff, 0x1f_ffff, 4096]));
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_MR, mr([pd, 4096, 0, 4096, LW, 0, 0x20_0000]));
    refuses(drv, 'PV_ERR_RDMA_BAD_ACCESS', NicCmd.CREATE_MR, mr([pd, 4096, 0, 4096, Access.REMOTE_WRITE]));
    refuses(drv, 'PV_ERR_RDMA_BAD_ACCESS', NicCmd.CREATE_MR, mr([pd, 4096, 0, 4096, Access.REMOTE_ATOMIC]));
    refuses(drv, 'PV_ERR_RDMA_BAD_ACCESS', NicCmd.CREATE_MR, mr([pd, 4096, 0, 4096, 0x10 | LW]));
    // Nothing was consumed by the failures: the first success gets slot 1, then the table is full.
    assert.equal(drv.regMr(pd, 4096, 4096, Access.REMOTE_READ).index, 1);
    assert.equal(drv.regMr(pd, 4096, 4096, LW | Access.REMOTE_WRITE).index, 2);
    refuses(drv, 'PV_ERR_RDMA_RESOURCE', NicCmd.CREATE_MR, mr([]));
  });

  it('CREATE_CQ refuses non-power-of-two or oversized rings, misaligned or unmapped ring memory', () => {
    const n = nic({ maxCq: 3, maxCqe: 64 });
    const drv = n.drv;
    const ring = drv.alloc(cqBytes(64));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_CQ, [0, ring, 0]);
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_CQ, [3, ring, 0]);
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_CQ, [128, ring, 0]);
    refuses(drv, 'PV_ERR_BAD_ALIGNMENT', NicCmd.CREATE_CQ, [16, ring + 32, 0]);
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_CQ, [16, 0, 0x40_0000]);
    refuses(drv, 'PV_ERR_RDMA_BAD_MEMORY', NicCmd.CREATE_CQ, [16, n.memory.byteLength - 64, 0]);
    n.dma.readOnly(ring, 4096);
    refuses(drv, 'PV_ERR_RDMA_BAD_MEMORY', NicCmd.CREATE_CQ, [16, ring, 0]);
    n.dma.restore();
    assert.equal(drv.ok(NicCmd.CREATE_CQ, [64, ring, 0])[0], 1);
    assert.equal(drv.createCq(16).cqn, 2);
    refuses(drv, 'PV_ERR_RDMA_RESOURCE', NicCmd.CREATE_CQ, [16, ring, 0]);
  });

  it('CREATE_QP validates PD, CQs, queue sizes and memory, sq_sig_all and caps; DESTROY_CQ of a used CQ is BUSY', () => {
    const n = nic({ maxQp: 3, maxQpWr: 64 });
    const drv = n.drv;
    const pd = drv.createPd();
    const cq = drv.createCq(16);
    const sq = drv.alloc(64 * 128);
    const rq = drv.alloc(64 * 64);
    const qp = (o: Record<number, number>) => {
      const a = [pd, cq.cqn, cq.cqn, 16, 16, sq, 0, rq, 0, 1, 16, 2, 2];
      for (const [k, v] of Object.entries(o)) a[Number(k)] = v;
      return a;
    };
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.CREATE_QP, qp({ 0: 5 }));
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.CREATE_QP, qp({ 1: 7 }));
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.CREATE_QP, qp({ 2: 0 }));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_QP, qp({ 3: 12 }));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_QP, qp({ 4: 128 }));
    refuses(drv, 'PV_ERR_BAD_ALIGNMENT', NicCmd.CREATE_QP, qp({ 5: sq + 4 }));
    refuses(drv, 'PV_ERR_RDMA_BAD_MEMORY', NicCmd.CREATE_QP, qp({ 7: n.memory.byteLength - 64 }));
    refuses(drv, 'PV_ERR_INVALID_ARG', NicCmd.CREATE_QP, qp({ 9: 2 }));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_QP, qp({ 10: 81 }));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_QP, qp({ 11: 6 }));
    refuses(drv, 'PV_ERR_BAD_LENGTH', NicCmd.CREATE_QP, qp({ 12: 4 }));
    const qpn = drv.ok(NicCmd.CREATE_QP, qp({}))[0];
    assert.equal(qpn, 1);
    assert.equal(drv.query(qpn).state, QpState.RESET);
    assert.equal(drv.ok(NicCmd.CREATE_QP, qp({}))[0], 2);
    refuses(drv, 'PV_ERR_RDMA_RESOURCE', NicCmd.CREATE_QP, qp({}));
    refuses(drv, 'PV_ERR_RDMA_BUSY', NicCmd.DESTROY_CQ, [cq.cqn]);
    refuses(drv, 'PV_ERR_RDMA_BUSY', NicCmd.DESTROY_PD, [pd]);
    drv.ok(NicCmd.DESTROY_QP, [1]);
    drv.ok(NicCmd.DESTROY_QP, [2]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_QP, [2]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.QUERY_QP, [1]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.QUERY_QP, [0xffff_ffff]);
    drv.ok(NicCmd.DESTROY_CQ, [cq.cqn]);
    refuses(drv, 'PV_ERR_RDMA_BAD_HANDLE', NicCmd.DESTROY_CQ, [cq.cqn]);
    drv.ok(NicCmd.DESTROY_PD, [pd]);
  });

  it('counts every command in the metrics', () => {
    const n = nic();
    n.drv.createPd();
    n.drv.cmd(77);
    assert.equal(n.dev.metrics.commands, 2);
  });
});
