/**
 * The `mmio` case kind of the virtq target: an adversarial guest drives a fresh MmioDevice's
 * register block directly (raw posted writes, MmioOps.ts), its queues in the adversary's memory
 * behind the recording map; MmioLoop.ts runs the device side's loop and the per-step checks.
 * Each case builds a device with random offered features (VERSION_1 always), 1..8 queues and a
 * QueueNumMax of 1..256, then follows one of two plans:
 *  - hostile (70%): 12..60 actions — single hostile writes, queue setups with bad values mixed
 *    in, bursts posted without waiting for acks, DRIVER_OK once set up, renegotiations — often
 *    after a legal negotiation, so the queue checks past the status gate are reached, and with
 *    queues sometimes live and kicked over random ring bytes (so they break);
 *  - well-formed (30%): negotiate, place 1..n queues in QUEUE_SLOTS, DRIVER_OK, then structured
 *    chains (AdvChains.ts, at most one planted defect) on one queue and a kick. The verdict must be
 *    the plan's (`virtq/mmio:wrong-chain-verdict`), the used ring must hold exactly the served
 *    chains (`virtq/mmio:used-mismatch`), and a refusal must move the device to
 *    DEVICE_NEEDS_RESET; then a few hostile actions and sometimes a reset.
 * Per case: every guest byte that changed lies in the used ring of a queue the device attached
 * or a served chain's writable buffer, or was written by the guest itself
 * (`virtq/memory:unexpected-write`); no canary hole changed (`virtq/memory:outside-write`);
 * every translation lies in one region with the right permission (RecordingMap).
 */

import type { MmioDevice, MmioDeviceOptions } from '../../backend/virtio/MmioDevice.js';
import type { SplitDevice } from '../../backend/virtio/SplitDevice.js';
import { PvError } from '../../protocol/errors.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from '../../protocol/virtio/DeviceStatus.js';
import { MmioReg } from '../../protocol/virtio/MmioTransport.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import { type AdvPlan, DEFECTS, structuredCase } from './AdvChains.js';
import { ADV_REGIONS, ADV_TABLE_AREAS } from './AdvLayout.js';
import { GuestQueue } from './GuestQueue.js';
import type { GuestRam } from './GuestRam.js';
import { MmioLoop } from './MmioLoop.js';
import { MmioModel } from './MmioModel.js';
import { hostileFeatures, hostilePost, mixedSetup, negotiate, QUEUE_SLOTS, queueSetup } from './MmioOps.js';
import type { RecordingMap } from './RecordingMap.js';

/** The device class under test (tests pass a deliberately faulty subclass). */
export type MmioDeviceClass = new (opts: MmioDeviceOptions) => MmioDevice;

/** What one mmio case did. */
export interface MmioCaseResult {
  readonly plan: string;
  readonly requests: number;
  readonly violations: Violation[];
}

/** Runs mmio cases over `ram` (the adversary's memory) and `map` (its recording device map). */
export class MmioCases {
  private _snapshot = new Uint8Array(0);

  constructor(
    private readonly _ram: GuestRam,
    private readonly _map: RecordingMap,
    private readonly _device: MmioDeviceClass,
    private readonly _stats: Record<string, number>,
    /** Serves one honest chain beside the device loop. */
    private readonly _honest: () => void,
  ) {}

  /** One case; see the file comment. */
  run(rng: Rng): MmioCaseResult {
    const ram = this._ram;
    // Random bytes everywhere: a ring the adversary never initialised holds junk indices.
    for (const r of ADV_REGIONS) rng.fill(ram.u8.subarray(r.offset, r.offset + r.size));
    const offered =
      featureBit(VIRTIO_F_VERSION_1) |
      (rng.chance(0.6) ? featureBit(VIRTIO_F_INDIRECT_DESC) : 0n) |
      (rng.chance(0.5) ? featureBit(VIRTIO_F_EVENT_IDX) : 0n) |
      (rng.chance(0.3) ? featureBit(rng.below(24)) : 0n);
    const queues = 1 + rng.below(8);
    const queueNumMax = rng.pick([1, 4, 8, 16, 256]);
    const dev = new this._device({ offered, memory: this._map, queues, queueNumMax });
    const l = new MmioLoop(dev, new MmioModel(ram, offered, queues, queueNumMax), ram, this._stats, this._honest);
    this._snapshot = ram.u8.slice();
    const wellFormed = rng.chance(0.3);
    let plan: AdvPlan | undefined;
    let chained: [GuestQueue, SplitDevice] | undefined;
    if (wellFormed) [plan, chained] = this._wellFormed(l, rng);
    else this._hostile(l, rng, 12 + rng.below(49));
    const v = l.violations;
    if (plan?.expect && chained) {
      const [gq, sd] = chained;
      const server = l.servers.get(sd);
      const err = l.errs.get(sd);
      const code = err instanceof PvError ? err.code : undefined;
      const served = server?.served ?? [];
      if (served.length !== plan.expect.served || code !== plan.expect.code) {
        v.push({
          signature: 'virtq/mmio:wrong-chain-verdict',
          detail: `QS ${gq.qs}: served ${served.length} then ${code ?? 'nothing'}, expected ${plan.expect.served} then ${plan.expect.code ?? 'nothing'}`,
        });
      }
      const used = gq.takeUsed();
      if (used.length !== served.length || used.some((e, i) => e.id !== served[i].head || e.len !== served[i].len)) {
        v.push({
          signature: 'virtq/mmio:used-mismatch',
          detail: `used ring ${JSON.stringify(used.slice(0, 4))}…(${used.length}) vs ${served.length} served`,
        });
      }
    }
    v.push(...this._memoryChecks(l), ...this._map.take());
    return { plan: wellFormed ? 'well-formed' : 'hostile', requests: l.posted, violations: v };
  }

  private _hostile(l: MmioLoop, rng: Rng, steps: number): void {
    const m = l.model;
    const renegotiate = () => {
      for (const p of negotiate(rng.chance(0.85) ? m.offered : hostileFeatures(rng, m.offered))) l.step([p]);
    };
    if (rng.chance(0.7)) renegotiate();
    for (let i = 0; i < steps; i++) {
      const x = rng.below(20);
      if (x < 5) {
        if (m.status !== 11 && rng.chance(0.6)) renegotiate();
        for (const p of mixedSetup(rng, m, 0.85)) l.step([p]);
      } else if (x < 7) {
        // A burst: posted back to back without waiting for the device.
        l.step(Array.from({ length: 2 + rng.below(6) }, () => hostilePost(rng, m)));
      } else if (x < 9) {
        // DRIVER_OK once set up (a live device, kicks served), else back to the setup phase.
        if (m.status === 11) l.step([{ kind: 'status', v: 15 }]);
        else renegotiate();
      } else l.step([hostilePost(rng, m)]);
    }
  }

  private _wellFormed(l: MmioLoop, rng: Rng): [AdvPlan | undefined, [GuestQueue, SplitDevice] | undefined] {
    const m = l.model;
    const dev = l.dev;
    const indirect = featureBit(VIRTIO_F_INDIRECT_DESC);
    for (const p of negotiate(m.offered & ~(rng.chance(0.3) ? indirect : 0n))) l.step([p]);
    const n = 1 + rng.below(m.numQueues);
    const queues: GuestQueue[] = [];
    for (let q = 0; q < n; q++) {
      const qs = Math.min(rng.pick([1, 2, 4, 8, 16]), m.queueNumMax);
      const gq = new GuestQueue(this._ram, qs, QUEUE_SLOTS[q]);
      gq.init();
      this._guestWrote(QUEUE_SLOTS[q], QUEUE_SLOTS[q] + 0x200);
      queues.push(gq);
      for (const p of queueSetup(q, qs, q)) l.step([p]);
    }
    l.step([{ kind: 'status', v: 15 }]);
    const target = rng.below(n);
    const gq = queues[target];
    const sd = dev.queue(target);
    if (!sd || !m.live) return [undefined, undefined];
    this._stats.mmioLive = (this._stats.mmioLive ?? 0) + 1;
    const f = { indirectDesc: (m.negotiated & indirect) !== 0n, eventIdx: dev.has(VIRTIO_F_EVENT_IDX) };
    const fits = DEFECTS.filter((d) =>
      d === 'indirect-unnegotiated' ? !f.indirectDesc : f.indirectDesc || !d.startsWith('indirect'),
    );
    const plan = structuredCase(gq, rng, f, rng.chance(0.5) ? rng.pick(fits) : undefined);
    this._guestWrote(QUEUE_SLOTS[target], QUEUE_SLOTS[target] + 0x200);
    for (const [gpa, bytes] of ADV_TABLE_AREAS) this._guestWrote(gpa, gpa + bytes);
    l.step([rng.chance(0.5) ? { kind: 'kick', q: target } : { kind: 'reg', reg: MmioReg.QUEUE_NOTIFY, v: target }]);
    // One more round: a refusal in the serve above must show as DEVICE_NEEDS_RESET now.
    l.step([]);
    for (let i = rng.below(8); i > 0; i--) l.step([hostilePost(rng, m)]);
    if (rng.chance(0.5)) l.step([{ kind: 'status', v: 0 }]);
    return [plan, [gq, sd]];
  }

  /** The guest itself rewrote gpa [a, b): its bytes now are the baseline, not the device's doing. */
  private _guestWrote(a: number, b: number): void {
    const off = this._ram.off(a);
    this._snapshot.set(this._ram.u8.subarray(off, off + b - a), off);
  }

  /** Every changed region byte lies in an attached queue's used ring or a served writable buffer. */
  private _memoryChecks(l: MmioLoop): Violation[] {
    const snapshot = this._snapshot;
    const ram = this._ram;
    const m = l.model;
    const v: Violation[] = [];
    const hole = ram.checkHoles();
    if (hole >= 0) v.push({ signature: 'virtq/memory:outside-write', detail: `mmio adversary: backing byte ${hole}` });
    const allowed: Array<readonly [number, number]> = [];
    for (const [gpa, bytes] of m.attachedUsed) {
      const r = ram.regionAt(gpa, bytes);
      if (r) allowed.push([r.offset + gpa - r.gpa, r.offset + gpa - r.gpa + bytes]);
    }
    for (const s of l.servers.values()) allowed.push(...s.served.flatMap((x) => x.writable));
    for (const r of ADV_REGIONS) {
      for (let i = r.offset; i < r.offset + r.size; i++) {
        if (ram.u8[i] === snapshot[i]) continue;
        if (!r.readOnly && allowed.some(([a, b]) => i >= a && i < b)) continue;
        v.push({
          signature: 'virtq/memory:unexpected-write',
          detail: `mmio: backing byte 0x${i.toString(16)} changed`,
        });
        return v;
      }
    }
    return v;
  }
}
