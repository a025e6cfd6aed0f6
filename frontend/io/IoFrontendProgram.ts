/**
 * Guest program driving the generic "io" device: connects through the xenbus handshake, then
 * runs one workload and returns what it measured and verified.
 *
 * Workloads (`args.mode`):
 *  - `stream`: `count` requests, as many in flight as the ring holds; each CHECKSUM request
 *    covers fresh random bytes of a granted data page and each FILL asks the backend to write a
 *    pattern; every response must carry the request's id (in order), status 0 and the right
 *    checksum, and FILL data must read back as the pattern.
 *  - `pingpong`: one request in flight; returns per-request round-trip samples in µs.
 *  - `throughput`: like stream without payload checks; returns requests per second.
 * Other arguments: `backend` (domid, default 0), `devid` (0), `order` (ring pages 2^order),
 * `startIndex` (first ring index), `spinBudget`, `payload` (max bytes per request, ≤ 4096).
 */

import type { DomainEnv } from '../../protocol/Program.js';
import { fillByte, fnv1a, IoOp, type IoRequest } from '../../protocol/ring/IoSlot.js';
import { type DomId, domId, type GrantRef, gfnOf, PAGE_SIZE } from '../../protocol/Types.js';
import { waitForPath } from '../../protocol/xenbus/control.js';
import { XenbusDevice } from '../../protocol/xenbus/XenbusDevice.js';
import { frontendDir } from '../../protocol/xenbus/XenbusPaths.js';
import { endAccessDeferred } from '../grant/endAccessDeferred.js';
import { IoRingFront } from './IoRingFront.js';

/** Arguments of the io frontend program. */
export interface IoFrontArgs {
  readonly mode?: 'stream' | 'pingpong' | 'throughput';
  readonly count?: number;
  readonly backend?: number;
  readonly devid?: number;
  readonly order?: number;
  readonly startIndex?: number;
  readonly spinBudget?: number;
  readonly payload?: number;
}

/** xorshift32: cheap reproducible bytes for payloads. */
function xorshift(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const a = env.args as IoFrontArgs;
  const mode = a.mode ?? 'stream';
  const count = a.count ?? 10_000;
  const backend: DomId = domId(a.backend ?? 0);
  const payload = Math.min(a.payload ?? 256, PAGE_SIZE);

  // Data pages, granted read-write once (persistent grants): twice the ring size, so a page is
  // never rewritten while a request on it is in flight.
  let front: IoRingFront | undefined;
  const devid = a.devid ?? 0;
  // The toolstack may plug the device after we boot: wait for its directory (xenbus probe).
  await waitForPath(hc.store, `${frontendDir(hc.domid, 'io', devid)}/backend`);
  const dev = new XenbusDevice({
    role: 'frontend',
    store: hc.store,
    domid: hc.domid,
    type: 'io',
    devid,
    hooks: {
      setup: () => {
        front = new IoRingFront(hc, backend, { order: a.order, startIndex: a.startIndex, spinBudget: a.spinBudget });
        const k = front.keys;
        const keys: Record<string, string> = { 'event-channel': String(k.port) };
        if (k.ringOrder === 0) keys['ring-ref'] = String(k.ringRefs[0]);
        else {
          keys['ring-page-order'] = String(k.ringOrder);
          k.ringRefs.forEach((ref, i) => {
            keys[`ring-ref${i}`] = String(ref);
          });
        }
        return keys;
      },
      connected: () => {},
      disconnected: () => {
        front?.release();
        front = undefined;
      },
    },
  });
  await dev.start();
  await dev.whenConnected();
  const ring = front as unknown as IoRingFront;
  const nPages = ring.ring.size * 2;
  const dataAddr = hc.memory.allocPages(nPages);
  const data = hc.memory.view(dataAddr, nPages * PAGE_SIZE);
  const refs: GrantRef[] = [];
  for (let i = 0; i < nPages; i++) refs.push(hc.grant.grantAccess(backend, (gfnOf(dataAddr) + i) as never, false));

  const rnd = xorshift(hc.domid * 7919 + count);
  const req: IoRequest = { idLo: 0, idHi: 0, op: 0, nseg: 1, gref: 0, offset: 0, length: 0, checksum: 0 };
  const expected = new Uint32Array(nPages); // checksum expected per page slot
  const lengths = new Uint32Array(nPages);
  const offsets = new Uint32Array(nPages);
  const ops = new Uint8Array(nPages);
  let submitted = 0;
  let completed = 0;
  let mismatches = 0;
  const firstMismatch: string[] = [];
  const samples = mode === 'pingpong' ? new Float64Array(count) : undefined;
  const inFlightLimit = mode === 'pingpong' ? 1 : ring.ring.size;
  const verify = mode === 'stream';
  const startIdx = ring.ring.reqProdPvt;
  const t0 = performance.now();
  const submitTimes = new Float64Array(nPages);

  while (completed < count) {
    while (submitted < count && ring.outstanding() < inFlightLimit) {
      const slot = submitted % nPages;
      const len = payload === 0 ? 0 : rnd() % (payload + 1);
      const off = rnd() % (PAGE_SIZE - len + 1);
      const op = verify && (submitted & 3) === 3 ? IoOp.FILL : IoOp.CHECKSUM;
      const base = slot * PAGE_SIZE + off;
      if (verify && op === IoOp.CHECKSUM) {
        for (let i = 0; i < len; i++) data[base + i] = rnd() & 0xff;
        expected[slot] = fnv1a(data, base, len);
      }
      ops[slot] = op;
      lengths[slot] = len;
      offsets[slot] = off;
      req.idLo = submitted;
      req.idHi = 0;
      req.op = op;
      req.gref = refs[slot];
      req.offset = off;
      req.length = len;
      req.checksum = verify ? expected[slot] : 0;
      ring.submit(req);
      if (samples) submitTimes[slot] = performance.now();
      submitted++;
    }
    ring.push();
    let got = 0;
    for (let rsp = ring.poll(); rsp !== undefined; rsp = ring.poll()) {
      got++;
      const slot = completed % nPages;
      if (rsp.idLo !== completed >>> 0 || rsp.status !== 0 || rsp.length !== lengths[slot]) {
        mismatches++;
      } else if (verify) {
        const base = slot * PAGE_SIZE + offsets[slot];
        if (ops[slot] === IoOp.FILL) {
          for (let i = 0; i < rsp.length; i++) {
            if (data[base + i] !== fillByte(rsp.idLo, i)) {
              mismatches++;
              break;
            }
          }
          if (fnv1a(data, base, rsp.length) !== rsp.checksum) mismatches++;
        } else if (rsp.checksum !== expected[slot]) {
          mismatches++;
        }
      }
      if (mismatches > 0 && firstMismatch.length === 0) {
        firstMismatch.push(`request ${completed}: id ${rsp.idLo} status ${rsp.status} len ${rsp.length}`);
      }
      if (samples) samples[completed] = (performance.now() - submitTimes[slot]) * 1000;
      completed++;
    }
    if (got === 0 && ring.outstanding() > 0) ring.waitForResponses();
  }
  const seconds = (performance.now() - t0) / 1000;
  const endIdx = ring.ring.reqProdPvt;
  const counters = ring.ring.counters.snapshot();
  const result = {
    mode,
    count,
    completed,
    mismatches,
    firstMismatch,
    seconds,
    rate: completed / seconds,
    startIndex: startIdx,
    endIndex: endIdx,
    wrapped: endIdx < startIdx,
    ringSize: ring.ring.size,
    lostWakeups: ring.lostWakeups,
    sleeps: ring.sleeps,
    counters,
    samples: samples ? Array.from(samples) : undefined,
  };
  await dev.close();
  // The backend unmaps its persistent grants when it disconnects; pages still mapped at the
  // deadline are leaked, never reused (XSA-396).
  const leaked = await endAccessDeferred(hc.grant, refs);
  if (leaked.length === 0) hc.memory.freePages(dataAddr, nPages);
  return { ...result, leakedGrants: leaked.length };
}
