/**
 * What the hostile virtio-rdma guests need beyond the verbs API: the provider's private
 * virtqueue parts (reached with a cast, in test programs only), raw split-ring descriptors
 * written straight into guest memory and published behind the driver's back, and a loopback
 * RDMA_WRITE workload whose every completion and every byte is checked. Layout of the split
 * ring: protocol/virtio/SplitRing.ts; where the data queue sits: VirtioLayout.ts.
 */

import { type LoopbackQp, loopbackQp } from '../../../../../bench/fairness/LoopbackQp.js';
import * as ibv from '../../../../../frontend/verbs/index.js';
import type { VirtioChannelParts } from '../../../../../frontend/verbs/virtio/VirtioChannel.js';
import type { VirtioProvider } from '../../../../../frontend/verbs/virtio/VirtioProvider.js';
import { SplitDriver } from '../../../../../frontend/virtio/SplitDriver.js';
import { PvError } from '../../../../../protocol/errors.js';
import { SendFlags, WcStatus, WrOpcode, wcStatusName } from '../../../../../protocol/rdma/Verbs.js';
import { VRDMA_DATA_QUEUE, VRDMA_DATA_QUEUE_SIZE } from '../../../../../protocol/rdma/virtio/VirtioRdma.js';
import type { GuestPhysAddr } from '../../../../../protocol/Types.js';
import { VIRTIO_STATUS_DEVICE_NEEDS_RESET } from '../../../../../protocol/virtio/DeviceStatus.js';
import {
  AvailOffset,
  DescOffset,
  splitLayout,
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_NEXT,
} from '../../../../../protocol/virtio/SplitRing.js';
import { take } from '../../../../integration/rdma/programs/Harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The provider of an opened virtio context. */
export function virtioProvider(ctx: ibv.Context): VirtioProvider {
  const p = ctx.provider as VirtioProvider;
  if (p.transport !== 'virtio') throw new Error(`expected the split virtio transport, got ${p.transport}`);
  return p;
}

/** The channel's private parts: the mmio driver and the virtqueue drivers (test programs only). */
export function partsOf(p: VirtioProvider): VirtioChannelParts {
  return (p.channel as unknown as { _p: VirtioChannelParts })._p;
}

/** The error code of what `fn` threw, or 'ok'. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err instanceof PvError ? err.code : `not a PvError: ${String(err)}`;
  }
}

/** Takes every used data response back so no chain of the channel is in the device's hands. */
export async function quiesce(p: VirtioProvider, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  p.progress();
  while (p.channel.inFlight > 0) {
    if (performance.now() > deadline) throw new Error(`${p.channel.inFlight} data chains still in flight`);
    await sleep(1);
    p.channel.drainData();
  }
}

/** One raw descriptor: written as the driver would, but with whatever values the test wants. */
export interface RawDesc {
  readonly index: number;
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

/**
 * Writes `descs` into the data queue's descriptor table, puts `head` in the available ring and
 * publishes it (avail.idx + 1), then kicks — bypassing SplitDriver and its checks. The caller
 * quiesced the channel first, so the driver's own chains are not disturbed by the indices used.
 */
export function publishRawDataChain(p: VirtioProvider, descs: readonly RawDesc[], head: number): void {
  const parts = partsOf(p);
  if (!(parts.dataq instanceof SplitDriver)) throw new Error('the data queue is not a split queue');
  const qs = VRDMA_DATA_QUEUE_SIZE;
  const lay = splitLayout(qs);
  const w = parts.words;
  const bytes = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const base = parts.layout.dataQueue;
  for (const d of descs) {
    const at = base + lay.desc + d.index * VIRTQ_DESC_BYTES;
    bytes.setUint32(at + DescOffset.ADDR, d.addr % 2 ** 32, true);
    bytes.setUint32(at + DescOffset.ADDR + 4, Math.floor(d.addr / 2 ** 32), true);
    bytes.setUint32(at + DescOffset.LEN, d.len, true);
    bytes.setUint16(at + DescOffset.FLAGS, d.flags, true);
    bytes.setUint16(at + DescOffset.NEXT, d.next, true);
  }
  const avail = new Uint16Array(w.buffer, w.byteOffset + base + lay.avail, (AvailOffset.RING >> 1) + qs);
  // ORDERING: seq-cst load of our own published index (the driver stored it with Atomics).
  const idx = Atomics.load(avail, AvailOffset.IDX >> 1);
  avail[(AvailOffset.RING >> 1) + (idx & (qs - 1))] = head;
  // ORDERING: seq-cst store after the descriptor and ring writes above, as SplitDriver.publish does.
  Atomics.store(avail, AvailOffset.IDX >> 1, (idx + 1) & 0xffff);
  parts.driver.notify(VRDMA_DATA_QUEUE);
}

/** A two-descriptor loop (a → b → a), each a readable 128-byte buffer at `addr`. */
export function loopChain(addr: number, a: number, b: number): RawDesc[] {
  return [
    { index: a, addr, len: 128, flags: VIRTQ_DESC_F_NEXT, next: b },
    { index: b, addr, len: 128, flags: VIRTQ_DESC_F_NEXT, next: a },
  ];
}

/** Waits until the device shows DEVICE_NEEDS_RESET; returns the status read (0 bits: timed out). */
export async function waitNeedsReset(p: VirtioProvider, timeoutMs = 10_000): Promise<number> {
  const drv = partsOf(p).driver;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const s = drv.status();
    if ((s & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0 || performance.now() > deadline) return s;
    await sleep(1);
  }
}

/** A loopback QP over a buffer of two halves: WRITEs copy the first half into the second. */
export function openLoop(ctx: ibv.Context, slots: number, size: number): LoopbackQp {
  return loopbackQp(ctx, 2 * slots * size, slots);
}

/**
 * Posts `rounds` batches of `slots` signaled RDMA_WRITEs (slot i: `size` bytes from the first
 * half to the same offset of the second) and checks each completion and the bytes that landed.
 * Returns the completions seen with SUCCESS and the first problem found, if any.
 */
export function loopWrites(
  ctx: ibv.Context,
  l: LoopbackQp,
  slots: number,
  size: number,
  rounds: number,
  seed: number,
): { ok: number; problem: string | undefined } {
  const half = slots * size;
  const src = ctx.memory.view(l.buf, half);
  const dst = ctx.memory.view((l.buf + half) as GuestPhysAddr, half);
  let ok = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < half; i++) src[i] = (seed + r * 131 + i * 7) & 0xff || 1;
    dst.fill(0);
    for (let i = 0; i < slots; i++) {
      ibv.postSend(l.qp, {
        wrId: r * slots + i,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: (l.buf + i * size) as GuestPhysAddr, length: size, lkey: l.mr.lkey }],
        remoteAddr: l.buf + half + i * size,
        rkey: l.mr.rkey,
      });
    }
    const seen = new Set<number>();
    for (const wc of take(l.cq, slots, 20_000)) {
      if (wc.status !== WcStatus.SUCCESS) return { ok, problem: `wr ${wc.wrId}: ${wcStatusName(wc.status)}` };
      seen.add(wc.wrId);
      ok++;
    }
    if (seen.size !== slots) return { ok, problem: `round ${r}: ${seen.size} distinct wr_ids of ${slots}` };
    for (let i = 0; i < half; i++) {
      if (dst[i] !== src[i]) return { ok, problem: `round ${r}: byte ${i} is ${dst[i]}, wrote ${src[i]}` };
    }
  }
  return { ok, problem: undefined };
}
