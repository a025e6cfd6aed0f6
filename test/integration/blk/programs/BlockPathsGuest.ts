/**
 * Guest program of the block conformance test: through `openBlock` (whatever the transport),
 * checks the regions earlier runs wrote (`args.expect`), writes its own region (`args.write`)
 * from a buffer that starts mid-page, flushes, reads it back into a second buffer, and reports
 * mismatches per region. Patterns depend on the absolute byte address and a seed, so a region
 * read back at the wrong offset, or written by the wrong run, cannot match.
 */

import { openBlock } from '../../../../frontend/blk/Block.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';

/** One region: device sectors and the seed of its pattern. */
export interface Region {
  readonly sector: number;
  readonly count: number;
  readonly seed: number;
}

/** The byte at absolute byte address `a` of a region written with `seed`. */
export function pathByte(a: number, seed: number): number {
  return (a * 97 + Math.floor(a / 4096) * 13 + seed * 29) & 0xff;
}

/** What the program reports. */
export interface PathsReport {
  /** The SSD's name as this domain knows it (`nvme0`, or `nvme0@A` when borrowed). */
  readonly device: string;
  readonly transport: string;
  readonly sectorSize: number;
  readonly sectors: number;
  /** Mismatching bytes per expected region, in `args.expect` order. */
  readonly expectMismatches: number[];
  /** Mismatching bytes when reading back this run's own write. */
  readonly ownMismatches: number;
}

export default async function main(env: DomainEnv): Promise<PathsReport> {
  const mem = env.hypercalls.memory;
  const blk = await openBlock(env);
  const ss = blk.sectorSize;
  const expect = (env.args.expect ?? []) as Region[];
  const mine = env.args.write as Region;
  const most = Math.max(mine.count, ...expect.map((r) => r.count)) * ss;
  const pages = Math.ceil(most / PAGE_SIZE) + 1;
  // Mid-page starts: the first and last segments (and PRPs) are partial pages.
  const src = (mem.allocPages(pages) + 1024) as GuestPhysAddr;
  const dst = (mem.allocPages(pages) + 2048) as GuestPhysAddr;

  const mismatches = async (r: Region): Promise<number> => {
    const v = mem.view(dst, r.count * ss);
    v.fill(0);
    await blk.wait(blk.read(r.sector, r.count, dst));
    let bad = 0;
    for (let i = 0; i < v.length; i++) if (v[i] !== pathByte(r.sector * ss + i, r.seed)) bad++;
    return bad;
  };

  const expectMismatches: number[] = [];
  for (const r of expect) expectMismatches.push(await mismatches(r));
  const s = mem.view(src, mine.count * ss);
  for (let i = 0; i < s.length; i++) s[i] = pathByte(mine.sector * ss + i, mine.seed);
  await blk.wait(blk.write(mine.sector, mine.count, src));
  await blk.wait(blk.flush());
  const ownMismatches = await mismatches(mine);
  const report = {
    device: blk.device,
    transport: blk.transport,
    sectorSize: ss,
    sectors: blk.sectors,
    expectMismatches,
    ownMismatches,
  };
  await blk.close();
  return report;
}
