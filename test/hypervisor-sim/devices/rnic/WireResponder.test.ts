/**
 * The wire responder as a hostile peer host sees it, in one thread: the test plays the requester
 * NIC of another host (port 1, QP 7) and hands packets straight to `WireResponder.handle`; the
 * target is a native guest's QP on this host (programs/WireTarget.ts) connected back to that
 * requester. Malformed packets get a typed status and change nothing; well-formed ones do what
 * the local responder does, except that a missing receive is answered RNR instead of waited for.
 */

import assert from 'node:assert/strict';
import { WireResponder } from '../../../../hypervisor-sim/devices/rnic/WireResponder.js';
import type { Domain } from '../../../../hypervisor-sim/domain/Domain.js';
import { Host } from '../../../../hypervisor-sim/domain/Host.js';
import { MAX_MESSAGE_BULK } from '../../../../protocol/link/LinkFrame.js';
import type { WireReqMsg } from '../../../../protocol/link/LinkSchema.js';
import { WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { TARGET_RNR_TIMER, TargetBoard } from './programs/WireTarget.js';

const PROGRAM = new URL('./programs/WireTarget.js', import.meta.url);
/** The requester the target QP is connected to (a NIC of another host). */
const PEER_PORT = 1;
const PEER_QPN = 7;
const PORT = 101;

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('WireResponder: a wire request from another host, answered by this host’s NIC', function () {
  this.timeout(120_000);
  const board = new Int32Array(new SharedArrayBuffer(TargetBoard.WORDS * 4));
  let host: Host;
  let dom: Domain;
  let resp: WireResponder;
  let qpn = 0;
  let rkey = 0;
  let addr = 0;

  function req(over: Partial<WireReqMsg> = {}): WireReqMsg {
    return {
      op: WrOpcode.RDMA_WRITE,
      srcPort: PEER_PORT,
      srcQpn: PEER_QPN,
      dstPort: PORT,
      dstQpn: qpn,
      rkey,
      remoteAddr: addr,
      imm: 0,
      length: 0,
      sendFlags: 0,
      ...over,
    };
  }

  function mem(off: number, len: number): Uint8Array {
    return dom.memory.view((addr + off) as GuestPhysAddr, len);
  }

  before(async () => {
    host = new Host({ name: 'hostB', nics: [{ name: 'nic0', portId: PORT }] });
    resp = new WireResponder(host);
    dom = host.createDomain({
      name: 'target',
      program: PROGRAM,
      args: { board: board.buffer, peerPort: PEER_PORT, peerQpn: PEER_QPN },
      memoryBytes: 8 << 20,
      pci: [{ device: 'nic0', iommu: 'bypass' }],
    });
    // A failing guest must fail the suite, not hang it at the next wait.
    dom.result.catch(() => {});
    await until(() => Atomics.load(board, TargetBoard.ACK) >= 1, 'the target QP');
    qpn = board[TargetBoard.QPN];
    rkey = board[TargetBoard.RKEY] >>> 0;
    addr = (board[TargetBoard.ADDR_HI] >>> 0) * 2 ** 32 + (board[TargetBoard.ADDR_LO] >>> 0);
  });

  after(async () => {
    Atomics.store(board, TargetBoard.CMD, 99);
    Atomics.notify(board, TargetBoard.CMD);
    await host.shutdown();
  });

  it('an unknown op is REM_INV_REQ_ERR', () => {
    assert.equal(resp.handle(req({ op: 9 }), undefined).rsp.status, WcStatus.REM_INV_REQ_ERR);
  });

  it('a payload whose size is not the length is REM_INV_REQ_ERR, and nothing lands', () => {
    mem(0, 16).fill(0);
    const payload = new Uint8Array(16).fill(0xab);
    assert.equal(resp.handle(req({ length: 10 }), payload).rsp.status, WcStatus.REM_INV_REQ_ERR);
    assert.equal(resp.handle(req({ length: 16 }), undefined).rsp.status, WcStatus.REM_INV_REQ_ERR);
    assert.equal(
      resp.handle(req({ op: WrOpcode.RDMA_READ, length: 16 }), payload).rsp.status,
      WcStatus.REM_INV_REQ_ERR,
    );
    assert.deepEqual([...mem(0, 16)], new Array(16).fill(0));
  });

  it('a length beyond MAX_MESSAGE_BULK is REM_INV_REQ_ERR', () => {
    const st = resp.handle(req({ op: WrOpcode.RDMA_READ, length: MAX_MESSAGE_BULK + 1 }), undefined).rsp.status;
    assert.equal(st, WcStatus.REM_INV_REQ_ERR);
  });

  it('fields that are not u32 (NaN, negative, fractional, too big) are REM_INV_REQ_ERR', () => {
    for (const over of [
      { srcQpn: Number.NaN },
      { dstPort: -1 },
      { rkey: 1.5 },
      { imm: 2 ** 32 },
      { length: -16 },
      { remoteAddr: 'x' as unknown as number },
    ]) {
      assert.equal(resp.handle(req(over), undefined).rsp.status, WcStatus.REM_INV_REQ_ERR, JSON.stringify(over));
    }
    assert.equal(resp.handle(null as unknown as WireReqMsg, undefined).rsp.status, WcStatus.REM_INV_REQ_ERR);
  });

  it('a port that is no NIC of this host is RETRY_EXC_ERR', () => {
    assert.equal(resp.handle(req({ dstPort: 555 }), undefined).rsp.status, WcStatus.RETRY_EXC_ERR);
  });

  it('a request from a QP or port the target is not connected to is dropped (RETRY_EXC_ERR)', () => {
    const payload = new Uint8Array(8).fill(0xee);
    for (const over of [{ srcQpn: PEER_QPN + 1 }, { srcPort: PEER_PORT + 1 }, { dstQpn: qpn + 1 }]) {
      const st = resp.handle(req({ ...over, length: 8 }), payload).rsp.status;
      assert.equal(st, WcStatus.RETRY_EXC_ERR, JSON.stringify(over));
    }
    assert.deepEqual([...mem(0, 8)], new Array(8).fill(0));
  });

  it('an RDMA WRITE from the connected peer lands in the target memory', () => {
    const payload = Uint8Array.from({ length: 1001 }, (_, i) => (i * 13 + 5) & 0xff);
    const a = resp.handle(req({ length: payload.length, remoteAddr: addr + 3 }), payload);
    assert.deepEqual(a.rsp, { status: WcStatus.SUCCESS, rnr: false, rnrTimerUs: 0 });
    assert.deepEqual([...mem(3, payload.length)], [...payload]);
  });

  it('a payload in an unaligned buffer (a socket’s) lands too', () => {
    const payload = new Uint8Array(65).subarray(1);
    payload.fill(0x5c);
    assert.equal(resp.handle(req({ length: 64, remoteAddr: addr + 2000 }), payload).rsp.status, WcStatus.SUCCESS);
    assert.deepEqual([...mem(2000, 64)], new Array(64).fill(0x5c));
  });

  it('an RDMA READ answers the target memory as data', () => {
    mem(4096, 777).set(Uint8Array.from({ length: 777 }, (_, i) => (i * 7) & 0xff));
    const a = resp.handle(req({ op: WrOpcode.RDMA_READ, length: 777, remoteAddr: addr + 4096 }), undefined);
    assert.equal(a.rsp.status, WcStatus.SUCCESS);
    assert.deepEqual([...(a.data ?? [])], [...mem(4096, 777)]);
  });

  it('a READ with a forged rkey or past the MR is REM_ACCESS_ERR; a zero-length one needs no R_Key', () => {
    const zero = resp.handle(req({ op: WrOpcode.RDMA_READ, length: 0, rkey: 0 }), undefined);
    assert.deepEqual(zero, { rsp: { status: WcStatus.SUCCESS, rnr: false, rnrTimerUs: 0 }, data: new Uint8Array(0) });
  });

  it('a SEND with no receive posted is answered RNR with the target QP’s timer, never waited for', () => {
    const a = resp.handle(req({ op: WrOpcode.SEND, length: 4 }), new Uint8Array(4));
    assert.equal(a.rsp.rnr, true);
    assert.equal(a.rsp.rnrTimerUs, TARGET_RNR_TIMER * 10);
  });

  it('handleWaiting: a SEND with no receive waits out the target QP’s RNR timer before answering RNR (timer 0: already waited)', async () => {
    const t0 = performance.now();
    const a = await resp.handleWaiting(req({ op: WrOpcode.SEND, length: 4 }), new Uint8Array(4));
    const waitedUs = (performance.now() - t0) * 1000;
    assert.deepEqual(a.rsp, { status: WcStatus.SUCCESS, rnr: true, rnrTimerUs: 0 });
    // The rule is a lower bound (the timer ran out), not a speed: no upper bound is asserted.
    assert.ok(waitedUs >= TARGET_RNR_TIMER * 10, `waited ${waitedUs.toFixed(0)} µs`);
  });

  it('a SEND with a receive posted completes it; then a NaN address is REM_ACCESS_ERR and the QP goes to ERR', async () => {
    Atomics.store(board, TargetBoard.CMD, 1);
    Atomics.notify(board, TargetBoard.CMD);
    await until(() => Atomics.load(board, TargetBoard.ACK) >= 2, 'the receives');
    const payload = Uint8Array.from({ length: 100 }, (_, i) => i);
    const sent = resp.handle(req({ op: WrOpcode.SEND, length: 100 }), payload);
    assert.deepEqual(sent.rsp, { status: WcStatus.SUCCESS, rnr: false, rnrTimerUs: 0 });
    assert.deepEqual([...mem(60_000, 100)], [...payload]);
    // A NaN address fails the R_Key check, as a WQE whose address is no safe integer does, and
    // moves the target QP to ERR (its other receive is flushed); from then on it drops packets.
    const nan = resp.handle(req({ length: 8, remoteAddr: Number.NaN }), new Uint8Array(8));
    assert.equal(nan.rsp.status, WcStatus.REM_ACCESS_ERR);
    assert.equal(nan.data, undefined);
    const neg = resp.handle(req({ length: 8, remoteAddr: -4096 }), new Uint8Array(8));
    assert.equal(neg.rsp.status, WcStatus.RETRY_EXC_ERR);
    Atomics.store(board, TargetBoard.CMD, 2);
    Atomics.notify(board, TargetBoard.CMD);
    const r = await dom.result;
    const wcs = (r.value as { wcs: Array<{ wrId: number; status: number; byteLen: number; opcode: number }> }).wcs;
    assert.deepEqual(wcs, [
      { wrId: 77, status: WcStatus.SUCCESS, byteLen: 100, opcode: WcOpcode.RECV },
      { wrId: 78, status: WcStatus.WR_FLUSH_ERR, byteLen: 0, opcode: wcs[1]?.opcode },
    ]);
  });
});
