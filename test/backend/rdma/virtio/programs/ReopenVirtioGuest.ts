/**
 * Guest for the close-and-reopen rules of virtio-rdma: opens its device, moves data, closes it,
 * then takes pages from its allocator and fills them with a pattern while the device model goes
 * on serving the register window (which must not be among them), and opens the device again.
 */

import * as ibv from '../../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { VIRTIO_RDMA_DEVICE_TYPE, VirtioRdmaKey } from '../../../../../protocol/rdma/virtio/VirtioRdma.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../../protocol/Types.js';
import { frontendDir } from '../../../../../protocol/xenbus/XenbusPaths.js';
import { loopWrites, openLoop } from './VirtioRaw.js';

/** What the guest returns. */
export interface ReopenOut {
  readonly first: { ok: number; problem: string | undefined };
  readonly second: { ok: number; problem: string | undefined };
  readonly windowBefore: string | undefined;
  readonly windowAfter: string | undefined;
  /** Pages allocated after the close that are the window page (must be none). */
  readonly windowReused: number;
  /** Bytes of those pages that changed while the device model kept serving (must be 0). */
  readonly clobbered: number;
}

const SLOTS = 8;
const SIZE = 512;
const PAGES = 64;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export default async function main(env: DomainEnv): Promise<ReopenOut> {
  const hc = env.hypercalls;
  const key = `${frontendDir(hc.domid, VIRTIO_RDMA_DEVICE_TYPE, 0)}/${VirtioRdmaKey.MMIO_GPA}`;
  const ctx1 = await ibv.openDevice(env);
  const first = loopWrites(ctx1, openLoop(ctx1, SLOTS, SIZE), SLOTS, SIZE, 3, 1);
  await ibv.closeDevice(ctx1);
  const windowBefore = await hc.store.tryRead(key);

  // Everything the allocator hands out now is this guest's own: the device must not write it.
  const mem = hc.memory;
  const taken: GuestPhysAddr[] = [];
  for (let i = 0; i < PAGES; i++) taken.push(mem.allocPages(1));
  for (const a of taken) mem.view(a, PAGE_SIZE).fill(0xab);
  const windowReused = taken.filter((a) => String(a) === windowBefore).length;
  // dom0 polls every round; give it many rounds over the window meanwhile.
  await sleep(100);
  let clobbered = 0;
  for (const a of taken) for (const b of mem.view(a, PAGE_SIZE)) if (b !== 0xab) clobbered++;
  for (const a of taken) mem.freePages(a, 1);

  const ctx2 = await ibv.openDevice(env);
  const second = loopWrites(ctx2, openLoop(ctx2, SLOTS, SIZE), SLOTS, SIZE, 3, 2);
  const windowAfter = await hc.store.tryRead(key);
  await ibv.closeDevice(ctx2);
  return { first, second, windowBefore, windowAfter, windowReused, clobbered };
}
