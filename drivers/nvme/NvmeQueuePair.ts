/**
 * The driver's side of one NVMe submission/completion queue pair, in the owning domain's memory:
 *
 * ```
 *  SQ (entries × 64 B)                      CQ (entries × 16 B)
 *  ┌────┬────┬────┬────┐                    ┌────┬────┬────┬────┐
 *  │ c5 │ c6 │    │ c4 │ ← tail (driver)    │ P=1│ P=1│ P=0│ P=0│ ← head (driver): next entry
 *  └────┴────┴────┴────┘                    └────┴────┴────┴────┘   whose phase = expected
 * ```
 * The driver writes entries at `sqTail` and publishes the tail with one doorbell write per batch
 * (`ring`); the controller posts completions whose phase tag equals `phase` on this pass over
 * the CQ; the driver consumes them at `cqHead`, flips `phase` when it wraps, and writes the CQ
 * head doorbell once per reaped batch. Invariant: at most entries − 1 commands are outstanding
 * (one CID per outstanding command, taken from a free list), so the SQ never overflows and the
 * CQ never holds more than it can.
 *
 * Each CID owns the PRP list pages its command may need, allocated once with the pair.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import { CQE_BYTES, CQE_WORDS, CqeDw3, CqeWord, SQE_BYTES, SQE_WORDS } from '../../protocol/nvme/NvmeCommand.js';
import { cqHeadDoorbell, sqTailDoorbell } from '../../protocol/nvme/NvmeRegs.js';
import type { MmioRegion, PciFunction } from '../../protocol/Pci.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import type { NvmeCompletion } from './Types.js';

/** Int32 view of `len` bytes at `gpa` of `mem`. */
export function wordsAt(mem: GuestMemory, gpa: GuestPhysAddr, len: number): Int32Array {
  const v = mem.view(gpa, len);
  return new Int32Array(v.buffer, v.byteOffset, len >> 2);
}

/** One queue pair (see the file comment). */
export class NvmeQueuePair {
  readonly qid: number;
  readonly entries: number;
  /** Guest-physical addresses of the rings (page aligned). */
  readonly sqAddr: GuestPhysAddr;
  readonly cqAddr: GuestPhysAddr;
  /** Device addresses of the rings. */
  readonly sqDma: number;
  readonly cqDma: number;
  /** PRP list pages of each CID: `listPages[cid][k]`, guest-physical. */
  readonly listPages: GuestPhysAddr[][];
  private readonly _sq: Int32Array;
  private readonly _cq: Int32Array;
  private readonly _bar: MmioRegion;
  private readonly _sqDb: number;
  private readonly _cqDb: number;
  private readonly _free: number[] = [];
  /** 1 while the CID's command is outstanding (a completion for any other CID is ignored). */
  private readonly _inFlight: Uint8Array;
  private _sqTail = 0;
  private _published = 0;
  private _cqHead = 0;
  private _phase = 1;

  constructor(
    pci: PciFunction,
    mem: GuestMemory,
    qid: number,
    entries: number,
    dstrd: number,
    listPagesPerCmd: number,
  ) {
    this.qid = qid;
    this.entries = entries;
    const sqPages = Math.ceil((entries * SQE_BYTES) / PAGE_SIZE);
    const cqPages = Math.ceil((entries * CQE_BYTES) / PAGE_SIZE);
    this.sqAddr = mem.allocPages(sqPages);
    this.cqAddr = mem.allocPages(cqPages);
    this.sqDma = pci.dmaAddr(this.sqAddr);
    this.cqDma = pci.dmaAddr(this.cqAddr);
    this._sq = wordsAt(mem, this.sqAddr, sqPages * PAGE_SIZE);
    this._cq = wordsAt(mem, this.cqAddr, cqPages * PAGE_SIZE);
    this._bar = pci.bars[0];
    this._sqDb = sqTailDoorbell(qid, dstrd);
    this._cqDb = cqHeadDoorbell(qid, dstrd);
    this.listPages = [];
    this._inFlight = new Uint8Array(entries);
    for (let cid = 0; cid < entries - 1; cid++) {
      const pages: GuestPhysAddr[] = [];
      for (let k = 0; k < listPagesPerCmd; k++) pages.push(mem.allocPages(1));
      this.listPages.push(pages);
      this._free.push(entries - 2 - cid);
    }
  }

  /** Commands submitted and not yet reaped. */
  get outstanding(): number {
    return this.entries - 1 - this._free.length;
  }

  /** True when no CID is free (reap before submitting more). */
  get full(): boolean {
    return this._free.length === 0;
  }

  /** Takes a CID for a new command; PV_ERR_RING_FULL when entries − 1 are outstanding. */
  takeCid(): number {
    const cid = this._free.pop();
    if (cid === undefined) {
      throw pvError('PV_ERR_RING_FULL', `NVMe queue ${this.qid}: all ${this.entries - 1} command slots in flight`);
    }
    this._inFlight[cid] = 1;
    return cid;
  }

  /** Returns a CID whose command was never submitted. */
  giveBack(cid: number): void {
    this._inFlight[cid] = 0;
    this._free.push(cid);
  }

  /**
   * Copies a 16-word command into the SQ slot at the tail, with `cid` in CDW0 31:16, and moves
   * the tail (not yet visible to the controller: `ring` publishes it).
   */
  push(cmd: Int32Array, cid: number): void {
    const at = this._sqTail * SQE_WORDS;
    const sq = this._sq;
    for (let i = 1; i < SQE_WORDS; i++) sq[at + i] = cmd[i];
    sq[at] = (cmd[0] & 0xffff) | (cid << 16);
    this._sqTail = this._sqTail + 1 === this.entries ? 0 : this._sqTail + 1;
  }

  /** Publishes the tail with one doorbell write, if anything was pushed since the last ring. */
  ring(): void {
    if (this._published === this._sqTail) return;
    this._published = this._sqTail;
    // The MMIO write orders the SQ entries before it (the BAR store is seq-cst).
    this._bar.write32(this._sqDb, this._sqTail);
  }

  /** Phase tag the next new completion carries. */
  get phase(): number {
    return this._phase;
  }

  /** The CQ word the next completion's phase appears in (to sleep on), and its current value. */
  headWord(): { words: Int32Array; index: number } {
    return { words: this._cq, index: this._cqHead * CQE_WORDS + CqeWord.DW3 };
  }

  /**
   * Reaps every completion posted so far (`onCqe` per entry, CIDs returned to the free list),
   * then writes the CQ head doorbell once. Returns how many.
   */
  reap(onCqe: (c: NvmeCompletion) => void): number {
    const cq = this._cq;
    let n = 0;
    for (;;) {
      const at = this._cqHead * CQE_WORDS;
      // ORDERING: seq-cst load of the word the controller stores last (phase); pairs with its
      // Atomics.store, so words 0–2 read below are the entry's.
      const dw3 = Atomics.load(cq, at + CqeWord.DW3);
      if (((dw3 >>> 16) & 1) !== this._phase) break;
      const cid = dw3 & CqeDw3.CID_MASK;
      const dw2 = cq[at + CqeWord.DW2];
      this._cqHead = this._cqHead + 1 === this.entries ? 0 : this._cqHead + 1;
      if (this._cqHead === 0) this._phase ^= 1;
      n++;
      if (this._inFlight[cid] === 1) {
        this._inFlight[cid] = 0;
        this._free.push(cid);
      }
      onCqe({
        qid: this.qid,
        cid,
        status: (dw3 >>> CqeDw3.STATUS_SHIFT) & CqeDw3.STATUS_MASK,
        dw0: cq[at + CqeWord.DW0],
        sqHead: dw2 & 0xffff,
      });
    }
    if (n > 0) this._bar.write32(this._cqDb, this._cqHead);
    return n;
  }
}
