/**
 * Peer-to-peer DMA targets: a DmaResolver that lets one device reach another device's memory
 * (an accelerator's BAR 1) directly, in front of the device's own IOMMU context.
 *
 * Real systems do this two ways: with the IOMMU on, VFIO maps the peer BAR's mmap into the
 * initiator's IOMMU domain (the IOVA then translates to the BAR's bus address); with it off, the
 * initiator is given the BAR's bus address. Either way the TLPs go up to the lowest common switch
 * and down to the peer — never through host RAM (P2pPaths.ts counts the hops). Here a mapping is
 * a window `[P2P_IOVA_BASE + slot × P2P_SLOT_BYTES, + peer memory size)` whose accesses land in
 * the peer's memory SharedArrayBuffer; every other address goes to the inner resolver (the
 * IOMMU context: the owner's RAM and grant extents), so P2P adds to, and never weakens, the
 * IOMMU's protection.
 *
 * Why above 2^44: the IOMMU context uses [0, owner memory) and its foreign window, which ends
 * below 2^43 (its page numbers are 31-bit), so a P2P address can never shadow host memory.
 *
 * Scope: the windows are per thread, made by the owner's thread (`mapPeerBar` from its program)
 * and used by the devices it runs inline there (the NVMe controller and the accelerator both
 * run in the doorbell writer's thread). They die with the thread, so a dead owner leaves none.
 */

import type { DmaRef, DmaResolver } from '../../iommu/DmaResolver.js';

/** Device address of the first P2P window. */
export const P2P_IOVA_BASE = 2 ** 44;
/** Address space per window (room for the largest BAR 1, 2 GiB, and more). */
export const P2P_SLOT_BYTES = 2 ** 36;
/** Windows per initiator. */
export const P2P_SLOTS = 16;

/** `DmaRef.domid` of a resolution into device memory: -2 − slot (never a domain id). */
export function peerDomid(slot: number): number {
  return -2 - slot;
}

interface Window {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  readonly writable: boolean;
}

/** One initiator's DMA path: peer windows, then its IOMMU context (see the file comment). */
export class PeerResolver implements DmaResolver {
  /** The initiating device's name (`nvme0`). */
  readonly device: string;
  readonly inner: DmaResolver;
  private readonly _slots: Array<Window | undefined> = new Array(P2P_SLOTS).fill(undefined);
  /** Bumped on every unmap, so cached resolutions into a removed window are dropped. */
  private _gen = 0;
  private _peerBytes = 0;

  constructor(device: string, inner: DmaResolver) {
    this.device = device;
    this.inner = inner;
  }

  /**
   * Maps `memory` (a peer's device memory, named `name`) for this device's DMA; returns the
   * device address of its byte 0, or -1 when all P2P_SLOTS windows are in use.
   */
  map(name: string, memory: SharedArrayBuffer, writable: boolean): number {
    const slot = this._slots.indexOf(undefined);
    if (slot < 0) return -1;
    this._slots[slot] = { name, bytes: new Uint8Array(memory), words: new Int32Array(memory), writable };
    return P2P_IOVA_BASE + slot * P2P_SLOT_BYTES;
  }

  /** Removes the window starting at `iova`; false if none does. */
  unmap(iova: number): boolean {
    const rel = iova - P2P_IOVA_BASE;
    if (!Number.isSafeInteger(rel) || rel < 0 || rel % P2P_SLOT_BYTES !== 0) return false;
    const slot = rel / P2P_SLOT_BYTES;
    if (slot >= P2P_SLOTS || this._slots[slot] === undefined) return false;
    this._slots[slot] = undefined;
    this._gen++;
    return true;
  }

  /** Names of the mapped peers, by slot (diagnostics). */
  windows(): Array<{ iova: number; peer: string; bytes: number; writable: boolean }> {
    const out: Array<{ iova: number; peer: string; bytes: number; writable: boolean }> = [];
    this._slots.forEach((w, i) => {
      if (w !== undefined) {
        out.push({
          iova: P2P_IOVA_BASE + i * P2P_SLOT_BYTES,
          peer: w.name,
          bytes: w.bytes.length,
          writable: w.writable,
        });
      }
    });
    return out;
  }

  /** Bytes resolved into peer memory so far (each resolution counts its range once). */
  get peerBytes(): number {
    return this._peerBytes;
  }

  /**
   * A range at or above P2P_IOVA_BASE must lie inside one live window (and be writable for a
   * write); it then resolves into the peer's memory. Anything below goes to the inner resolver.
   * Arguments are hostile (PRP entries, DMA registers): never throws, returns false instead.
   */
  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
    if (!(iova >= P2P_IOVA_BASE)) return this.inner.resolve(iova, len, write, out);
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(len) || len < 0) return false;
    const rel = iova - P2P_IOVA_BASE;
    const slot = Math.floor(rel / P2P_SLOT_BYTES);
    const w = slot < P2P_SLOTS ? this._slots[slot] : undefined;
    if (w === undefined || (write && !w.writable)) return false;
    const off = rel - slot * P2P_SLOT_BYTES;
    const span = len === 0 ? 1 : len;
    // Overflow-safe: off and span are exact integers below 2^53.
    if (off >= w.bytes.length || span > w.bytes.length - off) return false;
    out.bytes = w.bytes;
    out.words = w.words;
    out.offset = off;
    out.domid = peerDomid(slot);
    this._peerBytes += len;
    return true;
  }

  /** Inner generation plus this resolver's own (both only grow). */
  generation(): number {
    return this.inner.generation() + this._gen;
  }
}
