/**
 * Guest program of the wire tests (RemoteWire.test.ts): two native guests on two Hosts of one
 * process, "a" (requester, host A) and "b" (target, host B), whose NICs only meet through the
 * wire mailboxes. The store is per host, so they trade QP numbers, keys and addresses — and meet
 * at barriers — through a small SharedArrayBuffer `board` passed in the args. Each case records
 * 'ok' or what went wrong; the mocha suite asserts every case on both sides.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import {
  Access,
  SendFlags,
  WcFlags,
  WcOpcode,
  WcStatus,
  WrOpcode,
  wcStatusName,
} from '../../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../../protocol/Types.js';

/** Words of the board (Int32). */
export const enum Board {
  /** Barrier counters of a and b. */
  STEP_A = 0,
  STEP_B = 1,
  /** Current QP numbers. */
  QPN_A = 2,
  QPN_B = 3,
  /** b's MR rkey and buffer address (lo, hi). */
  RKEY_B = 4,
  ADDR_B_LO = 5,
  ADDR_B_HI = 6,
  /** Port ids. */
  PORT_A = 7,
  PORT_B = 8,
  /** 1: the test's link `send` rejects with PV_ERR_PCIE_LINK_DOWN. */
  LINK_DOWN = 9,
  WORDS = 16,
}

/** Port id no NIC of either host has. */
export const NO_SUCH_PORT = 999;

export const CASE_NAMES = [
  'RDMA WRITE gathers two SGEs and inline data into the peer host',
  'RDMA READ returns the peer host memory',
  'SEND_WITH_IMM lands in the posted receive with byte_len and imm',
  'WRITE_WITH_IMM writes and consumes a receive with the imm',
  'SEND with no receive posted and rnr_retry 0 fails with RNR_RETRY_EXC_ERR',
  'SEND with no receive posted exhausts rnr_retry 2 with RNR_RETRY_EXC_ERR',
  'a bad rkey fails with REM_ACCESS_ERR and the responder QP goes to ERR',
  'a port of no host fails with RETRY_EXC_ERR',
  'a link that is down fails with RETRY_EXC_ERR, and the next WR works',
  'a message larger than the wire mailbox fails with LOC_LEN_ERR',
] as const;

const BUF = 1 << 20;
const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const WAIT_MS = 30_000;

interface Side {
  role: 'a' | 'b';
  board: Int32Array;
  ctx: ibv.Context;
  pd: ibv.Pd;
  buf: GuestPhysAddr;
  mr: ibv.Mr;
  mem: Uint8Array;
}

interface Conn {
  qp: ibv.Qp;
  scq: ibv.Cq;
  rcq: ibv.Cq;
}

function barrier(s: Side): void {
  const b = s.board;
  const me = s.role === 'a' ? Board.STEP_A : Board.STEP_B;
  const other = s.role === 'a' ? Board.STEP_B : Board.STEP_A;
  // ORDERING: seq-cst add publishes everything this side wrote before the barrier.
  const step = Atomics.add(b, me, 1) + 1;
  Atomics.notify(b, me);
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    // ORDERING: seq-cst load pairs with the peer's add.
    const seen = Atomics.load(b, other);
    if (seen >= step) return;
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`barrier ${step}: the peer never came`);
    Atomics.wait(b, other, seen, Math.min(left, 1000));
  }
}

function fill(s: Side, off: number, len: number, seed: number): void {
  for (let i = 0; i < len; i++) s.mem[off + i] = (i * 31 + seed + (i >> 9)) & 0xff;
}

function check(s: Side, off: number, len: number, seed: number, what: string): void {
  for (let i = 0; i < len; i++) {
    if (s.mem[off + i] !== ((i * 31 + seed + (i >> 9)) & 0xff)) throw new Error(`${what}: byte ${i} differs`);
  }
}

const wcs = [ibv.emptyWc()];

function take(cq: ibv.Cq): ibv.Wc {
  const deadline = performance.now() + WAIT_MS;
  while (ibv.pollCq(cq, 1, wcs) === 0) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error('no completion');
    ibv.waitCq(cq, { timeoutMs: Math.min(left, 1000) });
  }
  return { ...wcs[0] };
}

function status(wc: ibv.Wc, want: WcStatus): void {
  assert.equal(wcStatusName(wc.status), wcStatusName(want), `wr ${wc.wrId}`);
}

/** A fresh QP pair; both sides call it together. `dlid` overrides the peer's port (a's side). */
function connect(s: Side, opts: { rnrRetry?: number; dlid?: number } = {}): Conn {
  const scq = ibv.createCq(s.ctx, 16);
  const rcq = ibv.createCq(s.ctx, 16);
  const qp = ibv.createQp(s.pd, {
    sendCq: scq,
    recvCq: rcq,
    cap: { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 2, maxRecvSge: 2, maxInlineData: 64 },
    sqSigAll: true,
  });
  const a = s.role === 'a';
  s.board[a ? Board.QPN_A : Board.QPN_B] = qp.qpNum;
  barrier(s);
  const peerQpn = s.board[a ? Board.QPN_B : Board.QPN_A];
  const peerPort = opts.dlid ?? s.board[a ? Board.PORT_B : Board.PORT_A];
  // minRnrTimer 1 (10 µs): the RNR cases back off briefly.
  ibv.connectRcQp(qp, { destQpNum: peerQpn, dlid: peerPort }, ALL, { rnrRetry: opts.rnrRetry, minRnrTimer: 1 });
  barrier(s);
  return { qp, scq, rcq };
}

function remote(s: Side): { addr: number; rkey: number } {
  const b = s.board;
  return { addr: (b[Board.ADDR_B_HI] >>> 0) * 2 ** 32 + (b[Board.ADDR_B_LO] >>> 0), rkey: b[Board.RKEY_B] >>> 0 };
}

type Case = (s: Side) => void;

const W_LEN = 300_001;
const R_OFF = 400_000;
const R_LEN = 200_003;
const S_OFF = 700_000;
const I_OFF = 800_000;

const CASES: Record<(typeof CASE_NAMES)[number], Case> = {
  'RDMA WRITE gathers two SGEs and inline data into the peer host': (s) => {
    const c = connect(s);
    if (s.role === 'a') {
      const r = remote(s);
      fill(s, 0, W_LEN + 40, 1);
      const lkey = s.mr.lkey;
      ibv.postSend(c.qp, {
        wrId: 1,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [
          { addr: s.buf, length: 100_001, lkey },
          { addr: (s.buf + 100_001) as GuestPhysAddr, length: W_LEN - 100_001, lkey },
        ],
        remoteAddr: r.addr,
        rkey: r.rkey,
      });
      status(take(c.scq), WcStatus.SUCCESS);
      // Inline: the bytes travel from the WQE copy, not from memory.
      ibv.postSend(c.qp, {
        wrId: 2,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.INLINE,
        sgList: [{ addr: (s.buf + W_LEN) as GuestPhysAddr, length: 40, lkey }],
        remoteAddr: r.addr + W_LEN,
        rkey: r.rkey,
      });
      const wc = take(c.scq);
      status(wc, WcStatus.SUCCESS);
      assert.equal(wc.opcode, WcOpcode.RDMA_WRITE);
    }
    barrier(s);
    if (s.role === 'b') check(s, 0, W_LEN + 40, 1, 'written data');
  },

  'RDMA READ returns the peer host memory': (s) => {
    const c = connect(s);
    if (s.role === 'b') fill(s, R_OFF, R_LEN, 2);
    barrier(s);
    if (s.role === 'a') {
      const r = remote(s);
      s.mem.fill(0, R_OFF, R_OFF + R_LEN);
      ibv.postSend(c.qp, {
        wrId: 3,
        opcode: WrOpcode.RDMA_READ,
        sgList: [
          { addr: (s.buf + R_OFF) as GuestPhysAddr, length: 7, lkey: s.mr.lkey },
          { addr: (s.buf + R_OFF + 7) as GuestPhysAddr, length: R_LEN - 7, lkey: s.mr.lkey },
        ],
        remoteAddr: r.addr + R_OFF,
        rkey: r.rkey,
      });
      const wc = take(c.scq);
      status(wc, WcStatus.SUCCESS);
      assert.equal(wc.opcode, WcOpcode.RDMA_READ);
      assert.equal(wc.byteLen, R_LEN);
      check(s, R_OFF, R_LEN, 2, 'read data');
    }
    barrier(s);
  },

  'SEND_WITH_IMM lands in the posted receive with byte_len and imm': (s) => {
    const c = connect(s);
    if (s.role === 'b') {
      s.mem.fill(0, S_OFF, S_OFF + 8192);
      ibv.postRecv(c.qp, {
        wrId: 40,
        sgList: [
          { addr: (s.buf + S_OFF) as GuestPhysAddr, length: 1000, lkey: s.mr.lkey },
          { addr: (s.buf + S_OFF + 1000) as GuestPhysAddr, length: 7192, lkey: s.mr.lkey },
        ],
      });
    }
    barrier(s);
    if (s.role === 'a') {
      fill(s, S_OFF, 5000, 3);
      ibv.postSend(c.qp, {
        wrId: 4,
        opcode: WrOpcode.SEND_WITH_IMM,
        immData: 0xdeadbeef,
        sgList: [{ addr: (s.buf + S_OFF) as GuestPhysAddr, length: 5000, lkey: s.mr.lkey }],
      });
      status(take(c.scq), WcStatus.SUCCESS);
    } else {
      const wc = take(c.rcq);
      status(wc, WcStatus.SUCCESS);
      assert.equal(wc.wrId, 40);
      assert.equal(wc.opcode, WcOpcode.RECV);
      assert.equal(wc.byteLen, 5000);
      assert.equal(wc.immData >>> 0, 0xdeadbeef);
      assert.equal(wc.wcFlags & WcFlags.WITH_IMM, WcFlags.WITH_IMM);
      check(s, S_OFF, 5000, 3, 'received data');
    }
    barrier(s);
  },

  'WRITE_WITH_IMM writes and consumes a receive with the imm': (s) => {
    const c = connect(s);
    if (s.role === 'b') ibv.postRecv(c.qp, { wrId: 50, sgList: [] });
    barrier(s);
    if (s.role === 'a') {
      const r = remote(s);
      fill(s, I_OFF, 1000, 4);
      ibv.postSend(c.qp, {
        wrId: 5,
        opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
        immData: 77,
        sgList: [{ addr: (s.buf + I_OFF) as GuestPhysAddr, length: 1000, lkey: s.mr.lkey }],
        remoteAddr: r.addr + I_OFF,
        rkey: r.rkey,
      });
      status(take(c.scq), WcStatus.SUCCESS);
    } else {
      const wc = take(c.rcq);
      status(wc, WcStatus.SUCCESS);
      assert.equal(wc.wrId, 50);
      assert.equal(wc.opcode, WcOpcode.RECV_RDMA_WITH_IMM);
      assert.equal(wc.immData, 77);
      assert.equal(wc.byteLen, 1000);
      check(s, I_OFF, 1000, 4, 'written data');
    }
    barrier(s);
  },

  'SEND with no receive posted and rnr_retry 0 fails with RNR_RETRY_EXC_ERR': (s) => {
    rnr(s, 0);
  },

  'SEND with no receive posted exhausts rnr_retry 2 with RNR_RETRY_EXC_ERR': (s) => {
    rnr(s, 2);
  },

  'a bad rkey fails with REM_ACCESS_ERR and the responder QP goes to ERR': (s) => {
    const c = connect(s);
    if (s.role === 'b') ibv.postRecv(c.qp, { wrId: 70, sgList: [] });
    barrier(s);
    if (s.role === 'a') {
      const r = remote(s);
      ibv.postSend(c.qp, {
        wrId: 7,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 64, lkey: s.mr.lkey }],
        remoteAddr: r.addr,
        rkey: (r.rkey ^ 0x5a) >>> 0,
      });
      status(take(c.scq), WcStatus.REM_ACCESS_ERR);
    }
    barrier(s);
    // The responder QP went to ERR: its outstanding receive is flushed.
    if (s.role === 'b') {
      const wc = take(c.rcq);
      assert.equal(wc.wrId, 70);
      status(wc, WcStatus.WR_FLUSH_ERR);
    }
    barrier(s);
  },

  'a port of no host fails with RETRY_EXC_ERR': (s) => {
    const c = connect(s, { dlid: s.role === 'a' ? NO_SUCH_PORT : undefined });
    if (s.role === 'a') {
      ibv.postSend(c.qp, {
        wrId: 8,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 64, lkey: s.mr.lkey }],
        remoteAddr: remote(s).addr,
        rkey: remote(s).rkey,
      });
      status(take(c.scq), WcStatus.RETRY_EXC_ERR);
    }
    barrier(s);
  },

  'a link that is down fails with RETRY_EXC_ERR, and the next WR works': (s) => {
    const down = connect(s);
    if (s.role === 'a') {
      const r = remote(s);
      Atomics.store(s.board, Board.LINK_DOWN, 1);
      ibv.postSend(down.qp, {
        wrId: 9,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 64, lkey: s.mr.lkey }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      });
      status(take(down.scq), WcStatus.RETRY_EXC_ERR);
      Atomics.store(s.board, Board.LINK_DOWN, 0);
    }
    const up = connect(s);
    if (s.role === 'a') {
      const r = remote(s);
      fill(s, 0, 4096, 9);
      ibv.postSend(up.qp, {
        wrId: 10,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 4096, lkey: s.mr.lkey }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      });
      status(take(up.scq), WcStatus.SUCCESS);
    }
    barrier(s);
    if (s.role === 'b') check(s, 0, 4096, 9, 'data after the link came back');
  },

  'a message larger than the wire mailbox fails with LOC_LEN_ERR': (s) => {
    const c = connect(s);
    if (s.role === 'a') {
      // One byte more than the mailbox data area (16 MiB, the largest link message bulk).
      const len = (16 << 20) + 1;
      const big = s.ctx.allocBuffer(len);
      const mr = ibv.regMr(s.pd, big, len, ALL);
      const r = remote(s);
      ibv.postSend(c.qp, {
        wrId: 11,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: big, length: len, lkey: mr.lkey }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      });
      status(take(c.scq), WcStatus.LOC_LEN_ERR);
    }
    barrier(s);
  },
};

function rnr(s: Side, rnrRetry: number): void {
  const c = connect(s, { rnrRetry });
  if (s.role === 'a') {
    ibv.postSend(c.qp, {
      wrId: 6,
      opcode: WrOpcode.SEND,
      sgList: [{ addr: s.buf, length: 32, lkey: s.mr.lkey }],
    });
    status(take(c.scq), WcStatus.RNR_RETRY_EXC_ERR);
  }
  barrier(s);
}

export default async function main(env: DomainEnv): Promise<{ cases: Record<string, string> }> {
  const { role, board: sab } = env.args as { role: 'a' | 'b'; board: SharedArrayBuffer };
  const board = new Int32Array(sab);
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(BUF);
  const mr = ibv.regMr(pd, buf, BUF, ALL);
  const s: Side = { role, board, ctx, pd, buf, mr, mem: ctx.memory.view(buf, BUF) };
  board[role === 'a' ? Board.PORT_A : Board.PORT_B] = ctx.portId;
  if (role === 'b') {
    board[Board.RKEY_B] = mr.rkey;
    board[Board.ADDR_B_LO] = buf % 2 ** 32;
    board[Board.ADDR_B_HI] = Math.floor(buf / 2 ** 32);
  }
  barrier(s);
  const cases: Record<string, string> = {};
  for (const name of CASE_NAMES) {
    try {
      CASES[name](s);
      cases[name] = 'ok';
    } catch (err) {
      cases[name] = String((err as Error).message ?? err);
      // The sides are out of step now: later cases would only time out at barriers.
      break;
    }
  }
  await ibv.closeDevice(ctx);
  return { cases };
}
