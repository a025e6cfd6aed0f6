/**
 * The honest neighbour: a guest on the same blkback, with the real blkfront, writing a seeded
 * pattern to its own disk and reading it back while the adversary attacks. It must see every
 * request completed exactly once (blkfront drops an unknown, stale or repeated response and
 * counts it in `badResponses`), OKAY, within a bounded number of serving rounds (a flood next
 * door must not starve it), and read back exactly what it wrote.
 */

import type { BlkDevice } from '../../frontend/blk/BlkConnect.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { CanaryPages } from '../core/Canary.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import type { Dom } from './BlkWorld.js';

/** Largest honest transfer (sectors): 33 pages, so it also goes out as an indirect request. */
const MAX_SECTORS = 264;
const BUF_PAGES = 34;

/** One I/O in flight. */
interface Pending {
  readonly what: string;
  done: boolean;
  error: Error | undefined;
}

export class BlkHonest {
  private readonly _src: GuestPhysAddr;
  private readonly _dst: GuestPhysAddr;
  readonly canary: CanaryPages;
  /** Requests completed (and checked). */
  completed = 0;
  private _pending: Pending[] = [];
  private _check: { sector: number; count: number; offset: number } | undefined;

  private _dev: BlkDevice | undefined;

  /** Allocates the buffers; `attach` the connected vbd before the first case. */
  constructor(
    readonly dom: Dom,
    seed: number,
  ) {
    this._src = dom.mem.allocPages(BUF_PAGES);
    this._dst = dom.mem.allocPages(BUF_PAGES);
    this.canary = new CanaryPages(dom.mem, 2, seed ^ 0x4040, 'honest guest canary');
  }

  /** The connected vbd. */
  get dev(): BlkDevice {
    if (this._dev === undefined) throw new Error('BlkHonest: attach() a vbd first');
    return this._dev;
  }

  attach(dev: BlkDevice): void {
    this._dev = dev;
  }

  /** Grant refs the honest front holds now (numbers the adversary may try in its own table). */
  refs(): number[] {
    return [...this.dev.front.ringRefs];
  }

  /** Starts a write of a fresh pattern (phase 1 of a case). */
  startWrite(rng: Rng): void {
    const info = this.dev.info;
    const count = rng.chance(0.1) ? 9 + rng.below(MAX_SECTORS - 8) : 1 + rng.below(16);
    const sector = rng.below(info.sectors - count + 1);
    const offset = rng.below(8) * 512;
    const bytes = this.dom.mem.view((this._src + offset) as GuestPhysAddr, count * 512);
    rng.fill(bytes);
    this._check = { sector, count, offset };
    this._track('write', this.dev.front.write(sector, count, (this._src + offset) as GuestPhysAddr));
  }

  /** Starts reading back what `startWrite` wrote (phase 2). */
  startRead(): void {
    const c = this._check;
    if (c === undefined) return;
    this.dom.mem.view(this._dst, c.count * 512).fill(0);
    this._track('read', this.dev.front.read(c.sector, c.count, this._dst));
  }

  /** Takes the responses on the ring (settles the front's promises). */
  poll(): void {
    this.dev.front.poll();
  }

  /** True when nothing is outstanding in the front. */
  idle(): boolean {
    return this.dev.front.outstanding() === 0;
  }

  /**
   * Ends a phase: takes the responses; if something is still outstanding after the rounds the
   * adversary's action served, `serveOne` more round is allowed, then it counts as starved.
   */
  async settle(phase: 'write' | 'read', serveOne: () => void): Promise<Violation[]> {
    this.poll();
    if (!this.idle()) {
      serveOne();
      this.poll();
    }
    // The front settled its promises; let their callbacks run before auditing.
    for (let i = 0; i < 4; i++) await Promise.resolve();
    return this.audit(phase, 2);
  }

  /**
   * After the serving rounds of a phase: every request settled OKAY, no stray response, and
   * after a read the bytes equal what was written. Call after a microtask turn (promises settle).
   */
  audit(phase: 'write' | 'read', budgetRounds: number): Violation[] {
    const out: Violation[] = [];
    for (const p of this._pending) {
      if (!p.done) {
        out.push({
          signature: 'blk/honest:starved',
          detail: `the honest ${p.what} was not answered within ${budgetRounds} serving rounds`,
        });
      } else if (p.error !== undefined) {
        out.push({ signature: 'blk/honest:failed', detail: `the honest ${p.what} failed: ${p.error.message}` });
      } else {
        this.completed++;
      }
    }
    this._pending = [];
    const front = this.dev.front;
    if (front.badResponses > 0) {
      out.push({ signature: 'blk/honest:bad-response', detail: `${front.badResponses} unknown or repeated responses` });
      front.badResponses = 0;
    }
    const c = this._check;
    if (phase === 'read' && c !== undefined && out.length === 0) {
      const want = this.dom.mem.view((this._src + c.offset) as GuestPhysAddr, c.count * 512);
      const got = this.dom.mem.view(this._dst, c.count * 512);
      if (Buffer.compare(want, got) !== 0) {
        out.push({
          signature: 'blk/honest:wrong-data',
          detail: `sectors [${c.sector}, +${c.count}) read back differ from what was written`,
        });
      }
    }
    const canary = this.canary.check('blk/mem:honest-canary-changed');
    if (canary !== undefined) out.push(canary);
    return out;
  }

  private _track(what: string, p: Promise<void>): void {
    const rec: Pending = { what, done: false, error: undefined };
    this._pending.push(rec);
    p.then(
      () => {
        rec.done = true;
      },
      (err: unknown) => {
        rec.done = true;
        rec.error = err instanceof Error ? err : new Error(String(err));
      },
    );
  }
}
