/**
 * Canary pages: pages of a guest that are never granted to anyone, filled with a seeded pattern
 * at setup. No backend operation may change them, whatever the guest puts on its rings — a
 * changed byte means the backend (or the device it drives) wrote memory outside what it was
 * granted, e.g. through a stale mapping after unmap or an address computed past a granted range.
 * Read-only canaries are the same idea for pages the guest DOES grant, read-only: the backend
 * may read them but the bytes must stay as the guest wrote them.
 */

import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { PAGE_SIZE } from '../../protocol/Types.js';
import type { Violation } from './FuzzTarget.js';
import { XorShiftRng } from './Rng.js';

/** A run of pages whose bytes must never change; see the file comment. */
export class CanaryPages {
  readonly addr: GuestPhysAddr;
  private readonly _expect: Uint8Array;

  /** Allocates `pages` pages of `mem` and fills them from `seed`. */
  constructor(
    private readonly _mem: GuestMemory,
    readonly pages: number,
    seed: number,
    private readonly _what: string,
  ) {
    this.addr = _mem.allocPages(pages);
    this._expect = new Uint8Array(pages * PAGE_SIZE);
    new XorShiftRng(seed).fill(this._expect);
    _mem.write(this.addr, this._expect);
  }

  /** A violation with `signature` if any byte changed (then restores the pattern). */
  check(signature: string): Violation | undefined {
    const now = this._mem.view(this.addr, this._expect.length);
    if (Buffer.compare(now, this._expect) === 0) return undefined;
    let first = 0;
    while (now[first] === this._expect[first]) first++;
    this._mem.write(this.addr, this._expect);
    return {
      signature,
      detail: `${this._what}: byte ${first} of the ${this.pages}-page canary at 0x${this.addr.toString(16)} changed`,
    };
  }

  /** Returns the pages (the domain is going away or being rebuilt). */
  free(): void {
    this._mem.freePages(this.addr, this.pages);
  }
}
