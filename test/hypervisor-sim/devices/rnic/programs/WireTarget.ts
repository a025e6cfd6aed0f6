/**
 * Guest program of WireResponder.test.ts: a native guest that owns its host's NIC, registers a
 * buffer and connects one RC QP to a requester on ANOTHER host (port `peerPort`, QP `peerQpn`)
 * that does not exist — the test itself plays that requester by calling the WireResponder with
 * packets. Guest and test step through a SharedArrayBuffer `board`; at the end the guest returns
 * the receive completions it saw.
 */

import * as ibv from '../../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { Access } from '../../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../../protocol/Types.js';

/** Words of the board (Int32). */
export const enum TargetBoard {
  /** Test → guest: 1 = post two receives (wr 77, 78), 2 = collect completions and return. */
  CMD = 0,
  /** Guest → test: 1 = connected and published, 2 = receives posted. */
  ACK = 1,
  QPN = 2,
  RKEY = 3,
  ADDR_LO = 4,
  ADDR_HI = 5,
  PORT = 6,
  WORDS = 8,
}

export const TARGET_BUF = 1 << 16;
/** min_rnr_timer of the target QP (× 10 µs). */
export const TARGET_RNR_TIMER = 14;

const WAIT_MS = 60_000;

function awaitCmd(board: Int32Array, cmd: number): void {
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    // ORDERING: seq-cst load pairs with the test's store of CMD.
    const seen = Atomics.load(board, TargetBoard.CMD);
    if (seen >= cmd) return;
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`the test never sent command ${cmd}`);
    Atomics.wait(board, TargetBoard.CMD, seen, Math.min(left, 1000));
  }
}

function ack(board: Int32Array, v: number): void {
  // ORDERING: seq-cst store publishes the words written before it.
  Atomics.store(board, TargetBoard.ACK, v);
  Atomics.notify(board, TargetBoard.ACK);
}

export default async function main(
  env: DomainEnv,
): Promise<{ wcs: Array<{ wrId: number; status: number; byteLen: number; opcode: number }> }> {
  const { board: sab, peerPort, peerQpn } = env.args as { board: SharedArrayBuffer; peerPort: number; peerQpn: number };
  const board = new Int32Array(sab);
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(TARGET_BUF);
  const access = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
  const mr = ibv.regMr(pd, buf, TARGET_BUF, access);
  const cq = ibv.createCq(ctx, 16);
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    sqSigAll: true,
  });
  ibv.connectRcQp(qp, { destQpNum: peerQpn, dlid: peerPort }, access, { minRnrTimer: TARGET_RNR_TIMER });
  board[TargetBoard.QPN] = qp.qpNum;
  board[TargetBoard.RKEY] = mr.rkey;
  board[TargetBoard.ADDR_LO] = buf % 2 ** 32;
  board[TargetBoard.ADDR_HI] = Math.floor(buf / 2 ** 32);
  board[TargetBoard.PORT] = ctx.portId;
  ack(board, 1);
  awaitCmd(board, 1);
  for (const wrId of [77, 78]) {
    ibv.postRecv(qp, { wrId, sgList: [{ addr: (buf + 60_000) as GuestPhysAddr, length: 4096, lkey: mr.lkey }] });
  }
  ack(board, 2);
  awaitCmd(board, 2);
  const out: Array<{ wrId: number; status: number; byteLen: number; opcode: number }> = [];
  const wc = [ibv.emptyWc()];
  const deadline = performance.now() + WAIT_MS;
  while (out.length < 2 && performance.now() < deadline) {
    if (ibv.pollCq(cq, 1, wc) === 0) {
      ibv.waitCq(cq, { timeoutMs: 100 });
      continue;
    }
    out.push({ wrId: wc[0].wrId, status: wc[0].status, byteLen: wc[0].byteLen, opcode: wc[0].opcode });
  }
  await ibv.closeDevice(ctx);
  return { wcs: out };
}
