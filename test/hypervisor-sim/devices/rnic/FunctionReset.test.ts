import assert from 'node:assert/strict';
import { functionReset } from '../../../../hypervisor-sim/devices/rnic/FunctionReset.js';
import { NicCmd } from '../../../../protocol/rdma/NicRegs.js';
import { SendFlags, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { makeEnd, makePair } from './helpers/Fixture.js';

describe('rnic: function-level reset leaves nothing of the previous owner', () => {
  it("drops every PD, MR, CQ and QP; the old handles are refused; a peer's WRITE to the old QP fails", () => {
    const { a, b } = makePair();
    const dropped = functionReset(b.nic.dev.ctx);
    assert.equal(dropped, 1 + 1 + 2 + 1, 'one PD, one MR, two CQs, one QP');
    assert.notEqual(b.drv.cmd(NicCmd.QUERY_QP, [b.qp.qpn]).status, 0, 'the old QP is gone');
    assert.notEqual(b.drv.cmd(NicCmd.DESTROY_MR, [b.lkey]).status, 0, 'the old MR is gone');
    a.drv.postSend(a.qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 8, lkey: a.lkey }],
      remoteAddr: b.buf,
      rkey: b.rkey,
    });
    assert.notEqual(a.drv.waitCqes(a.scq, 1)[0].status, WcStatus.SUCCESS);
  });

  it('keys keep advancing across the reset: an rkey from before never names a new region', () => {
    const { b } = makePair();
    const before = b.rkey;
    functionReset(b.nic.dev.ctx);
    const fresh = makeEnd(b.nic);
    assert.notEqual(fresh.rkey, before);
    assert.equal(functionReset(b.nic.dev.ctx), 5);
  });
});
