/**
 * The fuzz target over the real paravirtual RDMA backend (`pvio fuzz --backend rdma`): one
 * PvWorld in this thread — real grant tables, event channels, store, guest memory, the NIC
 * model and its driver, RdmaBackend on a RingServer — with dom0's grant operations wrapped by
 * RecordingGrants. Guests 1 and 2 are honest (a connected RC pair doing WRITE and SEND with data
 * checks); guest 3 is the adversary (Adversary.ts), reconnected whenever the backend ends its
 * rings and now and then on purpose (teardown mid-flight).
 *
 * A case is one action (RdmaCases.ts), chosen by weight: a batch of hostile data slots, hostile
 * control requests, either with the concurrent mutator Worker rewriting what the backend reads,
 * a producer-index jump, an event flood, or a disconnect with work in flight. Then, every case:
 *  - the backend loop never threw (`rdma/loop:threw`) and halted a ring only for a protocol
 *    violation the case committed (`rdma/loop:ring-halted`);
 *  - every map and copy it made was of granted pages (`rdma/grant:ungranted-*`), and no canary
 *    changed (`rdma/memory:*`);
 *  - every consumed request was answered exactly once, echoing the request, padding zero;
 *  - the honest pair's traffic completed exactly once with the right bytes (`rdma/honest:*`);
 *  - after a disconnect, dom0's live mappings are back where they were (`rdma/teardown:leak`).
 */

import protobuf from 'protobufjs';
import type { Transport } from '../../protocol/Pci.js';
import { CtrlCodec } from '../../protocol/rdma/pv/CtrlCodec.js';
import { DOM0 } from '../../protocol/Types.js';
import type { CaseResult, FuzzTarget, Rng, Violation } from '../core/FuzzTarget.js';
import { Mutator } from '../core/Mutator.js';
import { type GrantOracle, RecordingGrants } from '../core/RecordingGrants.js';
import { pickWeighted } from '../core/Rng.js';
import { tableOracle } from '../core/TableOracle.js';
import { Adversary } from './Adversary.js';
import type { Victim } from './DataGen.js';
import { HonestPair } from './Honest.js';
import { PvWorld } from './PvWorld.js';
import { type ActionResult, type CaseEnv, ctrlCase, dataCase, floodCase, inFlightCase, jumpCase } from './RdmaCases.js';

/** Options of the target. */
export interface RdmaTargetOptions {
  /** Probability that a case also runs honest traffic (default 0.25). */
  readonly honestRate?: number;
  /** Start the mutator Worker (default true). */
  readonly mutator?: boolean;
}

/** Case kinds and their weights. */
const KINDS: ReadonlyArray<[string, number]> = [
  ['data', 50],
  ['ctrl', 28],
  ['data-mutator', 8],
  ['ctrl-mutator', 4],
  ['flood', 4],
  ['jump', 2],
  ['disconnect', 1],
];

/** Counters of a run (reported by the command with --json). */
export interface RdmaTargetStats {
  reconnects: number;
  halts: number;
  /** The adversary wedged its own data ring behind a deferred request (then reconnected). */
  stalls: number;
  /** Reconnects where the adversary died without cleaning up (the backend had to). */
  kills: number;
  mutatorWrites: number;
  honestRounds: number;
}

/** The rdma target; see the file comment. */
export class RdmaTarget implements FuzzTarget {
  readonly name = 'rdma';
  readonly stats: RdmaTargetStats = { reconnects: 0, halts: 0, stalls: 0, kills: 0, mutatorWrites: 0, honestRounds: 0 };
  /** Kind of the last case run (diagnostics). */
  lastKind = '';
  private _world: PvWorld | undefined;
  private _rec: RecordingGrants | undefined;
  /** Honest pairs: zero-copy (guests 1, 2) and copy mode (guests 4, 5). */
  private _pairs: HonestPair[] = [];
  private _adv: Adversary | undefined;
  private _mutator: Mutator | undefined;
  private _liveBase = 0;
  private _thrown: unknown[] = [];
  private _logSeen = 0;
  private _seq = 1;
  private readonly _codec = new CtrlCodec(protobuf);
  private readonly _honestRate: number;
  private readonly _useMutator: boolean;

  constructor(opts: RdmaTargetOptions = {}) {
    this._honestRate = opts.honestRate ?? 0.25;
    this._useMutator = opts.mutator ?? true;
  }

  /** The world (tests inspect it). */
  get world(): PvWorld {
    if (!this._world) throw new Error('RdmaTarget: setup() first');
    return this._world;
  }

  /** The current adversary (tests aim at it). */
  get adversary(): Adversary {
    if (!this._adv) throw new Error('RdmaTarget: setup() first');
    return this._adv;
  }

  /** What the case functions need (tests build cases with broken serving stubs from it). */
  caseEnv(serve: () => void = this._serve): CaseEnv {
    const world = this.world;
    return {
      adv: this.adversary,
      victim: this._victim(),
      codec: this._codec,
      mutator: this._mutator as Mutator,
      serve,
      halted: () => world.server.stats.halted,
      deferrals: () => world.backend.session(this.adversary.dom.domid, 0)?.counters.deferrals ?? 0,
      nextSeq: () => this._seq++,
    };
  }

  /** The recorder of dom0's grant operations (tests inject into it). */
  get recorder(): RecordingGrants {
    if (!this._rec) throw new Error('RdmaTarget: setup() first');
    return this._rec;
  }

  async setup(seed: number): Promise<void> {
    let oracle: GrantOracle = () => undefined;
    const world = await PvWorld.create({
      guests: 5,
      guestPages: 1024,
      backend: {
        // Small quotas, so "more than the limit" is reached within a few cases.
        limits: { maxPd: 4, maxQp: 8, maxCq: 8, maxMr: 32, maxPinnedPages: 2048, maxOutstandingWr: 2048 },
      },
      wrapDom0Grant: (inner) => {
        this._rec = new RecordingGrants(inner, DOM0, (g, r) => oracle(g, r), 'rdma');
        return this._rec;
      },
    });
    oracle = tableOracle(world.grants);
    this._world = world;
    const g = world.guests;
    this._pairs.push(await HonestPair.open(world, g[0], g[1], 'paravirt', seed));
    this._pairs.push(await HonestPair.open(world, g[3], g[4], 'paravirt-copy', seed + 2));
    this._liveBase = world.dom0.hc.grant.liveMappings();
    await this._connectAdversary(seed);
    if (this._useMutator) this._mutator = Mutator.start(world.guests[2].mem.buffer);
    this._logSeen = world.log.length;
  }

  async runCase(rng: Rng, caseSeed: number): Promise<CaseResult> {
    const kind = pickWeighted(rng, KINDS);
    this.lastKind = kind;
    const violations: Violation[] = [];
    let requests = 0;
    let honest = 0;
    let expectHalt = false;
    let reconnect = false;
    const adv = this._adv as Adversary;
    const mut = kind.endsWith('mutator') && this._mutator !== undefined;
    const env = this.caseEnv();
    let r: ActionResult | undefined;
    if (kind === 'data' || kind === 'data-mutator') r = dataCase(env, rng, mut);
    else if (kind === 'ctrl' || kind === 'ctrl-mutator') r = ctrlCase(env, rng, mut);
    else if (kind === 'flood') r = floodCase(env, rng);
    else if (kind === 'jump') {
      r = jumpCase(env, rng);
      expectHalt = r.halted;
    } else {
      // Disconnect with work in flight: the adversary's device is closed under it below.
      r = inFlightCase(env, rng);
      reconnect = true;
    }
    requests += r.requests;
    violations.push(...r.violations);
    if (r.halted) {
      this.stats.halts++;
      reconnect = true;
    }
    if (r.stalled) {
      this.stats.stalls++;
      reconnect = true;
    }
    if (rng.chance(this._honestRate) || reconnect) {
      const h = rng.pick(this._pairs).traffic(rng, this._serve);
      honest += h.requests;
      violations.push(...h.violations);
      this.stats.honestRounds++;
    }
    adv.drainCq();
    violations.push(...this.recorder.take(), ...adv.checkCanaries());
    for (const p of this._pairs) violations.push(...p.checkCanaries());
    if (reconnect) violations.push(...(await this._reconnect(caseSeed, kind === 'disconnect' || rng.chance(0.3))));
    // Last: throws and halts from anywhere in the case (honest traffic and reconnect included).
    violations.push(...this._loopChecks(expectHalt));
    return { requests, honest, violations };
  }

  counters(): Readonly<Record<string, number>> {
    const b = this.world.backend.stats;
    return {
      ...this.stats,
      mutatorWrites: this._mutator?.writes ?? this.stats.mutatorWrites,
      dataRequests: b.dataRequests,
      dataRejects: b.dataRejects,
      ctrlRequests: b.ctrlRequests,
      ctrlErrors: b.ctrlErrors,
      grantMaps: this.recorder.record.maps,
      grantCopies: this.recorder.record.copies,
      grantRefused: this.recorder.record.refused,
    };
  }

  async teardown(): Promise<readonly Violation[]> {
    const world = this.world;
    const v: Violation[] = [];
    if (this._mutator) {
      this.stats.mutatorWrites = this._mutator.writes;
      await this._mutator.stop();
    }
    await this._adv?.close();
    for (const p of this._pairs) await p.close();
    for (let i = 0; i < 5; i++) this._serve();
    v.push(...this._loopChecks(false), ...this.recorder.take());
    const live = world.dom0.hc.grant.liveMappings();
    if (live !== 0)
      v.push({ signature: 'rdma/teardown:leak', detail: `${live} grant mappings left after every guest closed` });
    if (world.backend.connections !== 0) {
      v.push({ signature: 'rdma/teardown:leak', detail: `${world.backend.connections} connections left` });
    }
    if (world.backend.stats.teardownErrors !== 0) {
      v.push({
        signature: 'rdma/teardown:errors',
        detail: `${world.backend.stats.teardownErrors} errors tearing sessions down`,
      });
    }
    await world.close();
    return v;
  }

  /** Reconnects a fresh adversary and checks the old one left nothing mapped. */
  private async _reconnect(seed: number, kill: boolean): Promise<Violation[]> {
    const world = this.world;
    const v: Violation[] = [];
    const adv = this._adv as Adversary;
    if (kill) {
      await adv.kill(world, this._serve);
      this.stats.kills++;
    } else await adv.close();
    for (let i = 0; i < 3; i++) this._serve();
    if (world.backend.session(adv.dom.domid, 0) !== undefined) {
      v.push({ signature: 'rdma/teardown:session-left', detail: 'the backend still serves a guest that went away' });
    }
    const live = world.dom0.hc.grant.liveMappings();
    if (live !== this._liveBase) {
      v.push({
        signature: 'rdma/teardown:leak',
        detail: `dom0 holds ${live} grant mappings after the adversary left, ${this._liveBase} before it came`,
      });
      this._liveBase = live;
    }
    await this._connectAdversary(seed);
    this.stats.reconnects++;
    return v;
  }

  private async _connectAdversary(seed: number): Promise<void> {
    const world = this.world;
    const transport: Transport = seed & 1 ? 'paravirt-copy' : 'paravirt';
    this._adv = await Adversary.open(world, world.guests[2], world.guests[0].domid, transport, seed, this._serve);
  }

  private _victim(): Victim {
    const b = this._pairs[0].b;
    return { qpHandle: b.qp.handle, lkey: b.mr.lkey, rkey: b.mr.rkey, addr: b.buf, length: b.mr.length };
  }

  /** One serving round; a throw out of the backend's loop is recorded, never propagated. */
  private readonly _serve = (): void => {
    try {
      this.world.serve();
    } catch (err) {
      this._thrown.push(err);
    }
  };

  /** Throws out of the loop, and rings halted by the backend (allowed only if `expectHalt`). */
  private _loopChecks(expectHalt: boolean): Violation[] {
    const v: Violation[] = [];
    for (const err of this._thrown.splice(0)) {
      v.push({ signature: 'rdma/loop:threw', detail: err instanceof Error ? `${err.message}` : String(err) });
    }
    const log = this.world.log;
    for (; this._logSeen < log.length; this._logSeen++) {
      const line = log[this._logSeen];
      if (!line.includes(' halted: ')) continue;
      if (expectHalt && line.includes('PV_ERR_RING_PROD_OVERFLOW')) continue;
      v.push({ signature: 'rdma/loop:ring-halted', detail: line.slice(0, 300) });
    }
    if (log.length > 10_000) {
      log.splice(0, log.length);
      this._logSeen = 0;
    }
    return v;
  }
}
