/**
 * Test program: the native NVMe driver in a real domain worker, over the `nvme` PciFunction the
 * host handed it. It optionally checks what an earlier owner left at `args.expectLba` (pattern
 * `args.expectSeed`), writes `args.blocks` blocks of pattern `args.seed` at `args.lba` from a
 * buffer spanning several pages, reads them back into another buffer, flushes, closes the
 * driver and reports what it saw.
 */

import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';

/** Byte `i` of pattern `seed`. */
export function patternByte(seed: number, i: number): number {
  return (i * 31 + seed * 7 + (i >>> 9)) & 0xff;
}

/** What the program reports. */
export interface NvmeReport {
  readonly transport: string;
  readonly bdf: string;
  readonly capacityBlocks: number;
  readonly mismatches: number;
  readonly earlierMismatches: number;
}

export default async function main(env: DomainEnv): Promise<NvmeReport> {
  const att = env.devices.find((d) => d.kind === 'nvme');
  if (att?.pci === undefined) throw new Error('no nvme function');
  const mem = env.hypercalls.memory;
  const drv = new NvmeDriver(att.pci, mem, { ioQueues: 2 });
  const blocks = env.args.blocks as number;
  const seed = env.args.seed as number;
  const bytes = blocks * drv.identity.lbaBytes;
  const pages = Math.ceil(bytes / PAGE_SIZE) + 1;
  let earlierMismatches = 0;
  if (typeof env.args.expectLba === 'number') {
    const old = mem.allocPages(pages);
    drv.read(env.args.expectLba, blocks, old, 2);
    const v = mem.view(old, bytes);
    for (let i = 0; i < bytes; i++) if (v[i] !== patternByte(env.args.expectSeed as number, i)) earlierMismatches++;
  }
  // Start mid-page so the transfer needs a PRP list.
  const src = (mem.allocPages(pages) + 512) as GuestPhysAddr;
  const dst = (mem.allocPages(pages) + 1024) as GuestPhysAddr;
  const s = mem.view(src, bytes);
  for (let i = 0; i < bytes; i++) s[i] = patternByte(seed, i);
  drv.write(env.args.lba as number, blocks, src);
  drv.flush();
  drv.read(env.args.lba as number, blocks, dst, 2);
  const d = mem.view(dst, bytes);
  let mismatches = 0;
  for (let i = 0; i < bytes; i++) if (d[i] !== s[i]) mismatches++;
  drv.close();
  return {
    transport: att.transport,
    bdf: att.pci.bdf,
    capacityBlocks: drv.identity.capacityBlocks,
    mismatches,
    earlierMismatches,
  };
}
