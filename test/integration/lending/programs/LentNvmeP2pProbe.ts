/**
 * A borrower-side program for the NVMe → accelerator P2P tests, run in a domain of host B that
 * owns the borrowed SSD `nvme` and the borrowed accelerators of `targets`. Modes:
 *  - `p2p`: for each target, READs `chunks` commands of 32 blocks from `lba` with the UNCHANGED
 *    NvmeDriver, the data address being the target's BAR 1 as Cluster.mapP2p returned it (the
 *    controller writes the media bytes straight into the accelerator); the TARGET then checksums
 *    them in its own memory;
 *  - `bounce`: the same commands into a buffer in B's RAM, then the target's DMA engine copies
 *    the buffer into its memory (AccelDriver.copyToDevice) and checksums it — the path P2P avoids;
 *  - `revoke`: one P2P READ into the first target, says `ready`, waits for `go[0]` (the test
 *    force-returns the SSD or the accelerator), then one more P2P READ: it must fail at once.
 * Every mode reports whether `signature` (bytes of the file data) appears anywhere in the
 * domain's RAM: never in `p2p`, always in `bounce` (the control that the scan can see it).
 */

import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import type { GuestMemory } from '../../../../protocol/Hypercalls.js';
import { NvmeStatus, nvmeStatusName } from '../../../../protocol/nvme/NvmeCommand.js';
import type { PciFunction } from '../../../../protocol/Pci.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type GuestPhysAddr, type Iova, PAGE_SIZE } from '../../../../protocol/Types.js';

interface Target {
  /** Device name on B (`accel0@C`). */
  readonly name: string;
  /** p2p / revoke: the address mapP2p returned for (nvme, this target). */
  readonly addr?: number;
}

interface Args {
  mode: 'p2p' | 'bounce' | 'revoke';
  nvme: string;
  targets: Target[];
  lba: number;
  chunks: number;
  signature: number[];
  go?: SharedArrayBuffer;
}

/** Blocks per command: 16 KiB, so each READ uses a PRP list (in B's RAM) of P2P addresses. */
export const P2P_CHUNK_BLOCKS = 32;
const CHUNK_BYTES = P2P_CHUNK_BLOCKS * 512;

/** True if `sig` occurs anywhere in the domain's RAM. */
function inRam(mem: GuestMemory, sig: readonly number[]): boolean {
  const ram = mem.view(0 as GuestPhysAddr, mem.size);
  const end = ram.length - sig.length;
  for (let i = ram.indexOf(sig[0]); i >= 0 && i <= end; i = ram.indexOf(sig[0], i + 1)) {
    let k = 1;
    while (k < sig.length && ram[i + k] === sig[k]) k++;
    if (k === sig.length) return true;
  }
  return false;
}

/** READs chunk `i` to device address `dma`; returns the NVMe status name. */
function readChunk(drv: NvmeDriver, a: Args, i: number, dma: number): string {
  const c = drv.wait(1, drv.submitIo('read', a.lba + i * P2P_CHUNK_BLOCKS, P2P_CHUNK_BLOCKS, dma as Iova));
  return c.status === NvmeStatus.SUCCESS ? 'ok' : nvmeStatusName(c.status);
}

/** Runs the mode named in args (see the file comment). */
export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const a = env.args as unknown as Args;
  const fn = (name: string, kind: string): PciFunction => {
    const d = env.devices.find((x) => x.device === name && x.kind === kind);
    if (d?.pci === undefined) throw new Error(`no ${kind} function ${name}`);
    return d.pci;
  };
  const mem = env.hypercalls.memory;
  const nvmeFn = fn(a.nvme, 'nvme');
  const drv = new NvmeDriver(nvmeFn, mem);
  const bytes = a.chunks * CHUNK_BYTES;
  const buf = mem.allocPages(bytes / PAGE_SIZE);
  if (a.mode === 'revoke') {
    const t = a.targets[0];
    const before = readChunk(drv, a, 0, t.addr as number);
    env.log('ready');
    const go = new Int32Array(a.go as SharedArrayBuffer);
    // ORDERING: sleeps while go[0] is 0; the test stores 1 and notifies after the forced return.
    while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 50);
    let after = 'ok';
    try {
      after = readChunk(drv, a, 1, t.addr as number);
    } catch (err) {
      after = (err as { code?: string }).code ?? String(err);
    }
    return { before, after, inRam: inRam(mem, a.signature) };
  }
  const statuses: string[] = [];
  const sums: Record<string, { fnv1a: number; crc32: number }> = {};
  for (const t of a.targets) {
    const acc = new AccelDriver(fn(t.name, 'accel'));
    for (let i = 0; i < a.chunks; i++) {
      const dma = a.mode === 'p2p' ? (t.addr as number) + i * CHUNK_BYTES : nvmeFn.dmaAddr(buf) + i * CHUNK_BYTES;
      statuses.push(readChunk(drv, a, i, dma));
    }
    if (a.mode === 'bounce') acc.copyToDevice(buf, 0, bytes);
    sums[t.name] = acc.checksum(0, bytes);
  }
  const seen = inRam(mem, a.signature);
  const bufZero = mem.view(buf, bytes).every((x) => x === 0);
  drv.close();
  return { ok: statuses.every((s) => s === 'ok'), statuses: [...new Set(statuses)], sums, inRam: seen, bufZero };
}
