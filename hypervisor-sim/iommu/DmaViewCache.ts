/**
 * Whole-memory views of the domains a device can reach, one pair (bytes, Int32 words) per
 * domain, built once and reused, so resolving a DMA range allocates nothing (DmaResolver.ts).
 *
 * The memories come from the thread's `MemoryDirectory`, which the host keeps current with
 * domain-added / domain-removed messages. A view is rebuilt when the directory holds a different
 * buffer for the domain (a reused domid), and a domain the directory no longer knows resolves
 * to nothing.
 */

import type { DomId } from '../../protocol/Types.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { DmaRef } from './DmaResolver.js';

interface Views {
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
}

/** Per-domain views over one thread's MemoryDirectory. */
export class DmaViewCache {
  private readonly _memories: MemoryDirectory;
  /** Indexed by domid (small integers); holes for domains not seen yet. */
  private readonly _views: Array<Views | undefined> = [];

  constructor(memories: MemoryDirectory) {
    this._memories = memories;
  }

  /** The directory the views come from. */
  get memories(): MemoryDirectory {
    return this._memories;
  }

  /**
   * Fills `out` with the views of `domid`'s memory and `offset`, if `[offset, offset + len)`
   * lies inside it; false otherwise (unknown domain, or an extent longer than the memory).
   */
  fill(domid: number, offset: number, len: number, out: DmaRef): boolean {
    const memory = this._memories.get(domid as DomId);
    if (memory === undefined || offset > memory.size || len > memory.size - offset) return false;
    let views = this._views[domid];
    if (views === undefined || views.buffer !== memory.buffer) {
      views = { buffer: memory.buffer, bytes: memory.bytes, words: new Int32Array(memory.buffer) };
      this._views[domid] = views;
    }
    out.bytes = views.bytes;
    out.words = views.words;
    out.offset = offset;
    out.domid = domid;
    return true;
  }
}
