/**
 * Test program: a domain owning nvme0 and accel0 reads `args.bytes` bytes at `args.lba` of the
 * SSD twice — peer-to-peer straight into accelerator memory (p2p window), and through a bounce
 * buffer in its own RAM then the accelerator's DMA engine — and checksums both on the device.
 */

import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { p2p } from '../../../../drivers/accel/P2p.js';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import { hasPeerDma } from '../../../../protocol/accel/PeerDma.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { PAGE_SIZE } from '../../../../protocol/Types.js';

/** What the program reports. */
export interface P2pReport {
  readonly transports: string[];
  readonly nvmeHasPeerDma: boolean;
  readonly p2p: { fnv1a: number; crc32: number };
  readonly bounce: { fnv1a: number; crc32: number };
  /** Free pages before and after the P2P read (equal: no bounce buffer). */
  readonly freePages: [number, number];
}

export default async function main(env: DomainEnv): Promise<P2pReport> {
  const nvmeAtt = env.devices.find((d) => d.kind === 'nvme');
  const accelAtt = env.devices.find((d) => d.kind === 'accel');
  if (nvmeAtt?.pci === undefined || accelAtt?.pci === undefined) throw new Error('need nvme and accel functions');
  const mem = env.hypercalls.memory;
  const lba = env.args.lba as number;
  const bytes = env.args.bytes as number;
  const blocks = bytes / 512;
  const nvme = new NvmeDriver(nvmeAtt.pci, mem, { ioQueues: 1 });
  const accel = new AccelDriver(accelAtt.pci);

  // Peer to peer: the SSD writes into accelerator memory at offset 0.
  const freeBefore = mem.freePageCount();
  const win = p2p(nvmeAtt.pci, accelAtt.pci);
  nvme.check(nvme.wait(1, nvme.submitIo('read', lba, blocks, win)), 'P2P READ', lba, blocks);
  const viaP2p = accel.checksum(0, bytes);
  const freeAfter = mem.freePageCount();

  // Bounce: SSD → RAM → accelerator DMA engine → device memory at another offset.
  const gpa = mem.allocPages(Math.ceil(bytes / PAGE_SIZE));
  nvme.read(lba, blocks, gpa);
  const other = accel.memBytes / 2;
  accel.copyToDevice(gpa, other, bytes);
  const viaBounce = accel.checksum(other, bytes);
  nvme.close();
  return {
    transports: [nvmeAtt.transport, accelAtt.transport],
    nvmeHasPeerDma: hasPeerDma(nvmeAtt.pci),
    p2p: viaP2p,
    bounce: viaBounce,
    freePages: [freeBefore, freeAfter],
  };
}
