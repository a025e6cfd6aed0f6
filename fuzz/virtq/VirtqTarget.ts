/**
 * The virtqueue fuzz target (`pvio fuzz --backend virtq`): the real device side
 * (backend/virtio: GuestMemoryMap, DescChain, SplitDevice) run as an echo device (EchoServer)
 * over two guests in this thread. The adversary (AdvLayout.ts memory: GPA-adjacent regions, a
 * read-only one, gaps and canary holes) gets a fresh queue each case — QS 1..64, random
 * INDIRECT_DESC / EVENT_IDX — and fills it by case kind:
 *  - structured: valid chains with at most one planted defect (AdvChains.ts: loops, next or head
 *    out of range, bad or huge addresses and lengths, writable read-only memory, direction,
 *    indirect abuse, avail index jumps), whose verdict a correct device is known to give;
 *  - garbage: random and edge values in every descriptor, table, ring entry and index;
 *  - mutator: valid chains while the mutator Worker rewrites the descriptor table, avail ring
 *    and indirect tables under the device (XSA-155);
 *  - spurious: a kick with nothing published;
 *  - packed: a fresh packed queue served by PackedDevice, with structured defects and garbage
 *    (PackedCases.ts: same invariants, `virtq/packed:*` signatures);
 *  - mmio: a fresh virtio-mmio device (backend/virtio/MmioDevice.ts) whose register block the
 *    adversary drives with raw posted writes — hostile status, feature and queue-config
 *    sequences, bursts, kicks, and well-formed setups followed by chains (MmioCases.ts; checks
 *    and `virtq/mmio:*` signatures in MmioLoop.ts, the oracle in MmioModel.ts).
 * The honest guest (VirtqHonest.ts) posts chains on its own queue every case, served in the same
 * loop. Invariants per case (signatures):
 *  - the device throws nothing but VirtioError (`virtq/device:threw`); a refusal breaks the queue
 *    and nothing else does (`…:refusal-not-fatal`, `…:broken-silently`); a broken queue serves
 *    and publishes nothing (`…:broken-served`) until reset, after which it serves again
 *    (`…:reset-did-not-recover`);
 *  - structured cases get the verdict the plan predicts (`virtq/adv:wrong-verdict`), and every
 *    served chain is in the used ring once, with its len (`virtq/adv:used-mismatch`);
 *  - every translation lies in one region with the right permission (RecordingMap), no canary
 *    hole changes (`virtq/memory:outside-write`), and every changed guest byte lies in the used
 *    ring or a served chain's writable segment (`virtq/memory:unexpected-write`);
 *  - the honest guest's chains complete exactly once with the right data (`virtq/honest:*`).
 */

import type { GuestMemoryMap } from '../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../backend/virtio/MmioDevice.js';
import { SplitDevice, type SplitFeatures } from '../../backend/virtio/SplitDevice.js';
import { PvError, VirtioError } from '../../protocol/errors.js';
import { descTableBytes, usedRingBytes } from '../../protocol/virtio/SplitRing.js';
import type { CaseResult, FuzzTarget, Rng, Violation } from '../core/FuzzTarget.js';
import type { WordRange } from '../core/Mutator.js';
import { Mutator } from '../core/Mutator.js';
import { pickWeighted } from '../core/Rng.js';
import { type AdvPlan, DEFECTS, type Defect, featuresFor, garbageCase, structuredCase } from './AdvChains.js';
import { ADV_BYTES, ADV_QUEUE, ADV_REGIONS, ADV_SIZES, ADV_TABLE_AREAS } from './AdvLayout.js';
import { EchoServer } from './EchoServer.js';
import { GuestQueue } from './GuestQueue.js';
import { GuestRam } from './GuestRam.js';
import { type MmioCaseResult, MmioCases, type MmioDeviceClass } from './MmioCases.js';
import { packedCase } from './PackedCases.js';
import { RecordingMap } from './RecordingMap.js';
import { HonestGuest } from './VirtqHonest.js';

/** Options of the target. */
export interface VirtqTargetOptions {
  /** Start the mutator Worker (default true). */
  readonly mutator?: boolean;
  /** A map to put under the adversary's recorder (tests: a faulty map proves the checks fire). */
  readonly innerMap?: (ram: GuestRam) => GuestMemoryMap;
  /** The virtio-mmio device class of the `mmio` kind (tests: a deliberately faulty subclass). */
  readonly mmioDevice?: MmioDeviceClass;
  /** The case mix as [kind, weight] (default KINDS; tests narrow it to one kind). */
  readonly kinds?: ReadonlyArray<readonly [string, number]>;
}

const KINDS: ReadonlyArray<[string, number]> = [
  ['structured', 60],
  ['garbage', 28],
  ['mutator', 8],
  ['spurious', 4],
  ['mmio', 10],
  ['packed', 12],
];

/** One case's adversary: its queue, device and echo server. */
interface AdvQueue {
  readonly q: GuestQueue;
  readonly dev: SplitDevice;
  readonly server: EchoServer;
}

/** The virtq target; see the file comment. */
export class VirtqTarget implements FuzzTarget {
  readonly name = 'virtq';
  readonly stats: Record<string, number> = { served: 0, refused: 0, recovered: 0, honestChains: 0, mutatorWrites: 0 };
  /** Kind (and defect) of the last case (diagnostics). */
  lastKind = '';
  private _ram: GuestRam | undefined;
  private _map: RecordingMap | undefined;
  private _honest: HonestGuest | undefined;
  private _mutator: Mutator | undefined;
  private _mmio: MmioCases | undefined;

  constructor(private readonly _opts: VirtqTargetOptions = {}) {}

  async setup(seed: number): Promise<void> {
    const ram = new GuestRam(ADV_BYTES, ADV_REGIONS);
    ram.armHoles(seed);
    this._ram = ram;
    this._map = new RecordingMap(ram, 'adversary', this._opts.innerMap?.(ram));
    this._honest = new HonestGuest(seed ^ 0x5eed);
    if (this._opts.mutator ?? true) this._mutator = Mutator.start(ram.sab);
    const serveHonest = () => void this._honest?.server.serveOne();
    this._mmio = new MmioCases(ram, this._map, this._opts.mmioDevice ?? MmioDevice, this.stats, serveHonest);
  }

  async runCase(rng: Rng, caseSeed: number): Promise<CaseResult> {
    const ram = this._ram as GuestRam;
    const honest = this._honest as HonestGuest;
    const kind = pickWeighted(rng, this._opts.kinds ?? KINDS);
    const defect: Defect | undefined = kind === 'structured' && rng.chance(0.85) ? rng.pick(DEFECTS) : undefined;
    this.lastKind = defect ? `${kind}/${defect}` : kind;
    this.stats[kind] = (this.stats[kind] ?? 0) + 1;
    if (kind === 'mmio') return this._mmioCase(rng);
    if (kind === 'packed') return this._packedCase(rng);
    const qs = rng.pick(ADV_SIZES);
    const f: SplitFeatures = featuresFor(rng, defect);
    // Random bytes everywhere (the queue areas are zeroed by init): an echo over equal bytes would hide a write.
    for (const r of ADV_REGIONS) rng.fill(ram.u8.subarray(r.offset, r.offset + r.size));
    const q = new GuestQueue(ram, qs, ADV_QUEUE);
    q.init();
    let plan: AdvPlan;
    if (kind === 'garbage') plan = garbageCase(q, rng);
    else if (kind === 'spurious') plan = { offered: 0, expect: { served: 0 } };
    else plan = structuredCase(q, rng, f, defect);
    const dev = new SplitDevice(this._map as RecordingMap, f);
    dev.attach(q.addrs);
    const adv: AdvQueue = { q, dev, server: new EchoServer(dev, ram) };
    const snapshot = ram.u8.slice();
    const honestPosted = honest.post(rng);
    this.stats.honestChains += honestPosted;
    const mutated = kind === 'mutator' && this._mutator ? this._mutatedRanges(q) : [];
    if (mutated.length > 0) {
      (this._mutator as Mutator).run(
        mutated.map(([a, b]) => ({ word: a >> 2, words: (b - a) >> 2 }) satisfies WordRange),
        caseSeed,
      );
    }
    const { advError, honestError } = this._serve(adv, 2 * qs + 16);
    if (mutated.length > 0) (this._mutator as Mutator).pause();

    const v: Violation[] = [];
    v.push(...this._refusalChecks(adv, advError));
    if (plan.expect && mutated.length === 0) {
      const code = advError instanceof PvError ? advError.code : undefined;
      const served = adv.server.served.length;
      if (served !== plan.expect.served || code !== plan.expect.code) {
        v.push({
          signature: 'virtq/adv:wrong-verdict',
          detail: `${this.lastKind} QS ${qs}: served ${served} then ${code ?? 'nothing'}, expected ${plan.expect.served} then ${plan.expect.code ?? 'nothing'}`,
        });
      }
    }
    v.push(
      ...this._usedChecks(adv),
      ...this._memoryChecks(adv, snapshot, mutated),
      ...(this._map as RecordingMap).take(),
    );
    if (dev.broken) v.push(...this._brokenChecks(adv));
    if (honestError !== undefined) v.push({ signature: 'virtq/honest:device-threw', detail: String(honestError) });
    v.push(...honest.check());
    this.stats.served += adv.server.served.length;
    return { requests: plan.offered, honest: honestPosted, violations: v };
  }

  counters(): Readonly<Record<string, number>> {
    return {
      ...this.stats,
      mutatorWrites: this._mutator?.writes ?? this.stats.mutatorWrites,
      translations: this._map?.translations ?? 0,
      honestCompleted: this._honest?.completed ?? 0,
    };
  }

  async teardown(): Promise<readonly Violation[]> {
    if (this._mutator) {
      this.stats.mutatorWrites = this._mutator.writes;
      await this._mutator.stop();
    }
    const v: Violation[] = [];
    const hole = this._ram?.checkHoles() ?? -1;
    if (hole >= 0) v.push({ signature: 'virtq/memory:outside-write', detail: `adversary: backing byte ${hole}` });
    return v;
  }

  /** An `mmio` case (MmioCases.ts): the honest guest is served in its device loop, then drained. */
  private _mmioCase(rng: Rng): CaseResult {
    const honest = this._honest as HonestGuest;
    const honestPosted = honest.post(rng);
    this.stats.honestChains += honestPosted;
    const v: Violation[] = [];
    let r: MmioCaseResult | undefined;
    try {
      r = (this._mmio as MmioCases).run(rng);
      // A short hostile plan may end before every honest chain had its round.
      for (let i = 0; i < 8; i++) if (honest.server.serveOne() < 0) break;
    } catch (err) {
      // MmioLoop catches what the device throws; anything here escaped it (a faulty device class).
      v.push({
        signature: 'virtq/mmio:threw',
        detail: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
    }
    this.lastKind = `mmio/${r?.plan ?? 'threw'}`;
    v.push(...(r?.violations ?? []), ...honest.check());
    return { requests: r?.requests ?? 0, honest: honestPosted, violations: v };
  }

  /** A `packed` case (PackedCases.ts), then the honest guest's round. */
  private _packedCase(rng: Rng): CaseResult {
    const honest = this._honest as HonestGuest;
    const honestPosted = honest.post(rng);
    this.stats.honestChains += honestPosted;
    const r = packedCase(this._ram as GuestRam, this._map as RecordingMap, rng, this.stats);
    this.lastKind = r.kind;
    const v: Violation[] = [...r.violations];
    try {
      for (let i = 0; i < 2 * honestPosted + 8; i++) if (honest.server.serveOne() < 0) break;
    } catch (err) {
      v.push({ signature: 'virtq/honest:device-threw', detail: String(err) });
    }
    v.push(...honest.check());
    return { requests: r.requests, honest: honestPosted, violations: v };
  }

  /** Serves both queues in one loop (as one device side would), at most `limit` rounds. */
  private _serve(adv: AdvQueue, limit: number): { advError: unknown; honestError: unknown } {
    const honest = (this._honest as HonestGuest).server;
    let advError: unknown;
    let honestError: unknown;
    let advDone = false;
    for (let i = 0; i < limit; i++) {
      let busy = false;
      if (!advDone) {
        try {
          if (adv.server.serveOne() >= 0) busy = true;
          else advDone = true;
        } catch (err) {
          advError = err;
          advDone = true;
        }
      }
      if (honestError === undefined) {
        try {
          if (honest.serveOne() >= 0) busy = true;
        } catch (err) {
          honestError = err;
        }
      }
      if (!busy) break;
    }
    return { advError, honestError };
  }

  /** Backing [start, end) ranges the mutator rewrites: descriptor table, avail ring, tables. */
  private _mutatedRanges(q: GuestQueue): Array<[number, number]> {
    const ram = q.ram;
    const desc = ram.off(q.addrs.desc);
    const avail = ram.off(q.addrs.avail);
    const out: Array<[number, number]> = [
      [desc, desc + descTableBytes(q.qs)],
      // Whole words only: the used ring starts at the next 4-byte boundary.
      [avail, avail + ((6 + 2 * q.qs) & ~3)],
    ];
    for (const [gpa, bytes] of ADV_TABLE_AREAS) out.push([ram.off(gpa), ram.off(gpa) + bytes]);
    return out;
  }

  private _refusalChecks(adv: AdvQueue, err: unknown): Violation[] {
    if (err === undefined) {
      return adv.dev.broken
        ? [{ signature: 'virtq/device:broken-silently', detail: `broken by ${adv.dev.brokenBy} without a refusal` }]
        : [];
    }
    if (!(err instanceof VirtioError)) {
      return [
        { signature: 'virtq/device:threw', detail: err instanceof Error ? (err.stack ?? err.message) : String(err) },
      ];
    }
    this.stats.refused++;
    this.stats[err.code] = (this.stats[err.code] ?? 0) + 1;
    if (!adv.dev.broken)
      return [{ signature: 'virtq/device:refusal-not-fatal', detail: `${err.code} left the queue serving` }];
    return [];
  }

  /** Every served chain is in the used ring once, in order, with its len (unless a chain wrote over the ring). */
  private _usedChecks(adv: AdvQueue): Violation[] {
    const ram = adv.q.ram;
    const start = ram.off(adv.q.addrs.used);
    const end = start + usedRingBytes(adv.q.qs);
    const served = adv.server.served;
    if (served.some((s) => s.writable.some(([a, b]) => a < end && start < b))) return [];
    const used = adv.q.takeUsed();
    const bad =
      used.length !== served.length || used.some((e, i) => e.id !== served[i].head || e.len !== served[i].len);
    if (!bad) return [];
    return [
      {
        signature: 'virtq/adv:used-mismatch',
        detail: `used ring ${JSON.stringify(used.slice(0, 4))}…(${used.length}) vs served ${served.length} chains`,
      },
    ];
  }

  /** Holes intact, and every changed region byte in the used ring or a served writable segment. */
  private _memoryChecks(adv: AdvQueue, snapshot: Uint8Array, mutated: Array<[number, number]>): Violation[] {
    const ram = adv.q.ram;
    const v: Violation[] = [];
    const hole = ram.checkHoles();
    if (hole >= 0) v.push({ signature: 'virtq/memory:outside-write', detail: `adversary: backing byte ${hole}` });
    const used = ram.off(adv.q.addrs.used);
    const allowed: Array<readonly [number, number]> = [[used, used + usedRingBytes(adv.q.qs)]];
    for (const s of adv.server.served) allowed.push(...s.writable);
    const u8 = ram.u8;
    for (const r of ADV_REGIONS) {
      for (let i = r.offset; i < r.offset + r.size; i++) {
        if (u8[i] === snapshot[i]) continue;
        // The mutator is the guest itself writing its own (even device-read-only) memory.
        if (mutated.some(([a, b]) => i >= a && i < b)) continue;
        if (!r.readOnly && allowed.some(([a, b]) => i >= a && i < b)) continue;
        v.push({
          signature: 'virtq/memory:unexpected-write',
          detail: `backing byte 0x${i.toString(16)} (gpa 0x${(r.gpa + i - r.offset).toString(16)}${r.readOnly ? ', read-only' : ''}) changed outside the used ring and served writable buffers`,
        });
        return v;
      }
    }
    return v;
  }

  /** A broken queue serves and publishes nothing; after reset and attach it serves again. */
  private _brokenChecks(adv: AdvQueue): Violation[] {
    const { q, dev, server } = adv;
    const v: Violation[] = [];
    const before = q.usedIdx();
    for (const op of [() => dev.pop(server.iov), () => dev.publishUsed()]) {
      try {
        op();
        v.push({ signature: 'virtq/device:broken-served', detail: 'a broken queue accepted pop/publishUsed' });
      } catch (err) {
        if (!(err instanceof VirtioError && err.code === 'PV_ERR_VIRTIO_NEEDS_RESET')) {
          v.push({ signature: 'virtq/device:broken-served', detail: `broken queue threw ${String(err)}` });
        }
      }
    }
    if (q.usedIdx() !== before)
      v.push({ signature: 'virtq/device:broken-served', detail: 'used.idx moved while broken' });
    dev.reset();
    q.init();
    dev.attach(q.addrs);
    q.setDesc(0, { addr: 0x6000, len: 16, flags: 0, next: 0 });
    q.publish(0);
    try {
      if (server.serveOne() !== 0) throw new Error('nothing popped');
      this.stats.recovered++;
    } catch (err) {
      v.push({ signature: 'virtq/device:reset-did-not-recover', detail: String(err) });
    }
    return v;
  }
}
