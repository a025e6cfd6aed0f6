/**
 * A second thread producing CQEs into a CQ ring in shared guest memory with the real
 * `produceCqe`, as the NIC's engine thread or the TCP provider thread would. Before each CQE it
 * waits (bounded) until the consumer has armed the CQ, so the consumer is really on its way to
 * sleep when the CQE lands, and after it until the consumer took it. Posts `{ ready }` first,
 * then `{ produced, error }`.
 *
 * workerData: { buffer, ringAddr, entries, count, start }.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { CqWord, cqBytes, produceCqe } from '../../../../protocol/rdma/Cq.js';
import { emptyWc, WcOpcode, WcStatus } from '../../../../protocol/rdma/Verbs.js';

interface Data {
  readonly buffer: SharedArrayBuffer;
  readonly ringAddr: number;
  readonly entries: number;
  readonly count: number;
  readonly start: number;
}

const d = workerData as Data;
const words = new Int32Array(d.buffer, d.ringAddr, cqBytes(d.entries) >> 2);
const nap = new Int32Array(new SharedArrayBuffer(4));
const wc = emptyWc();

/** Waits (spin, then 1 ms naps; at most 10 s) until `done()`; false on timeout. */
function until(done: () => boolean): boolean {
  for (let i = 0; i < 2000; i++) if (done()) return true;
  for (let naps = 0; naps < 10_000; naps++) {
    if (done()) return true;
    Atomics.wait(nap, 0, 0, 1);
  }
  return done();
}
let prod = d.start >>> 0;
let produced = 0;
let error: string | undefined;

parentPort?.postMessage({ ready: true });
for (let i = 0; i < d.count; i++) {
  // ORDERING: seq-cst load of the consumer's ARMED store.
  if (!until(() => Atomics.load(words, CqWord.ARMED) !== 0)) {
    error = `consumer never armed the CQ before CQE ${i}`;
    break;
  }
  wc.wrId = 1000 + i;
  wc.status = i % 7 === 3 ? WcStatus.REM_ACCESS_ERR : WcStatus.SUCCESS;
  wc.opcode = i % 2 === 0 ? WcOpcode.RDMA_WRITE : WcOpcode.RECV;
  wc.byteLen = i * 3;
  wc.qpNum = 101;
  const next = produceCqe(words, d.entries, prod, wc);
  if (next < 0) {
    error = `ring full at CQE ${i}`;
    break;
  }
  prod = next;
  produced++;
  // Let the consumer take it before arming for the next one (so the ring never overflows and
  // every CQE is delivered to a consumer that armed after the previous one).
  // ORDERING: seq-cst load of the consumer index published by releaseCqes.
  if (!until(() => Atomics.load(words, CqWord.CONS) >>> 0 === prod)) {
    error = `consumer never took CQE ${i}`;
    break;
  }
}
parentPort?.postMessage({ produced, error });
