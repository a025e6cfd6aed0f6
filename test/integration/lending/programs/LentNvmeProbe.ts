/**
 * A borrower-side program for the lent-NVMe tests, run in a domain of a borrowing host that owns
 * `nvme0@A`. Modes:
 *  - `exclusive`: the UNCHANGED NvmeDriver brings the lent controller up, WRITEs a pattern over
 *    `blocks` blocks at `lba` (one 4 KiB command per 8 blocks), FLUSHes, READs it back;
 *  - `revoke`: writes one block, then queues two commands without ringing, says `queued`, and
 *    waits for the test to set `go[0]` (after a forced return): ringing them, and any new read,
 *    must fail at once with PV_ERR_LEND_REVOKED;
 *  - `shared`: no driver bring-up (the lender keeps the admin queue): asks the lender's queue
 *    manager for its own I/O queue pair through the mailbox (SharedNvme.requestQueue), WRITEs
 *    and READs its pattern on that queue with raw commands, FLUSHes, then tries what it must
 *    not do: ring another host's doorbells, write CC, and create a queue whose SQ lies outside
 *    its DMA window.
 * The pattern of block b is byte `(b * 7 + seed) & 0xff` repeated, so the test can check the
 * backing file on A.
 */

import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import { sharedQueueOf } from '../../../../hypervisor-sim/cluster/LentNvme.js';
import { MailboxOp, requestQueue } from '../../../../hypervisor-sim/cluster/SharedNvme.js';
import type { GuestMemory } from '../../../../protocol/Hypercalls.js';
import {
  CqeDw3,
  CqeWord,
  encodeSqe,
  NVME_NSID,
  NvmeStatus,
  NvmOpcode,
  SQE_WORDS,
} from '../../../../protocol/nvme/NvmeCommand.js';
import { cqHeadDoorbell, NvmeReg, sqTailDoorbell } from '../../../../protocol/nvme/NvmeRegs.js';
import type { PciFunction } from '../../../../protocol/Pci.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';

interface Args {
  mode: 'exclusive' | 'revoke' | 'shared';
  lba: number;
  blocks: number;
  seed: number;
  go?: SharedArrayBuffer;
  /** shared: the qid of another host's queue to try. */
  otherQid?: number;
}

const BLOCKS_PER_PAGE = PAGE_SIZE / 512;

function fill(mem: GuestMemory, page: GuestPhysAddr, firstBlock: number, seed: number): void {
  const v = mem.view(page, PAGE_SIZE);
  for (let b = 0; b < BLOCKS_PER_PAGE; b++) v.fill(((firstBlock + b) * 7 + seed) & 0xff, b * 512, (b + 1) * 512);
}

function matches(mem: GuestMemory, page: GuestPhysAddr, firstBlock: number, seed: number): boolean {
  const v = mem.view(page, PAGE_SIZE);
  for (let i = 0; i < PAGE_SIZE; i++) if (v[i] !== (((firstBlock + (i >> 9)) * 7 + seed) & 0xff)) return false;
  return true;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

function exclusive(pci: PciFunction, mem: GuestMemory, a: Args): Record<string, unknown> {
  const drv = new NvmeDriver(pci, mem);
  const page = mem.allocPages(1);
  let same = true;
  for (let b = a.lba; b < a.lba + a.blocks; b += BLOCKS_PER_PAGE) {
    fill(mem, page, b, a.seed);
    drv.write(b, BLOCKS_PER_PAGE, page);
  }
  drv.flush();
  for (let b = a.lba; b < a.lba + a.blocks; b += BLOCKS_PER_PAGE) {
    mem.view(page, PAGE_SIZE).fill(0);
    drv.read(b, BLOCKS_PER_PAGE, page);
    same &&= matches(mem, page, b, a.seed);
  }
  drv.close();
  return { same, capacityBlocks: drv.identity.capacityBlocks };
}

async function revoke(env: DomainEnv, pci: PciFunction, mem: GuestMemory, a: Args): Promise<Record<string, unknown>> {
  const drv = new NvmeDriver(pci, mem);
  const page = mem.allocPages(1);
  fill(mem, page, a.lba, a.seed);
  drv.write(a.lba, BLOCKS_PER_PAGE, page);
  const dma = pci.dmaAddr(page);
  const cids = [drv.submitIo('read', a.lba, BLOCKS_PER_PAGE, dma), drv.submitIo('read', a.lba, BLOCKS_PER_PAGE, dma)];
  env.log('queued');
  const go = new Int32Array(a.go as SharedArrayBuffer);
  // ORDERING: sleeps while go[0] is 0; the test stores 1 and notifies after the forced return.
  while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 50);
  const t0 = Date.now();
  const ring = codeOf(() => drv.wait(1, cids[0]));
  const read = codeOf(() => drv.read(a.lba, BLOCKS_PER_PAGE, page));
  return { ring, read, failedWithinMs: Date.now() - t0 };
}

function shared(pci: PciFunction, mem: GuestMemory, a: Args): Record<string, unknown> {
  const info = sharedQueueOf(pci);
  if (info === undefined) throw new Error(`${pci.name} is not a shared lent NVMe`);
  const bar = pci.bars[0];
  const entries = 16;
  const sq = mem.allocPages(1);
  const cq = mem.allocPages(1);
  const created = requestQueue(info.mailbox, MailboxOp.CREATE, entries, pci.dmaAddr(sq), pci.dmaAddr(cq));
  const sqWords = new Int32Array(mem.view(sq, PAGE_SIZE).buffer, mem.view(sq, PAGE_SIZE).byteOffset, PAGE_SIZE >> 2);
  const cqWords = new Int32Array(mem.view(cq, PAGE_SIZE).buffer, mem.view(cq, PAGE_SIZE).byteOffset, PAGE_SIZE >> 2);
  const cmd = new Int32Array(SQE_WORDS);
  let tail = 0;
  let head = 0;
  let phase = 1;
  let cid = 0;
  // One command at a time: push, ring own SQ doorbell (the controller runs here), reap, ring CQ head.
  const run = (opc: number, lba: number, prp1: number, blocks: number): number => {
    encodeSqe(cmd, 0, opc, cid++ & 0xffff, NVME_NSID, prp1, 0, lba, 0, blocks - 1);
    sqWords.set(cmd, tail * SQE_WORDS);
    tail = (tail + 1) % entries;
    bar.write32(sqTailDoorbell(info.qid, info.dstrd), tail);
    // ORDERING: seq-cst load of the phase word the controller stores last.
    const dw3 = Atomics.load(cqWords, head * 4 + CqeWord.DW3);
    if (((dw3 >>> 16) & 1) !== phase) throw new Error('no completion after the doorbell (inline controller)');
    head = (head + 1) % entries;
    if (head === 0) phase ^= 1;
    bar.write32(cqHeadDoorbell(info.qid, info.dstrd), head);
    return (dw3 >>> CqeDw3.STATUS_SHIFT) & CqeDw3.STATUS_MASK;
  };
  const page = mem.allocPages(1);
  let same = created === 0;
  let statuses = 0;
  for (let b = a.lba; b < a.lba + a.blocks && same; b += BLOCKS_PER_PAGE) {
    fill(mem, page, b, a.seed);
    statuses |= run(NvmOpcode.WRITE, b, pci.dmaAddr(page), BLOCKS_PER_PAGE);
  }
  statuses |= run(NvmOpcode.FLUSH, 0, 0, 1);
  for (let b = a.lba; b < a.lba + a.blocks && same; b += BLOCKS_PER_PAGE) {
    mem.view(page, PAGE_SIZE).fill(0);
    statuses |= run(NvmOpcode.READ, b, pci.dmaAddr(page), BLOCKS_PER_PAGE);
    same &&= matches(mem, page, b, a.seed);
  }
  const other = a.otherQid ?? info.qid + 1;
  const out = {
    qid: info.qid,
    created,
    same,
    ok: statuses === NvmeStatus.SUCCESS,
    otherSqDoorbell: codeOf(() => bar.write32(sqTailDoorbell(other, info.dstrd), 1)),
    otherCqDoorbell: codeOf(() => bar.write32(cqHeadDoorbell(other, info.dstrd), 1)),
    adminDoorbell: codeOf(() => bar.write32(sqTailDoorbell(0, info.dstrd), 1)),
    ccWrite: codeOf(() => bar.write32(NvmeReg.CC, 0)),
    capRead: codeOf(() => bar.read32(NvmeReg.CAP_LO)),
  };
  // Its own pair deleted, then re-created with the SQ past its DMA window: the manager's
  // queue check (through this host's window only) refuses it.
  const deleted = requestQueue(info.mailbox, MailboxOp.DELETE, 0, 0, 0);
  const outsideWindow = requestQueue(info.mailbox, MailboxOp.CREATE, entries, 2 ** 40, pci.dmaAddr(cq));
  return { ...out, deleted, outsideWindow };
}

/** Runs the mode named in args (see the file comment). */
export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const a = env.args as unknown as Args;
  const dev = env.devices.find((d) => d.kind === 'nvme' && d.pci !== undefined);
  if (dev?.pci === undefined) throw new Error('no nvme function');
  const mem = env.hypercalls.memory;
  if (a.mode === 'exclusive') return exclusive(dev.pci, mem, a);
  if (a.mode === 'revoke') return revoke(env, dev.pci, mem, a);
  return shared(dev.pci, mem, a);
}
