/**
 * Device-side signalling between accelerators, as a GPU kernel does it in CUDA's P2P ping-pong
 * (CC'19 §7.2.2): a thread of the device stores a 32-bit word into a peer's memory through the
 * device's own DMA path (its resolver: peer windows, an NTB route into another accelerator's
 * BAR 1), and waits until a word of its OWN memory takes a value. No host register access is
 * involved — the host only launched the kernel — so what one trip costs is the device-to-device
 * route the fabric model prices (paid as real delay by the resolver).
 *
 * The simulator has no accelerator threads: the thread that runs this code plays the device's
 * kernel (bench/accel/PingPong.ts runs one per accelerator). The store is a seq-cst
 * `Atomics.store` followed by a notify, so a waiter sleeping on that word (after its spin budget)
 * wakes; the wait spins first because a wake-up costs microseconds, more than the trip.
 */

import { pvError } from '../../../protocol/errors.js';
import { emptyDmaRef } from '../../iommu/DmaResolver.js';
import type { AccelDevice } from './AccelDevice.js';
import { devRangeOk } from './AccelEngine.js';

/** Spins on the word before the waiter sleeps 1 ms at a time (default of `waitWord32`). */
export const SIGNAL_SPINS = 200_000;

/** Per-device scratch ref: the store allocates nothing per call. */
const refs = new WeakMap<AccelDevice, ReturnType<typeof emptyDmaRef>>();

/**
 * Stores `value` at device address `addr` through `dev`'s DMA path (a write of 4 bytes), then
 * notifies a waiter. Returns false — nothing stored — when the address does not resolve (no
 * window, no permission, a revoked lease) or is not 4-aligned in its target.
 */
export function storePeer32(dev: AccelDevice, addr: number, value: number): boolean {
  let ref = refs.get(dev);
  if (ref === undefined) {
    ref = emptyDmaRef();
    refs.set(dev, ref);
  }
  if (!dev.ctx.dma.resolve(addr, 4, true, ref)) return false;
  if ((ref.offset & 3) !== 0) return false;
  const i = ref.offset >> 2;
  // ORDERING: seq-cst store, then notify: a waiter that loads the word sees the value; one
  // sleeping on it wakes.
  Atomics.store(ref.words, i, value | 0);
  Atomics.notify(ref.words, i);
  return true;
}

/**
 * Waits until the word at `offset` of `dev`'s own memory equals `value`: spins `spins` loads,
 * then sleeps 1 ms at a time on the word; PV_ERR_TIMEOUT after `timeoutMs`.
 */
export function waitWord32(
  dev: AccelDevice,
  offset: number,
  value: number,
  timeoutMs = 10_000,
  spins = SIGNAL_SPINS,
): void {
  if ((offset & 3) !== 0 || !devRangeOk(dev.ctx, offset, 4)) {
    throw pvError('PV_ERR_OUT_OF_BOUNDS', `${dev.name}: word ${offset} is not an aligned word of device memory`);
  }
  const words = new Int32Array(dev.state.mem);
  const i = offset >> 2;
  const want = value | 0;
  for (let n = 0; n < spins; n++) {
    // ORDERING: seq-cst load; pairs with storePeer32's store.
    if (Atomics.load(words, i) === want) return;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // ORDERING: seq-cst load; pairs with storePeer32's store and notify.
    const seen = Atomics.load(words, i);
    if (seen === want) return;
    if (Date.now() > deadline) {
      throw pvError('PV_ERR_TIMEOUT', `${dev.name}: word ${offset} is ${seen}, not ${want}, after ${timeoutMs} ms`);
    }
    // ORDERING: sleeps only while the word still holds `seen`; storePeer32 notifies it.
    Atomics.wait(words, i, seen, 1);
  }
}
