/**
 * Guest program of the blkif end-to-end test: connects its vbd with the real blkfront, writes
 * deterministic patterns (`patternByte`) with direct and indirect requests and many in flight,
 * flushes, reads everything back, then writes hostile requests straight into the ring and
 * checks each gets an error status with zero padding, rewrites a published slot while the
 * backend may be copying it, and proves the backend still serves honest I/O. Returns what it saw.
 */

import { type BlkDevice, openBlkfront } from '../../../../frontend/blk/BlkConnect.js';
import type { BlkFront } from '../../../../frontend/blk/BlkFront.js';
import { BlkifOp } from '../../../../protocol/blkif/BlkifConstants.js';
import {
  BLKIF_SLOT_WORDS,
  type BlkifRequestIn,
  BlkRspWord,
  decodeBlkifResponse,
  encodeBlkifRequest,
  encodeBlkifSegment,
} from '../../../../protocol/blkif/BlkifSlot.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { DOM0, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../../../protocol/Types.js';

/** The byte the disk should hold at absolute byte address `a` after the pattern writes. */
export function patternByte(a: number, seed: number): number {
  return (a * 131 + Math.floor(a / 512) * 7 + seed) & 0xff;
}

/** The regions the guest writes (sector, count), and the seed. */
export const REGIONS: ReadonlyArray<readonly [number, number]> = [
  [8, 3], // direct, from a buffer that starts mid-page: 1 request, 2 segments
  [100, 88], // direct: 11 full segments, the most a direct request holds
  [4096, 1024], // indirect: 128 segments in one request
  [8192, 4800], // 600 segments: 3 indirect requests (256 + 256 + 88)
];
export const SEED = 0x3d;
/** 64 single-sector writes issued at once (twice the ring size: they queue). */
export const SCATTER_BASE = 20000;
export const SCATTER = 64;

function fill(mem: Uint8Array, sector: number, count: number): void {
  for (let i = 0; i < count * 512; i++) mem[i] = patternByte(sector * 512 + i, SEED);
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const blk: BlkDevice = await openBlkfront(hc, { backend: 0, devid: 0 });
  const f = blk.front;
  const pages = 601;
  const buf = hc.memory.allocPages(pages);
  const mem = hc.memory.view(buf, pages * PAGE_SIZE);
  let mismatches = 0;
  const notes: string[] = [];

  // Writes: each region from its own buffer offset; the first one mid-page.
  for (const [sector, count] of REGIONS) {
    const off = sector === 8 ? 3 * 512 : 0;
    fill(mem.subarray(off), sector, count);
    await f.wait(f.write(sector, count, (buf + off) as GuestPhysAddr));
  }
  // Queue depth: 64 writes at once from 64 different sectors of the buffer.
  const scatter: Promise<void>[] = [];
  for (let i = 0; i < SCATTER; i++) {
    const s = SCATTER_BASE + i * 3;
    fill(mem.subarray(i * 512), s, 1);
    scatter.push(f.write(s, 1, (buf + i * 512) as GuestPhysAddr));
  }
  await f.wait(Promise.all(scatter));
  await f.wait(f.flush());

  // Read everything back into a zeroed buffer and compare.
  const check = async (): Promise<void> => {
    for (const [sector, count] of [...REGIONS, [SCATTER_BASE, SCATTER * 3] as const]) {
      mem.fill(0);
      await f.wait(f.read(sector, count, buf));
      for (let i = 0; i < count * 512; i++) {
        const s = sector + (i >> 9);
        if (sector === SCATTER_BASE && (s - SCATTER_BASE) % 3 !== 0) continue;
        if (mem[i] !== patternByte(sector * 512 + i, SEED)) {
          mismatches++;
          if (notes.length < 4) notes.push(`sector ${s} byte ${i & 511}: ${mem[i]}`);
          break;
        }
      }
    }
  };
  await check();

  // Hostile requests straight into the ring.
  const rw = hc.grant.grantAccess(DOM0, gfnOf(buf), false);
  const foreign = hc.grant.grantAccess(7 as never, gfnOf(buf), false);
  const seg = (gref: number, first = 0, last = 7) => ({ gref, first, last });
  const base = { sectorLo: 0, sectorHi: 0, handle: 0xffff };
  const hostile: Record<string, Omit<BlkifRequestIn, 'idLo' | 'idHi'>> = {
    'bad op': { ...base, op: 99, segs: [seg(rw)] },
    'nseg 0': { ...base, op: BlkifOp.READ, segs: [] },
    'nseg 12': { ...base, op: BlkifOp.READ, segs: [seg(rw)], nseg: 12 },
    'nseg 257': { ...base, op: BlkifOp.INDIRECT, indirectOp: BlkifOp.READ, nseg: 257, indirectGrefs: [rw] },
    'first > last': { ...base, op: BlkifOp.READ, segs: [seg(rw, 4, 3)] },
    'last 8': { ...base, op: BlkifOp.READ, segs: [seg(rw, 0, 8)] },
    'past the end': { ...base, op: BlkifOp.READ, sectorLo: blk.info.sectors, segs: [seg(rw, 0, 0)] },
    'near 2^64': { ...base, op: BlkifOp.READ, sectorLo: 0xffffffff, sectorHi: 0xffffffff, segs: [seg(rw)] },
    'forged gref': { ...base, op: BlkifOp.READ, segs: [seg(4000)] },
    'foreign gref': { ...base, op: BlkifOp.READ, segs: [seg(foreign)] },
  };
  const statuses: Record<string, number> = {};
  let paddingNonZero = 0;
  let id = 0x10000;
  for (const [name, r] of Object.entries(hostile)) {
    const words = raw(f, (w, at) => encodeBlkifRequest(w, at, { ...r, idLo: id++, idHi: 0xffffffff }));
    if (words[BlkRspWord.PAD] !== 0 || ((words[BlkRspWord.OP_STATUS] >>> 8) & 0xff) !== 0) paddingNonZero++;
    statuses[name] = decodeBlkifResponse(words, 0, { idLo: 0, idHi: 0, op: 0, status: 0 }).status;
  }
  // A slot rewritten after req_prod moved: the backend copies either version, never a mix it
  // then trusts; whatever it answers, it must answer once and keep serving.
  const racedStatuses: number[] = [];
  const descPage = hc.memory.allocPages(1);
  const dv = hc.memory.view(descPage, PAGE_SIZE);
  const desc = new Int32Array(dv.buffer, dv.byteOffset, PAGE_SIZE / 4);
  for (let i = 0; i < 8; i++) encodeBlkifSegment(desc, i * 2, seg(rw));
  const dref = hc.grant.grantAccess(DOM0, gfnOf(descPage), true);
  for (let k = 0; k < 50; k++) {
    const honest = { ...base, op: BlkifOp.INDIRECT, indirectOp: BlkifOp.READ, nseg: 8, indirectGrefs: [dref] };
    const words = raw(
      f,
      (w, at) => encodeBlkifRequest(w, at, { ...honest, idLo: id++, idHi: 0 }),
      (w, at) => {
        // Flip the slot and the descriptor page between honest and hostile while it is served.
        for (let j = 0; j < 200; j++) {
          w[at] = j & 1 ? 99 : BlkifOp.INDIRECT | (BlkifOp.READ << 8) | (8 << 16);
          encodeBlkifSegment(desc, 2 * (j & 7), seg(j & 1 ? 4000 : rw, j & 1 ? 9 : 0, 7));
        }
      },
    );
    racedStatuses.push(decodeBlkifResponse(words, 0, { idLo: 0, idHi: 0, op: 0, status: 0 }).status);
  }
  hc.grant.endAccess(dref);
  hc.grant.endAccess(rw);
  hc.grant.endAccess(foreign);

  // The backend still serves honest I/O after all that.
  await check();
  const result = {
    mismatches,
    notes,
    statuses,
    paddingNonZero,
    racedStatuses,
    badResponses: f.badResponses,
    info: blk.info,
    waits: f.waits,
  };
  await blk.close();
  return result;
}

/**
 * Writes a raw slot, publishes it (notifying if asked), optionally keeps scribbling on it with
 * `after`, then waits for the response and returns a copy of the slot.
 */
function raw(
  f: BlkFront,
  write: (w: Int32Array, at: number) => void,
  after?: (w: Int32Array, at: number) => void,
): Int32Array {
  const ring = f.ring;
  const at = ring.nextRequestSlot();
  ring.words.fill(0, at, at + BLKIF_SLOT_WORDS);
  write(ring.words, at);
  ring.commitRequest();
  f.push();
  after?.(ring.words, at);
  const deadline = performance.now() + 10_000;
  while (ring.unconsumedResponses() === 0) {
    if (performance.now() > deadline) throw new Error('the backend did not answer a raw request');
    f.waitOnce(deadline);
  }
  const rsp = ring.responseSlot();
  const out = ring.words.slice(rsp, rsp + BLKIF_SLOT_WORDS);
  ring.consumeResponse();
  return out;
}
