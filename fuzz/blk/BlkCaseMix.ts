/**
 * What a blk fuzz run draws and counts (BlkTarget.ts runs the cases). `drawAction` picks one
 * case's adversary action with the mix of BlkTarget.ts's file comment; `actionWorld` builds what
 * that action acts on (the generator's view of the adversary's current vbd); `BlkCounters` keeps the
 * cases and adversarial requests by action (plus hostile handshakes accepted or refused and
 * rings clobbered by their own READs) and builds the run's report from them, the backend's
 * totals and the devices' revoke attempts. It keeps the backend's totals and the mutator's count
 * as they were last seen, so the report is still valid after teardown.
 */

import type { BlkStats } from '../../backend/blk/BlkHandler.js';
import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import type { CaseResult, Rng } from '../core/FuzzTarget.js';
import type { WatchedDevice } from './AdvDevice.js';
import { type ActionResult, type ActionWorld, batch, flood, overflow, stale } from './BlkActions.js';
import type { BlkHonest } from './BlkHonest.js';
import type { BlkWorld } from './BlkWorld.js';

/** An action of one case (tests pick one; `BlkTarget.runCase` draws it). */
export type BlkAction = (a: ActionWorld) => ActionResult;

/** A drawn action and the name it is counted under. */
export interface DrawnAction {
  readonly name: string;
  readonly act: BlkAction;
}

/**
 * Draws one case's action: hostile batch 55 %, the same under the mutator Worker 17 %, flood
 * 10 %, stale slots 10 %, producer overflow 5 %; `undefined` (3 %) is a handshake with hostile
 * keys (HostileConnect.ts), which the target runs itself.
 */
export function drawAction(rng: Rng): DrawnAction | undefined {
  const k = rng.below(100);
  if (k < 55) return { name: 'batch', act: (a) => batch(a, false) };
  if (k < 72) return { name: 'mutated', act: (a) => batch(a, true) };
  if (k < 82) return { name: 'flood', act: flood };
  if (k < 92) return { name: 'stale', act: stale };
  if (k < 97) return { name: 'overflow', act: overflow };
  return undefined;
}

/** What the target hands an action besides the world, the honest guest and the disk. */
export type CaseParts = Pick<ActionWorld, 'adv' | 'conn' | 'oracle' | 'mutator' | 'serve' | 'halts'>;

/**
 * The world one case's action acts on: `disk` is the adversary's disk behind `p.conn`'s vbd,
 * whose sector size and read-only flag the generator sizes its requests by (in 512-byte sectors).
 */
export function actionWorld(
  rng: Rng,
  seed: number,
  world: BlkWorld,
  honest: BlkHonest,
  disk: BlockDevice,
  p: CaseParts,
): ActionWorld {
  const ratio = disk.sectorSize / 512;
  return {
    rng,
    ctx: {
      rng,
      adv: p.adv,
      conn: p.conn,
      sectors: disk.sectors * ratio,
      ratio,
      readOnly: disk.readOnly,
      honestRefs: honest.refs(),
      entries: world.grants.config.entriesPerDomain,
    },
    adv: p.adv,
    conn: p.conn,
    oracle: p.oracle,
    backend: world.backend,
    mutator: p.mutator,
    seed,
    serve: p.serve,
    halts: p.halts,
  };
}

/** The counters of one run; see the file comment. */
export class BlkCounters {
  /** Cases by action, and adversary rings clobbered by their own READs. */
  readonly actions: Record<string, number> = {};
  private _totals: BlkStats | undefined;
  private _mutatorWrites = 0;

  /** Counts the case under `name`, and its adversarial requests under `name:requests`. */
  async count(name: string, p: Promise<CaseResult>): Promise<CaseResult> {
    this.bump(name);
    const r = await p;
    this.bump(`${name}:requests`, r.requests);
    return r;
  }

  bump(name: string, n = 1): void {
    this.actions[name] = (this.actions[name] ?? 0) + n;
  }

  /** The backend's totals as last seen (while the world is up, and once more before it closes). */
  keepTotals(totals: BlkStats): void {
    this._totals = totals;
  }

  /** The mutator Worker's writes, kept before it stops. */
  keepMutatorWrites(n: number): void {
    this._mutatorWrites = n;
  }

  /** The report: `mutatorWrites` is the live count (0 once the mutator is gone). */
  report(
    reconnects: number,
    mutatorWrites: number,
    watched: readonly WatchedDevice[],
  ): Readonly<Record<string, number>> {
    const t = this._totals;
    return {
      reconnects,
      ...this.actions,
      mutatorWrites: mutatorWrites || this._mutatorWrites,
      served: t?.okay ?? 0,
      refused: t?.errors ?? 0,
      eopnotsupp: t?.eopnotsupp ?? 0,
      indirect: t?.indirect ?? 0,
      revokeAttempts: watched.reduce((n, d) => n + d.revokeAttempts, 0),
    };
  }
}
