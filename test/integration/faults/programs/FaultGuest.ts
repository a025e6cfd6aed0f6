/**
 * Guest program of the fault tests. Every request it issues has an id and a counter of how many
 * times it settled, so a test can prove none was lost (a wait that never ends is a PV_ERR_TIMEOUT)
 * and none completed twice. Roles (`args.role`):
 *  - `honest`: rounds of block I/O (8 writes of 4 KiB to its own region, read back, compare) and,
 *    with `rdma`, an RDMA WRITE of 64 KiB between two of its QPs connected to each other (loopback
 *    on its NIC), checked byte by byte. Between rounds it obeys `data/hold` (parks and says
 *    `data/held`, so a test reads the backend's counters while it holds nothing in flight) and
 *    stops at `data/stop`.
 *  - `victim`: fills its send queue with 256 KiB WRITEs and its ring with block writes, says
 *    `data/busy`, and keeps both full until the host kills it.
 *  - `stream`: writes region A and waits for it, says `data/streaming`, then writes batches of 32
 *    block requests over region B (each batch a new pattern) until `data/stop`; then reads A and
 *    B back. Used across a backend restart and an unplug: it records each request's outcome.
 *  - `verbs`: loopback QPs with WRs in flight (with `stuck`, receives on a QP nothing is ever
 *    sent to; with `mixed`, those receives AND 32 WRITEs of which every fourth and the last are
 *    signaled), says `data/busy`, then polls its CQ until told the device went away and
 *    reports the completions it got (per wr_id) and what the next verb throws.
 */

import { openBlkfront } from '../../../../frontend/blk/BlkConnect.js';
import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Access, SendFlags, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { PAGE_SIZE } from '../../../../protocol/Types.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;

interface Args {
  role: 'honest' | 'victim' | 'stream' | 'verbs';
  /** First sector of this guest's region on the shared disk. */
  base?: number;
  rdma?: boolean;
}

/** Outcome counts of one guest (see the file comment). */
export interface GuestReport {
  rounds: number;
  issued: number;
  ok: number;
  /** Error code → how many requests failed with it. */
  failed: Record<string, number>;
  /** Requests that settled more than once (must be 0). */
  settledTwice: number;
  /** Requests that never settled (must be 0). */
  unsettled: number;
  mismatches: number;
  rdmaOk: number;
  rdmaBad: string[];
  requeued: number;
  notes: string[];
  /** `verbs` role: completion statuses seen after the device went away, and what a later verb threw. */
  wcStatuses?: number[];
  /** `verbs` role: every completion as [wrId, status, opcode], in the order pollCq gave them. */
  wcs?: Array<[number, number, number]>;
  /** `verbs` role with `mixed`: the wr_ids posted, per kind. */
  posted?: { recv: number[]; signaled: number[]; unsignaled: number[] };
  afterError?: string;
  /** `stream` role: codes of requests issued after the end (must fail at once). */
  lateCodes?: string[];
}

/** The byte sector `s` holds after a write of pattern `seed`. */
export function pattern(s: number, i: number, seed: number): number {
  return (s * 31 + i * 7 + seed * 13 + 1) & 0xff;
}

const codeOf = (err: unknown): string => String((err as { code?: unknown }).code ?? (err as Error).message);

export default async function main(env: DomainEnv): Promise<GuestReport> {
  const args = env.args as unknown as Args;
  const hc = env.hypercalls;
  const data = `/local/domain/${env.domid}/data`;
  const key = (k: string) => hc.store.tryRead(`${data}/${k}`);
  const say = (k: string, v: string) => hc.store.write(`${data}/${k}`, v);
  const r: GuestReport = {
    rounds: 0,
    issued: 0,
    ok: 0,
    failed: {},
    settledTwice: 0,
    unsettled: 0,
    mismatches: 0,
    rdmaOk: 0,
    rdmaBad: [],
    requeued: 0,
    notes: [],
  };
  const settled: number[] = [];
  /** Tracks one request: counts its settlements and outcome. */
  const track = (p: Promise<void>): Promise<void> => {
    const id = r.issued++;
    settled.push(0);
    return p.then(
      () => {
        if (++settled[id] > 1) r.settledTwice++;
        else r.ok++;
      },
      (err: unknown) => {
        if (++settled[id] > 1) r.settledTwice++;
        else r.failed[codeOf(err)] = (r.failed[codeOf(err)] ?? 0) + 1;
      },
    );
  };
  const finish = (): GuestReport => {
    r.unsettled = settled.filter((n) => n === 0).length;
    return r;
  };

  if (args.role === 'verbs') return verbsRole(env, r, say, key);
  const blk = await openBlkfront(hc, { backend: 0, devid: 0 });
  const f = blk.front;
  const base = args.base ?? 0;
  const pages = 64;
  const buf = hc.memory.allocPages(pages);
  const mem = hc.memory.view(buf, pages * PAGE_SIZE);
  const fill = (off: number, sector: number, count: number, seed: number) => {
    for (let i = 0; i < count * 512; i++) mem[off + i] = pattern(sector + (i >> 9), i & 511, seed);
  };
  const compare = (off: number, sector: number, count: number, seed: number, what: string) => {
    for (let i = 0; i < count * 512; i++) {
      if (mem[off + i] !== pattern(sector + (i >> 9), i & 511, seed)) {
        r.mismatches++;
        if (r.notes.length < 6) r.notes.push(`${what}: sector ${sector + (i >> 9)} byte ${i & 511}`);
        return;
      }
    }
  };
  /** Writes `n` ≤ 32 requests of 8 sectors at `sector`, pattern `seed`, from buffer half `half`; tracked. */
  const writes = (sector: number, n: number, seed: number, half = 0): Promise<void>[] => {
    const ps: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const off = (half * 32 + i) * PAGE_SIZE;
      fill(off, sector + i * 8, 8, seed);
      ps.push(track(f.write(sector + i * 8, 8, (buf + off) as GuestPhysAddr)));
    }
    return ps;
  };
  const readBack = async (sector: number, n: number, seed: number, what: string) => {
    mem.fill(0);
    const ps: Promise<void>[] = [];
    for (let i = 0; i < n; i++) ps.push(track(f.read(sector + i * 8, 8, (buf + i * PAGE_SIZE) as GuestPhysAddr)));
    await f.wait(Promise.all(ps));
    for (let i = 0; i < n; i++) compare(i * PAGE_SIZE, sector + i * 8, 8, seed, what);
  };

  if (args.role === 'victim') {
    const rd = args.rdma ? loopback(await ibv.openDevice(env), 256 << 10) : undefined;
    // 64 writes: 32 on the ring, 32 queued; and a full send queue of WRITEs.
    for (let i = 0; i < 64; i++) track(f.write(base + i * 8, 8, buf));
    rd?.post(64);
    await say('busy', '1');
    for (;;) {
      rd?.post(rd.reap());
      if (f.outstanding() < 32) for (let i = 0; i < 32; i++) track(f.write(base + i * 8, 8, buf));
      f.poll();
      await new Promise((res) => setImmediate(res));
    }
  }

  if (args.role === 'honest') {
    const rd = args.rdma ? loopback(await ibv.openDevice(env), 64 << 10) : undefined;
    for (;;) {
      if ((await key('stop')) === '1') break;
      // A hold is a token: park, say `<token>:<rounds>`, stay while that token is up.
      const hold = await key('hold');
      if (hold !== undefined && hold !== '0') {
        await say('held', `${hold}:${r.rounds}`);
        while ((await key('hold')) === hold) await new Promise((res) => setTimeout(res, 2));
      }
      const seed = r.rounds + 1;
      await f.wait(Promise.all(writes(base, 8, seed)));
      await readBack(base, 8, seed, `round ${seed}`);
      if (rd !== undefined) rd.checkedWrite(r, seed);
      r.rounds++;
    }
    r.requeued = f.requeued;
    await blk.close();
    return finish();
  }

  // stream
  const regionA = base;
  const regionB = base + 1024;
  await f.wait(Promise.all(writes(regionA, 32, 0xa)));
  await say('streaming', '1');
  // `stop` is read in the background, so the ring never empties while the stream runs.
  let stop = false;
  const look = (): void => {
    void key('stop').then((v) => {
      if (v === '1') stop = true;
      else setTimeout(look, 2);
    });
  };
  look();
  // Two batches overlap (the next is queued before the previous is waited for), each half of
  // region B from its own half of the buffer; lastGood[h] is the last batch of half h that
  // completed in full (what that half must read back).
  const lastGood = [0, 0];
  const ok = (ps: Promise<void>[]) =>
    Promise.all(ps).then(
      () => true,
      () => false,
    );
  let prev: { batch: number; done: Promise<boolean> } | undefined;
  for (let batch = 1; ; batch++) {
    const h = batch & 1;
    const ps = writes(regionB + h * 256, 32, batch, h);
    const cur = { batch, done: ok(ps) };
    if (prev !== undefined && (await f.wait(prev.done))) lastGood[prev.batch & 1] = prev.batch;
    prev = cur;
    r.rounds = batch;
    if (f.dead !== undefined || stop) break;
  }
  if (prev !== undefined && (await f.wait(prev.done).catch(() => false))) lastGood[prev.batch & 1] = prev.batch;
  r.requeued = f.requeued;
  if (f.dead === undefined) {
    await readBack(regionA, 32, 0xa, 'region A (written before the fault)');
    for (const h of [0, 1])
      await readBack(regionB + h * 256, 32, lastGood[h], `region B half ${h} (batch ${lastGood[h]})`);
    await blk.close();
  } else {
    // The device ended: later requests must fail at once, with a code.
    r.lateCodes = [];
    for (let i = 0; i < 4; i++) {
      await f.read(regionA, 8, buf).then(
        () => r.lateCodes?.push('ok'),
        (err: unknown) => r.lateCodes?.push(codeOf(err)),
      );
    }
  }
  return finish();
}

/** Two RC QPs of one guest connected to each other on its NIC, one MR of two regions. */
function loopback(ctx: ibv.Context, size: number) {
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(2 * size);
  const mr = ibv.regMr(pd, buf, 2 * size, ALL);
  const cq = ibv.createCq(ctx, 256);
  const cap = { maxSendWr: 64, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
  const q1 = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap });
  const q2 = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap });
  ibv.connectRcQp(q1, { destQpNum: q2.qpNum, dlid: ctx.portId }, ALL);
  ibv.connectRcQp(q2, { destQpNum: q1.qpNum, dlid: ctx.portId }, ALL);
  const wcs = Array.from({ length: 64 }, ibv.emptyWc);
  let nextId = 1;
  const seen = new Map<number, number>();
  /** `n` WRITEs (signaled unless `signaled` says otherwise for a WR's index); returns their wr_ids. */
  const post = (n: number, signaled: (i: number) => boolean = () => true): number[] => {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const wrId = nextId++;
      ids.push(wrId);
      seen.set(wrId, 0);
      ibv.postSend(q1, {
        wrId,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: signaled(i) ? SendFlags.SIGNALED : 0,
        sgList: [{ addr: buf, length: size, lkey: mr.lkey }],
        remoteAddr: buf + size,
        rkey: mr.rkey,
      });
    }
    return ids;
  };
  const reap = (): number => ibv.pollCq(cq, 64, wcs);
  /** Receives on the second QP: nothing is ever sent to it, so they stay posted. */
  const postRecvs = (n: number): number[] => {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const wrId = nextId++;
      ids.push(wrId);
      seen.set(wrId, 0);
      ibv.postRecv(q2, { wrId, sgList: [{ addr: buf + size, length: size, lkey: mr.lkey }] });
    }
    return ids;
  };
  return {
    ctx,
    cq,
    wcs,
    seen,
    post,
    postRecvs,
    reap,
    /** One WRITE, waited for, its completion counted per wr_id and its bytes compared. */
    checkedWrite(r: GuestReport, seed: number): void {
      const src = ctx.memory.view(buf, size);
      for (let i = 0; i < size; i++) src[i] = (i * 3 + seed) & 0xff;
      post(1);
      const deadline = performance.now() + 10_000;
      let n = reap();
      while (n === 0) {
        if (performance.now() > deadline) {
          r.rdmaBad.push(`round ${seed}: no completion`);
          return;
        }
        ibv.waitCq(cq, { timeoutMs: 100 });
        n = reap();
      }
      for (let i = 0; i < n; i++) {
        const c = (seen.get(wcs[i].wrId) ?? 0) + 1;
        seen.set(wcs[i].wrId, c);
        if (c > 1 || wcs[i].status !== WcStatus.SUCCESS) r.rdmaBad.push(`wr ${wcs[i].wrId}: ${c}× ${wcs[i].status}`);
      }
      const dst = ctx.memory.view((buf + size) as GuestPhysAddr, size);
      for (let i = 0; i < size; i++) {
        if (dst[i] !== ((i * 3 + seed) & 0xff)) {
          r.rdmaBad.push(`round ${seed}: byte ${i}`);
          return;
        }
      }
      r.rdmaOk++;
    },
  };
}

/** `verbs` role: see the file comment. */
async function verbsRole(
  env: DomainEnv,
  r: GuestReport,
  say: (k: string, v: string) => Promise<void>,
  key: (k: string) => Promise<string | undefined>,
): Promise<GuestReport> {
  const rd = loopback(await ibv.openDevice(env), 1 << 20);
  // `stuck`: receives nothing is ever sent to stay outstanding until the QP goes away.
  // Otherwise WRITEs, which complete at once.
  const a = env.args as { stuck?: boolean; mixed?: boolean };
  const stuck = a.stuck === true;
  const mixed = a.mixed === true;
  // `mixed`: completions each posted WR must get (every receive and every signaled WRITE); an
  // unsignaled WRITE gets one only if it was still outstanding when the device went (a flush).
  let mustComplete: number[] | undefined;
  if (mixed) {
    const recv = rd.postRecvs(4);
    const ids = rd.post(32, (i) => i % 4 === 3 || i === 31);
    const signaled = ids.filter((_, i) => i % 4 === 3 || i === 31);
    r.posted = { recv, signaled, unsignaled: ids.filter((id) => !signaled.includes(id)) };
    mustComplete = [...recv, ...signaled];
  } else if (stuck) rd.postRecvs(4);
  else rd.post(32);
  const expected = stuck ? 4 : 32;
  await say('busy', '1');
  r.wcStatuses = [];
  r.wcs = [];
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const n = rd.reap();
    for (let i = 0; i < n; i++) {
      const wc = rd.wcs[i];
      const c = (rd.seen.get(wc.wrId) ?? 0) + 1;
      rd.seen.set(wc.wrId, c);
      if (c > 1) r.rdmaBad.push(`wr ${wc.wrId} completed ${c} times`);
      r.wcStatuses.push(wc.status);
      r.wcs.push([wc.wrId, wc.status, wc.opcode]);
    }
    if (mustComplete !== undefined) {
      // Done once told the device went away, every WR that must complete did, and the CQ is dry.
      if (n === 0 && mustComplete.every((id) => (rd.seen.get(id) ?? 0) > 0) && (await key('gone')) === '1') break;
    } else {
      // Done once told the device went away and every WR completed (or, with no flush, at the bound).
      if (r.wcStatuses.length >= expected && (await key('gone')) === '1') break;
      if (!stuck && n === 0 && (await key('gone')) === '1') break;
    }
    await new Promise((res) => setTimeout(res, 1));
  }
  if ((env.args as { lent?: boolean }).lent === true) {
    // The device stays plugged (the NIC behind the backend was taken away): a WR posted now
    // should complete with an error or its post throw; the report says which (or `hang` after 1 s).
    try {
      rd.post(1);
      const end = performance.now() + 1000;
      let n = rd.reap();
      while (n === 0 && performance.now() < end) {
        rd.ctx.provider.progress();
        await new Promise((res) => setTimeout(res, 2));
        n = rd.reap();
      }
      const wrId = rd.seen.size;
      r.afterError = n === 0 ? 'hang' : rd.wcs[0].wrId !== wrId ? 'stray' : `wc:${rd.wcs[0].status}`;
    } catch (err) {
      r.afterError = codeOf(err);
    }
    return r;
  }
  // The device's own xenbus state leaves Connected when it sees the backend go; the provider is
  // marked dead in the same step. Then a verb must throw.
  const state = `/local/domain/${env.domid}/device/vrdma/0/state`;
  const until = performance.now() + 10_000;
  while ((await env.hypercalls.store.tryRead(state)) === '4' && performance.now() < until) {
    await new Promise((res) => setTimeout(res, 2));
  }
  await new Promise((res) => setTimeout(res, 20));
  try {
    rd.post(1);
    r.afterError = 'none';
  } catch (err) {
    r.afterError = codeOf(err);
  }
  return r;
}
