/**
 * The blk fuzz target: the real blkback (BlkBackend + RingServer over a real FileBlockDevice,
 * one image per guest) in ONE thread over the real grant tables, event channels, store and
 * guest memory (BlkWorld.ts), reached only through Hypercalls, with one adversarial guest
 * (AdvGuest / AdvConnection, its actions in BlkActions.ts) and one honest guest on the real
 * blkfront (BlkHonest.ts) beside it.
 *
 * One case = the honest guest starts a write of a seeded pattern, the adversary does one action
 * (hostile batch 55 %, the same under the mutator Worker 17 %, flood 10 %, stale slots 10 %,
 * producer overflow 5 %, a handshake with hostile keys 3 %), the backend serves, then the honest
 * guest reads its pattern back. Checked on every case:
 *  - the backend's loop never throws, and halts the adversary's ring only for a protocol
 *    violation (`blk/loop:*`, `blk/ring:*`);
 *  - every map the backend makes is of a grant the guest gave dom0 (RecordingGrants,
 *    `blk/grant:ungranted-map`), no data mapping outlives its response, the device only moves
 *    bytes while a grant is mapped and the guest can never end a mapped grant (AdvDevice.ts),
 *    never-granted and read-only-granted pages keep their bytes (`blk/mem:*`);
 *  - every adversarial request answered exactly once, padding zero, status as the independent
 *    model says (BlkAudit.ts, BlkOracle.ts);
 *  - the honest guest served within a bounded number of rounds, OKAY, with its data
 *    (`blk/honest:*`).
 * The adversary's vbds rotate over three disks (512-byte sectors, 4 KiB sectors, read-only). A
 * halted or clobbered adversary ring is closed and a fresh one connected (new vbd, random ring
 * order, a start index that makes its producer wrap 2^32); that is counted in `reconnects`.
 * Teardown (BlkTeardown.ts): nothing mapped, pinned, bound or connected, pages back at base.
 * The action draw, the world an action sees and the run's counters are in BlkCaseMix.ts.
 */

import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import { DOM0, type DomId } from '../../protocol/Types.js';
import type { CaseResult, FuzzTarget, Rng, Violation } from '../core/FuzzTarget.js';
import { Mutator } from '../core/Mutator.js';
import { RecordingGrants } from '../core/RecordingGrants.js';
import { XorShiftRng } from '../core/Rng.js';
import { tableOracle } from '../core/TableOracle.js';
import { AdvConnection } from './AdvConnection.js';
import { WatchedDevice } from './AdvDevice.js';
import { AdvGuest } from './AdvGuest.js';
import { type ActionResult, type ActionWorld, explicit } from './BlkActions.js';
import { actionWorld, type BlkAction, BlkCounters, drawAction } from './BlkCaseMix.js';
import { BlkHonest } from './BlkHonest.js';
import { caseChecks, haltsOf } from './BlkInvariants.js';
import { BlkOracle } from './BlkOracle.js';
import { type BlkBase, teardownChecks } from './BlkTeardown.js';
import { BlkWorld, fastDiskDir } from './BlkWorld.js';
import { hostileConnect } from './HostileConnect.js';

/** Options of the target (all have defaults). */
export interface BlkTargetOptions {
  /** Size of each guest's disk (default 4 MiB). */
  readonly diskBytes?: number;
  /** Where the images live (default /dev/shm if present, else the temp dir). */
  readonly diskDir?: string;
  /** Run the concurrent mutator Worker (default true). */
  readonly mutator?: boolean;
  /** Wraps the guests' disks (tests inject a broken device to see the checks fire). */
  readonly wrapDevice?: (dev: BlockDevice, guest: 'adversary' | 'honest') => BlockDevice;
}

export type { BlkAction } from './BlkCaseMix.js';

/** Guest 1 is the adversary, guest 2 the honest neighbour. */
const ADV = 1 as DomId;

export class BlkTarget implements FuzzTarget {
  readonly name = 'blk';
  /** Adversary rings replaced (after a halt, a clobber, or a random reconnect). */
  reconnects = 0;
  private _world: BlkWorld | undefined;
  private _recorder: RecordingGrants | undefined;
  private _adv: AdvGuest | undefined;
  private _conn: AdvConnection | undefined;
  private _honest: BlkHonest | undefined;
  private _oracle: BlkOracle | undefined;
  private _mutator: Mutator | undefined;
  private _devid = 0;
  /**
   * The adversary's disks by vbd number mod 3: 512-byte sectors, 4 KiB sectors (alignment
   * checks), and the first one again as a read-only vbd (every write must be refused).
   */
  private _advDisks: BlockDevice[] = [];
  private _watched: WatchedDevice[] = [];
  private _honestDisk: BlockDevice | undefined;
  private _serveThrew = 0;
  private readonly _haltsSeen: string[] = [];
  private _base: BlkBase = { freePages: new Map() };
  private readonly _counts = new BlkCounters();
  /** Cases by action, and adversary rings clobbered by their own READs. */
  readonly actions: Record<string, number> = this._counts.actions;

  constructor(private readonly _opts: BlkTargetOptions = {}) {}

  /** The adversary's current ring (tests inspect it). */
  get adversaryRing(): AdvConnection {
    if (this._conn === undefined) throw new Error('BlkTarget: setup() first');
    return this._conn;
  }

  /** The adversary's pools (tests build slots from them). */
  get adversary(): AdvGuest {
    if (this._adv === undefined) throw new Error('BlkTarget: setup() first');
    return this._adv;
  }

  /** The adversary's disks as the backend sees them (512-byte sectors, 4 KiB sectors). */
  get adversaryDisks(): readonly BlockDevice[] {
    return this._advDisks;
  }

  /** Words the mutator Worker has rewritten so far. */
  get mutatorWrites(): number {
    return this._mutator?.writes ?? 0;
  }

  /** The world (tests inspect it). */
  get world(): BlkWorld {
    if (this._world === undefined) throw new Error('BlkTarget: setup() first');
    return this._world;
  }

  async setup(seed: number): Promise<void> {
    const world = await BlkWorld.create({
      guests: 2,
      diskBytes: this._opts.diskBytes ?? 4 << 20,
      diskPerGuest: true,
      diskDir: this._opts.diskDir ?? fastDiskDir(),
      deviceFor: (front, devid) => (front === ADV ? this._advDisks[devid % 3] : this._honestDisk),
      wrapBackendGrant: (inner, space) => {
        this._recorder = new RecordingGrants(inner, DOM0, tableOracle(space), 'blk');
        return this._recorder;
      },
    });
    this._world = world;
    const honestDom = world.guests[1];
    this._adv = new AdvGuest(world.guests[0], world.grants, honestDom.domid, seed);
    const wrap = this._opts.wrapDevice ?? ((d: BlockDevice) => d);
    this._honestDisk = wrap(world.diskOf(honestDom.domid), 'honest');
    const watch = (d: BlockDevice, readOnly = false): WatchedDevice =>
      new WatchedDevice(
        wrap(d, 'adversary'),
        () => this._adv,
        () => this._conn?.ringRefs ?? [],
        readOnly,
      );
    const disk = world.diskOf(ADV);
    this._watched = [watch(disk), watch(world.addDisk('adv-4k', 4096)), watch(disk, true)];
    this._advDisks = this._watched;
    this._honest = new BlkHonest(honestDom, seed);
    this._base = {
      freePages: new Map(world.guests.map((g) => [g.domid, g.mem.freePageCount()])),
    };
    this._honest.attach(await world.open(honestDom, 0));
    const adv = this._adv;
    this._oracle = new BlkOracle(world.grants, adv.dom.domid, adv.pages, adv.memWords, new Set(adv.indFrames));
    await this._reconnect(new XorShiftRng(seed));
    if (this._opts.mutator !== false) this._mutator = Mutator.start(adv.dom.mem.buffer);
  }

  runCase(rng: Rng, caseSeed: number): Promise<CaseResult> {
    const d = drawAction(rng);
    if (d === undefined) return this._counts.count('connect', this.runHostileConnect(rng, caseSeed));
    return this._counts.count(d.name, this.runAction(rng, caseSeed, d.act));
  }

  /** One case whose action is a handshake with hostile keys (HostileConnect.ts) on a spare vbd. */
  runHostileConnect(rng: Rng, _caseSeed: number): Promise<CaseResult> {
    return this._frame(rng, async () => {
      this._serve(2); // the honest write first, so the handshake runs beside a served neighbour
      const adv = this._adv as AdvGuest;
      const r = await hostileConnect(this.world, adv, (this._honest as BlkHonest).dom.domid, this._devid++, rng);
      this._counts.bump(r.accepted ? 'connectAccepted' : 'connectRefused');
      return { requests: 1, violations: r.violations, reconnect: false };
    });
  }

  /** Publishes `slots` verbatim (ids aside) as one case: the property tests' entry. */
  runSlots(rng: Rng, caseSeed: number, slots: readonly Int32Array[]): Promise<CaseResult> {
    return this.runAction(rng, caseSeed, (a) => explicit(a, slots));
  }

  /** One case with a chosen adversary action, the honest guest beside it, and every check. */
  runAction(rng: Rng, caseSeed: number, act: BlkAction): Promise<CaseResult> {
    return this._frame(rng, async () => {
      const res = act(this._actionWorld(rng, caseSeed, this._conn as AdvConnection));
      if (res.clobbered) this._counts.bump('clobbered');
      return res;
    });
  }

  /**
   * The frame of every case: the honest write goes out before the adversary acts (so the rounds
   * that serve the adversary must serve it too), then it reads its pattern back; the invariants
   * are checked; a dead or clobbered adversary ring (and, rarely, a healthy one) is replaced.
   */
  private async _frame(rng: Rng, act: () => Promise<ActionResult>): Promise<CaseResult> {
    const honest = this._honest as BlkHonest;
    honest.startWrite(rng);
    const res = await act();
    const violations = [...res.violations, ...(await honest.settle('write', () => this._serve(1)))];
    honest.startRead();
    this._serve(2);
    violations.push(...(await honest.settle('read', () => this._serve(1))), ...this._caseChecks());
    if (res.reconnect || rng.chance(0.002)) await this._reconnect(rng);
    return { requests: res.requests, honest: 2, violations };
  }

  /** Counters of the run for the report (valid after teardown too). */
  counters(): Readonly<Record<string, number>> {
    if (this._world !== undefined) this._counts.keepTotals(this._world.backend.totals().stats);
    return this._counts.report(this.reconnects, this.mutatorWrites, this._watched);
  }

  async teardown(): Promise<readonly Violation[]> {
    const world = this.world;
    this._counts.keepMutatorWrites(this.mutatorWrites);
    await this._mutator?.stop();
    const out: Violation[] = [];
    await this._conn?.close();
    await this._honest?.dev.close();
    out.push(...teardownChecks(world, this._recorder as RecordingGrants, this._serveThrew, this._base));
    this._counts.keepTotals(world.backend.totals().stats);
    await world.close();
    const held = this._adv?.release() ?? 0;
    if (held > 0) {
      out.push({ signature: 'blk/teardown:grant-still-in-use', detail: `${held} adversary grants could not be ended` });
    }
    this._world = undefined;
    return out;
  }

  private _actionWorld(rng: Rng, seed: number, conn: AdvConnection): ActionWorld {
    return actionWorld(rng, seed, this.world, this._honest as BlkHonest, this._advDisks[conn.devid % 3], {
      adv: this._adv as AdvGuest,
      conn,
      oracle: this._oracle as BlkOracle,
      mutator: this._mutator,
      serve: (max) => this._serve(max),
      halts: () => this._halts(),
    });
  }

  /** Serves up to `max` rounds, stopping at the first idle one; a throw is recorded, not raised. */
  private _serve(max: number): number {
    let rounds = 0;
    for (let i = 0; i < max; i++) {
      let work: number;
      try {
        work = this.world.serve();
      } catch (err) {
        this._serveThrew++;
        this._thrown = err instanceof Error ? err.message : String(err);
        return rounds;
      }
      if (work === 0) break;
      rounds++;
    }
    return rounds;
  }

  private _thrown: string | undefined;

  /** Halt log lines of the current adversary vbd. */
  private _halts(): string[] {
    const conn = this._conn as AdvConnection;
    return haltsOf(this.world.log, (this._adv as AdvGuest).dom.domid, conn.devid, this._haltsSeen);
  }

  /** Invariants that hold between cases (BlkInvariants.ts). */
  private _caseChecks(): Violation[] {
    const out = caseChecks(
      this.world,
      this._recorder as RecordingGrants,
      this._watched,
      this._adv as AdvGuest,
      this._thrown,
    );
    this._thrown = undefined;
    return out;
  }

  /** Replaces the adversary's ring with a fresh vbd (random order, start index near a wrap). */
  private async _reconnect(rng: Rng): Promise<void> {
    const world = this.world;
    const adv = (this._adv as AdvGuest).dom;
    if (this._conn !== undefined) {
      await this._conn.close();
      await world.unplug(adv.domid, this._conn.devid);
      this.reconnects++;
    }
    const devid = this._devid++;
    const spec = AdvConnection.randomSpec(rng);
    await world.plug(adv.domid as DomId, devid);
    this._conn = await AdvConnection.connect(adv.hc, devid, spec);
  }
}
