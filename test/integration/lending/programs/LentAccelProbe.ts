/**
 * A borrower-side program for the lent-accelerator tests, run in a domain of host B that owns
 * the borrowed accelerators listed in `args.names` (first = `src`). Modes:
 *  - `compute`: the UNCHANGED AccelDriver on `src`: copies two f32 vectors and a byte pattern
 *    from the domain's memory to device memory (DMA through the lender's DMA window into B),
 *    runs vector add and checksum, copies the sum back; writes and reads BAR 1 words directly
 *    (MMIO through the BAR 1 window). Then, for each `p2p` target (name, address from
 *    Cluster.mapP2p), DMAs a block of `src`'s memory into the target's BAR 1 at `dev` and has
 *    the TARGET checksum it on its side;
 *  - `revoke`: brings the driver up, runs a checksum, says `ready`, waits for `go[0]` (the test
 *    force-returns the lease first), then tries a checksum and a BAR 1 read: both must fail with
 *    PV_ERR_LEND_REVOKED.
 */

import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { AccelDmaDir, AccelStatus, accelStatusName } from '../../../../protocol/accel/AccelRegs.js';
import type { PciFunction } from '../../../../protocol/Pci.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type Iova, PAGE_SIZE } from '../../../../protocol/Types.js';

interface Args {
  mode: 'compute' | 'revoke';
  names: string[];
  /** compute: P2P targets (device name on B, address from mapP2p, device-memory offset). */
  p2p?: { target: string; addr: number; dev: number }[];
  go?: SharedArrayBuffer;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** Runs the mode named in args (see the file comment). */
export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const a = env.args as unknown as Args;
  const fn = (name: string): PciFunction => {
    const d = env.devices.find((x) => x.device === name && x.kind === 'accel');
    if (d?.pci === undefined) throw new Error(`no accel function ${name}`);
    return d.pci;
  };
  const mem = env.hypercalls.memory;
  const drv = new AccelDriver(fn(a.names[0]));
  if (a.mode === 'revoke') {
    const before = drv.checksum(0, 4096).crc32;
    env.log('ready');
    const go = new Int32Array(a.go as SharedArrayBuffer);
    // ORDERING: sleeps while go[0] is 0; the test stores 1 and notifies after the forced return.
    while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 50);
    return {
      before,
      checksum: codeOf(() => drv.checksum(0, 4096)),
      bar1: codeOf(() => drv.memory.read32(0)),
    };
  }
  // Vector add: a[i] = i, b[i] = 2i + 0.5 → out[i] = 3i + 0.5 (exact in f32 for i < 2^20).
  const n = 1024;
  const page = mem.allocPages(4);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = i;
  mem.view(page, 4 * n).set(new Uint8Array(f.buffer));
  drv.copyToDevice(page, 0, 4 * n);
  for (let i = 0; i < n; i++) f[i] = 2 * i + 0.5;
  mem.view(page, 4 * n).set(new Uint8Array(f.buffer));
  drv.copyToDevice(page, 8192, 4 * n);
  drv.vectorAdd(0, 8192, 16384, n);
  drv.copyFromDevice(16384, page, 4 * n);
  const sum = new Float32Array(mem.view(page, 4 * n).slice().buffer);
  let sumOk = true;
  for (let i = 0; i < n; i++) sumOk &&= sum[i] === 3 * i + 0.5;
  // A byte pattern for the checksum and the P2P block.
  const bytes = mem.view(page, PAGE_SIZE);
  for (let i = 0; i < PAGE_SIZE; i++) bytes[i] = (i * 31 + 7) & 0xff;
  drv.copyToDevice(page, 65536, PAGE_SIZE);
  const checksum = drv.checksum(65536, PAGE_SIZE);
  // BAR 1 through its window: the CPU of B writes and reads device memory directly.
  drv.memory.write32(32768, 0x1234_5678);
  const bar1 = drv.memory.read32(32768) >>> 0;
  const viaDma = new Uint32Array(1);
  drv.copyFromDevice(32768, page, 4);
  viaDma[0] = new Uint32Array(mem.view(page, 4).slice().buffer)[0];
  // Peer-to-peer: src's DMA engine writes its pattern block into each target's BAR 1.
  const p2p: Record<string, { fnv1a: number; crc32: number } | string> = {};
  for (const t of a.p2p ?? []) {
    const st = drv.dmaRaw(t.addr as number as Iova, 65536, PAGE_SIZE, AccelDmaDir.FROM_DEVICE);
    p2p[t.target] =
      st === AccelStatus.OK ? new AccelDriver(fn(t.target)).checksum(t.dev, PAGE_SIZE) : accelStatusName(st);
  }
  return { sumOk, checksum, bar1, viaDma: viaDma[0], p2p };
}
