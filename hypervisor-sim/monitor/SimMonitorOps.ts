/**
 * `MonitorOps` of one domain over the host's monitor buffer (MonitorSpace.ts): hands out
 * ring-end records owned by the calling domain. A record freed by the host first (the domain
 * died) is not freed twice: `release` only frees a record still held by this domain.
 */

import type { MonitorOps, MonitorRingRecord } from '../../protocol/Hypercalls.js';
import type { DomId } from '../../protocol/Types.js';
import type { MonitorSpace } from './MonitorSpace.js';

/** One domain's monitor hypercalls. */
export class SimMonitorOps implements MonitorOps {
  readonly domid: DomId;
  readonly space: MonitorSpace;
  /** Records handed out and not yet released (leak checks). */
  private _held = 0;

  constructor(domid: DomId, space: MonitorSpace) {
    this.domid = domid;
    this.space = space;
  }

  /** Records this domain holds now. */
  get held(): number {
    return this._held;
  }

  ringRecord(kind: string, peer: DomId, end: 'front' | 'back'): MonitorRingRecord | undefined {
    const index = this.space.claimRing(this.domid, kind, peer, end);
    if (index < 0) return undefined;
    this._held++;
    let released = false;
    return {
      counters: this.space.ringCounters(index),
      release: () => {
        if (released) return;
        released = true;
        this._held--;
        this.space.releaseRing(index, this.domid);
      },
    };
  }
}
