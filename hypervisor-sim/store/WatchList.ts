/**
 * The store's registered watches and the rules for which of them a change fires (xenstored
 * `fire_watches`):
 *  - a change of `P` fires every watch on `P` or on an ancestor of `P`, reporting `P`;
 *  - removing `P` also fires every watch strictly below `P`, reporting the watch's own path
 *    (so a watch on `.../backend/vbd/1/0/state` hears that the whole backend directory went);
 *  - a watcher hears only about nodes it may read (the node after the change, or the removed
 *    node), so a watch cannot be used to probe another domain's private keys;
 *  - special paths (`@introduceDomain`, `@releaseDomain`) fire only on those events.
 */

import { pvError } from '../../protocol/errors.js';
import type { DomId } from '../../protocol/Types.js';
import { hasAccess, isAtOrBelow, type StoreChange } from './StoreTree.js';

/** Called with the path that changed and the watch's token. Runs synchronously inside the op. */
export type WatchFire = (changedPath: string, token: string) => void;

/** One registered watch. */
export interface Watch {
  readonly domid: DomId;
  readonly path: string;
  readonly token: string;
  readonly fire: WatchFire;
}

/** Longest token accepted (tokens come from guests). */
const TOKEN_MAX = 256;

/** The registered watches of a store and the rules deciding which of them a change fires. */
export class WatchList {
  private _watches: Watch[] = [];

  /** Number of watches a domain holds. */
  count(domid: DomId): number {
    let n = 0;
    for (const w of this._watches) if (w.domid === domid) n++;
    return n;
  }

  /** Registers a watch and fires it once, as xenstored does on XS_WATCH. */
  add(w: Watch): void {
    if (typeof w.token !== 'string' || w.token.length > TOKEN_MAX) {
      throw pvError('PV_ERR_STORE_INVALID', `a watch token is a string of at most ${TOKEN_MAX} chars`);
    }
    if (this._find(w.domid, w.path, w.token) >= 0) {
      throw pvError('PV_ERR_STORE_EXISTS', `watch ${w.path} (${w.token}) is already registered`);
    }
    this._watches.push(w);
    w.fire(w.path, w.token);
  }

  /** Removes one watch; PV_ERR_STORE_NOENT if it is not registered. */
  remove(domid: DomId, path: string, token: string): void {
    const i = this._find(domid, path, token);
    if (i < 0) throw pvError('PV_ERR_STORE_NOENT', `no watch ${path} (${token})`);
    this._watches = this._watches.filter((_, j) => j !== i);
  }

  /** Drops every watch of a domain. */
  removeDomain(domid: DomId): void {
    this._watches = this._watches.filter((w) => w.domid !== domid);
  }

  /** Fires the watches concerned by each change, in order of change then of registration. */
  fire(changes: readonly StoreChange[]): void {
    if (changes.length === 0) return;
    const errors: unknown[] = [];
    // Snapshot: a callback may add or remove watches; the list is replaced, never mutated.
    const watches = this._watches;
    for (const c of changes) {
      const node = c.node ?? c.removed;
      for (const w of watches) {
        if (w.path[0] === '@') continue;
        let reported: string | undefined;
        if (isAtOrBelow(c.path, w.path)) reported = c.path;
        else if (c.removed !== undefined && isAtOrBelow(w.path, c.path)) reported = w.path;
        if (reported === undefined) continue;
        if (node !== undefined && !hasAccess(w.domid, node, 'read')) continue;
        call(w, reported, errors);
      }
    }
    rethrow(errors);
  }

  /** Fires the watches on a special path. */
  fireSpecial(path: '@introduceDomain' | '@releaseDomain'): void {
    const errors: unknown[] = [];
    for (const w of this._watches) if (w.path === path) call(w, path, errors);
    rethrow(errors);
  }

  private _find(domid: DomId, path: string, token: string): number {
    return this._watches.findIndex((w) => w.domid === domid && w.path === path && w.token === token);
  }
}

/**
 * A throwing callback must not stop the others, nor turn the op that fired it into a failure:
 * the store has already changed. The error is rethrown outside the op (a host-side bug).
 */
function call(w: Watch, path: string, errors: unknown[]): void {
  try {
    w.fire(path, w.token);
  } catch (err) {
    errors.push(err);
  }
}

function rethrow(errors: readonly unknown[]): void {
  for (const err of errors) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
