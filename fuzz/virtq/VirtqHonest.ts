/**
 * The honest guest of the virtq target: its own memory (one region with canary holes around it),
 * its own queue (QS 32, INDIRECT_DESC and EVENT_IDX negotiated) served by the same echo device
 * side as the adversary's. Each round it posts up to four chains — 1..3 readable buffers of
 * random bytes, then 1..2 writable buffers prefilled with 0xEE, direct or through an indirect
 * table — and checks, after the device served them: every chain completed exactly once, with
 * used len = min(readable, writable), the writable bytes = the readable prefix then untouched
 * 0xEE, the readable bytes unchanged, nothing outside memory written, and the queue never broken.
 */

import type { SplitFeatures } from '../../backend/virtio/SplitDevice.js';
import { SplitDevice } from '../../backend/virtio/SplitDevice.js';
import {
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../protocol/virtio/SplitRing.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import { EchoServer } from './EchoServer.js';
import { GuestQueue } from './GuestQueue.js';
import { GuestRam } from './GuestRam.js';
import { RecordingMap } from './RecordingMap.js';

const QS = 32;
/** Descriptors per slot (a direct chain has up to 3 + 2). */
const PER_SLOT = 8;
const SLOTS = 4;
const FILL = 0xee;
const FEATURES: SplitFeatures = { indirectDesc: true, eventIdx: true };

interface Buf {
  readonly gpa: number;
  readonly len: number;
}
interface Posted {
  readonly head: number;
  readonly readable: Buf[];
  readonly writable: Buf[];
  readonly data: Uint8Array;
}

/** See the file comment. */
export class HonestGuest {
  readonly ram = new GuestRam(0x12000, [{ gpa: 0, size: 0x10000, offset: 0x1000 }]);
  readonly q = new GuestQueue(this.ram, QS, 0);
  readonly map = new RecordingMap(this.ram, 'honest');
  readonly dev = new SplitDevice(this.map, FEATURES);
  readonly server: EchoServer;
  /** Chains completed and checked. */
  completed = 0;
  private readonly _posted = new Map<number, Posted>();

  constructor(seed: number) {
    this.ram.armHoles(seed);
    this.q.init();
    this.dev.attach(this.q.addrs);
    this.server = new EchoServer(this.dev, this.ram);
  }

  /** Posts a chain in every free slot; returns how many. */
  post(rng: Rng): number {
    let n = 0;
    for (let slot = 0; slot < SLOTS; slot++) {
      const head = PER_SLOT * slot;
      if (this._posted.has(head)) continue;
      const area = 0x2000 + 0x2000 * slot;
      const readable: Buf[] = [];
      const writable: Buf[] = [];
      let at = area;
      for (let i = 1 + rng.below(3); i > 0; i--) {
        const len = 1 + rng.below(512);
        readable.push({ gpa: at, len });
        at += len;
      }
      at = area + 0x1000;
      for (let i = 1 + rng.below(2); i > 0; i--) {
        const len = 1 + rng.below(1024);
        writable.push({ gpa: at, len });
        at += len;
      }
      const total = readable.reduce((s, b) => s + b.len, 0);
      const data = new Uint8Array(total);
      rng.fill(data);
      let k = 0;
      for (const b of readable) {
        this.ram.bytes(b.gpa, b.len).set(data.subarray(k, k + b.len));
        k += b.len;
      }
      this.ram.bytes(area + 0x1000, 0x1000).fill(FILL);
      const bufs = [...readable, ...writable];
      const indirect = rng.chance(0.5);
      const table = 0x1000 + 0x100 * slot;
      bufs.forEach((b, i) => {
        const more = i < bufs.length - 1;
        const flags = (i >= readable.length ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
        const d = { addr: b.gpa, len: b.len, flags, next: indirect ? i + 1 : head + i + 1 };
        if (indirect) this.q.setDesc(i, d, table);
        else this.q.setDesc(head + i, d);
      });
      if (indirect) {
        const len = VIRTQ_DESC_BYTES * bufs.length;
        this.q.setDesc(head, { addr: table, len, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
      }
      this._posted.set(head, { head, readable, writable, data });
      this.q.setUsedEvent(this.q.usedIdx());
      this.q.publish(head);
      n++;
    }
    return n;
  }

  /** Checks what the device completed since the last call; see the file comment. */
  check(): Violation[] {
    const v: Violation[] = [];
    for (const e of this.q.takeUsed()) {
      const p = this._posted.get(e.id);
      if (!p) {
        v.push({
          signature: 'virtq/honest:unknown-or-double-completion',
          detail: `used id ${e.id} is not outstanding`,
        });
        continue;
      }
      this._posted.delete(e.id);
      this.completed++;
      const wlen = p.writable.reduce((s, b) => s + b.len, 0);
      const want = Math.min(p.data.length, wlen);
      if (e.len !== want) {
        v.push({ signature: 'virtq/honest:wrong-len', detail: `head ${e.id}: used len ${e.len}, expected ${want}` });
      }
      let k = 0;
      for (const b of p.writable) {
        const got = this.ram.bytes(b.gpa, b.len);
        const bad = got.findIndex((x, i) => x !== (k + i < want ? p.data[k + i] : FILL));
        if (bad >= 0) {
          v.push({
            signature: 'virtq/honest:wrong-data',
            detail: `head ${e.id}: writable byte ${k + bad} is ${got[bad]}`,
          });
        }
        k += b.len;
      }
      k = 0;
      for (const b of p.readable) {
        const got = this.ram.bytes(b.gpa, b.len);
        if (got.some((x, i) => x !== p.data[k + i])) {
          v.push({ signature: 'virtq/honest:readable-written', detail: `head ${e.id}: a readable buffer changed` });
        }
        k += b.len;
      }
    }
    if (this._posted.size > 0) {
      v.push({
        signature: 'virtq/honest:unanswered',
        detail: `${this._posted.size} chains never completed (heads ${[...this._posted.keys()].join(', ')})`,
      });
      this._posted.clear();
    }
    if (this.dev.broken) {
      v.push({ signature: 'virtq/honest:queue-broken', detail: `honest queue broken by ${this.dev.brokenBy}` });
    }
    const hole = this.ram.checkHoles();
    if (hole >= 0) v.push({ signature: 'virtq/memory:outside-write', detail: `honest guest: backing byte ${hole}` });
    v.push(...this.map.take());
    return v;
  }
}
