/**
 * The store's data model: paths, nodes, permissions and per-domain node accounting (xenstored's
 * `struct node`, `perm_for_conn`, `domain_nbentry`).
 *
 * The tree is persistent: nodes are immutable and a change copies the nodes on the path from
 * the root down to the changed node, sharing everything else. A transaction's snapshot is
 * therefore just the root pointer taken at `transactionStart` (O(1); the C xenstored used to copy
 * the whole database, XSD:325-340), and an op that throws half-way leaves nothing behind.
 *
 * Every node carries `gen`, the global generation at which its value, its permissions or its set
 * of children last changed (a child's *value* changing does not bump the parent). A transaction
 * records every path it looked at; it may commit only if each of those paths still has the gen
 * it had in the snapshot (or is still absent), which is xenstored's per-node generation check.
 */

import { pvError } from '../../protocol/errors.js';
import type { StorePerm } from '../../protocol/Hypercalls.js';
import { DOM0, type DomId } from '../../protocol/Types.js';

/** Longest absolute path accepted (xenstore `XENSTORE_ABS_PATH_MAX`). */
export const PATH_MAX = 3072;
/** Longest value accepted, in UTF-16 code units (xenstore `XENSTORE_PAYLOAD_MAX`). */
export const VALUE_MAX = 4096;
/** xenstored's node-name charset; `+` also rules out empty components (`//`, trailing `/`). */
const COMPONENT = /^[A-Za-z0-9_@-]+$/;

/** One node. `perms[0]` is the owner; its read/write flags apply to every domain not listed. */
export interface StoreNode {
  readonly value: string;
  readonly perms: readonly StorePerm[];
  readonly children: ReadonlyMap<string, StoreNode>;
  /** Generation of the last change to this node's value, perms or set of children. */
  readonly gen: number;
}

/** Limits applied to unprivileged callers (dom0 is exempt, as in xenstored). */
export interface TreeLimits {
  /** Nodes a domain may own (xenstored `quota-nodes`). */
  readonly nodes: number;
  /** Permission entries per node (xenstored `quota-max-perms`). */
  readonly perms: number;
}

/** A change that may fire watches. `removed` is set for `rm` (the removed subtree's root). */
export interface StoreChange {
  readonly path: string;
  readonly node?: StoreNode;
  readonly removed?: StoreNode;
}

/** A mutation as recorded by a transaction and replayed at commit. */
export type StoreMutation =
  | { readonly op: 'write'; readonly parts: readonly string[]; readonly value: string }
  | { readonly op: 'mkdir'; readonly parts: readonly string[] }
  | { readonly op: 'rm'; readonly parts: readonly string[] }
  | { readonly op: 'setPerms'; readonly parts: readonly string[]; readonly perms: readonly StorePerm[] };

/** Splits and validates an absolute path; `/` is the root (no components). */
export function parsePath(path: string): string[] {
  if (typeof path !== 'string' || path.length === 0 || path.length > PATH_MAX || path[0] !== '/') {
    throw pvError('PV_ERR_STORE_INVALID', `store path must be absolute and at most ${PATH_MAX} chars`);
  }
  if (path === '/') return [];
  const parts = path.slice(1).split('/');
  for (const p of parts) {
    if (!COMPONENT.test(p)) throw pvError('PV_ERR_STORE_INVALID', `bad store path component in ${path}`);
  }
  return parts;
}

/** Inverse of `parsePath`. */
export function joinPath(parts: readonly string[]): string {
  return `/${parts.join('/')}`;
}

/** True when `path` is `base` or lies below it. */
export function isAtOrBelow(path: string, base: string): boolean {
  return path === base || base === '/' || path.startsWith(`${base}/`);
}

/** xenstored `perm_for_conn`: dom0 and the owner have all rights, listed domains their entry, others perms[0]. */
export function hasAccess(domid: DomId, node: StoreNode, access: 'read' | 'write'): boolean {
  const perms = node.perms;
  if (domid === DOM0 || perms[0].domid === domid) return true;
  for (let i = 1; i < perms.length; i++) {
    if (perms[i].domid === domid) return perms[i][access];
  }
  return perms[0][access];
}

/** The node at `parts` under `root`, or undefined. */
export function lookup(root: StoreNode, parts: readonly string[]): StoreNode | undefined {
  let node: StoreNode | undefined = root;
  for (let i = 0; i < parts.length && node !== undefined; i++) node = node.children.get(parts[i]);
  return node;
}

/** Gen of the node at `parts`, or -1 when absent (gens start at 0, so absent never matches). */
export function genAt(root: StoreNode, parts: readonly string[]): number {
  return lookup(root, parts)?.gen ?? -1;
}

/** Issues store-wide generation numbers. */
export interface GenCounter {
  next(): number;
}

/**
 * One version of the store being worked on: the live store, or a transaction's private copy.
 * `root` and `counts` are replaced/updated in place; the nodes themselves never change.
 */
export class StoreTree {
  /** When set (inside a transaction) every path an op looks at is recorded for the commit check. */
  accessed: Set<string> | undefined;
  /** Most paths a transaction may record (xenstored `quota-trans-nodes`); Infinity for dom0. */
  accessLimit = Number.POSITIVE_INFINITY;

  constructor(
    public root: StoreNode,
    /** Nodes owned per domain. */
    readonly counts: Map<DomId, number>,
    private readonly _gen: GenCounter,
    private readonly _limits: TreeLimits,
  ) {}

  /** An independent copy (shares the immutable nodes; copies the counters). */
  clone(): StoreTree {
    return new StoreTree(this.root, new Map(this.counts), this._gen, this._limits);
  }

  /** Looks a path up, recording it when inside a transaction. */
  get(parts: readonly string[]): StoreNode | undefined {
    if (this.accessed !== undefined) {
      this.accessed.add(joinPath(parts));
      if (this.accessed.size > this.accessLimit) {
        throw pvError('PV_ERR_STORE_QUOTA', `transaction touched more than ${this.accessLimit} nodes`);
      }
    }
    return lookup(this.root, parts);
  }

  /** A readable node, else PV_ERR_STORE_NOENT / PV_ERR_STORE_PERM. */
  readable(caller: DomId, parts: readonly string[]): StoreNode {
    const node = this.get(parts);
    if (node === undefined) throw pvError('PV_ERR_STORE_NOENT', `${joinPath(parts)} does not exist`);
    if (!hasAccess(caller, node, 'read'))
      throw pvError('PV_ERR_STORE_PERM', `domain ${caller} may not read ${joinPath(parts)}`);
    return node;
  }

  /** Applies one mutation with the caller's rights, appending the changes that fire watches. */
  apply(caller: DomId, m: StoreMutation, changes: StoreChange[]): void {
    const path = joinPath(m.parts);
    const node = this.get(m.parts);
    if (node !== undefined && !hasAccess(caller, node, 'write')) {
      throw pvError('PV_ERR_STORE_PERM', `domain ${caller} may not modify ${path}`);
    }
    if (m.op === 'rm') {
      if (m.parts.length === 0) throw pvError('PV_ERR_STORE_INVALID', 'the root cannot be removed');
      if (node === undefined) throw pvError('PV_ERR_STORE_NOENT', `${path} does not exist`);
      this._account(node, -1);
      this._put(m.parts, undefined);
      changes.push({ path, removed: node });
      return;
    }
    if (m.op === 'setPerms') {
      if (node === undefined) throw pvError('PV_ERR_STORE_NOENT', `${path} does not exist`);
      this._setPerms(caller, m.parts, node, m.perms, changes);
      return;
    }
    if (node !== undefined) {
      // mkdir on an existing node succeeds without a change, as in xenstored.
      if (m.op === 'mkdir') return;
      const next: StoreNode = { ...node, value: m.value, gen: this._gen.next() };
      this._put(m.parts, next);
      changes.push({ path, node: next });
      return;
    }
    const created = this._create(caller, m.parts, m.op === 'write' ? m.value : '');
    changes.push({ path, node: created });
  }

  /** Replaces the owner of every node `domid` owns with dom0 and drops its perm entries (XSA-322). */
  disown(domid: DomId): void {
    const walk = (node: StoreNode): StoreNode => {
      let children: Map<string, StoreNode> | undefined;
      for (const [name, child] of node.children) {
        const next = walk(child);
        if (next === child) continue;
        children ??= new Map(node.children);
        children.set(name, next);
      }
      const touches = node.perms.some((p) => p.domid === domid);
      if (!touches && children === undefined) return node;
      const perms = touches
        ? [{ ...node.perms[0], domid: node.perms[0].domid === domid ? DOM0 : node.perms[0].domid }].concat(
            node.perms.slice(1).filter((p) => p.domid !== domid),
          )
        : node.perms;
      return { ...node, perms, children: children ?? node.children, gen: touches ? this._gen.next() : node.gen };
    };
    this.root = walk(this.root);
    const owned = this.counts.get(domid) ?? 0;
    this.counts.delete(domid);
    this._bump(DOM0, owned);
  }

  private _create(caller: DomId, parts: readonly string[], value: string): StoreNode {
    // Find the nearest existing ancestor: creating below it needs write permission on it.
    let depth = parts.length - 1;
    let ancestor = this.get(parts.slice(0, depth));
    while (ancestor === undefined) {
      depth--;
      ancestor = this.get(parts.slice(0, depth));
    }
    if (!hasAccess(caller, ancestor, 'write')) {
      throw pvError('PV_ERR_STORE_PERM', `domain ${caller} may not create ${joinPath(parts)}`);
    }
    // Inherit the ancestor's perms; unprivileged domains own what they create (xenstored construct_node).
    const owner = caller === DOM0 ? ancestor.perms[0].domid : caller;
    const perms = [{ ...ancestor.perms[0], domid: owner }, ...ancestor.perms.slice(1)];
    const count = parts.length - depth;
    if (caller !== DOM0 && (this.counts.get(owner) ?? 0) + count > this._limits.nodes) {
      throw pvError('PV_ERR_STORE_QUOTA', `domain ${caller} would own more than ${this._limits.nodes} nodes`);
    }
    const gen = this._gen.next();
    const leaf: StoreNode = { value, perms, children: new Map(), gen };
    let chain = leaf;
    for (let i = parts.length - 1; i > depth; i--) {
      chain = { value: '', perms, children: new Map([[parts[i], chain]]), gen };
    }
    this._put(parts.slice(0, depth + 1), chain);
    this._bump(owner, count);
    return leaf;
  }

  private _setPerms(
    caller: DomId,
    parts: readonly string[],
    node: StoreNode,
    perms: readonly StorePerm[],
    changes: StoreChange[],
  ): void {
    const path = joinPath(parts);
    const owner = node.perms[0].domid;
    if (caller !== DOM0 && caller !== owner) {
      throw pvError('PV_ERR_STORE_PERM', `only the owner or dom0 may set the permissions of ${path}`);
    }
    if (perms.length === 0) throw pvError('PV_ERR_STORE_INVALID', 'a permission list needs at least the owner');
    if (caller !== DOM0) {
      // Giving a node away would let a guest dodge its node quota (xenstored refuses it too).
      if (perms[0].domid !== owner) throw pvError('PV_ERR_STORE_PERM', 'only dom0 may change the owner of a node');
      if (perms.length > this._limits.perms) {
        throw pvError('PV_ERR_STORE_QUOTA', `more than ${this._limits.perms} permission entries`);
      }
    }
    const next: StoreNode = { ...node, perms: perms.map((p) => ({ ...p })), gen: this._gen.next() };
    this._put(parts, next);
    if (perms[0].domid !== owner) {
      this._bump(owner, -1);
      this._bump(perms[0].domid, 1);
    }
    changes.push({ path, node: next });
  }

  /** Adds `sign` to the owner count of every node of a subtree. */
  private _account(node: StoreNode, sign: number): void {
    this._bump(node.perms[0].domid, sign);
    for (const child of node.children.values()) this._account(child, sign);
  }

  private _bump(domid: DomId, delta: number): void {
    const n = (this.counts.get(domid) ?? 0) + delta;
    if (n === 0) this.counts.delete(domid);
    else this.counts.set(domid, n);
  }

  /** Path-copies `node` (or its removal) into the tree; the parent must exist. */
  private _put(parts: readonly string[], node: StoreNode | undefined): void {
    if (parts.length === 0) {
      if (node === undefined) throw pvError('PV_ERR_STORE_INVALID', 'the root cannot be removed');
      this.root = node;
      return;
    }
    const gen = this._gen;
    const rebuild = (at: StoreNode, i: number): StoreNode => {
      const name = parts[i];
      const children = new Map(at.children);
      if (i === parts.length - 1) {
        const had = children.has(name);
        if (node === undefined) children.delete(name);
        else children.set(name, node);
        // Only a change in the set of children is a change of the parent (directory listings).
        return { ...at, children, gen: had === (node !== undefined) ? at.gen : gen.next() };
      }
      const child = at.children.get(name);
      if (child === undefined) throw pvError('PV_ERR_STORE_NOENT', `${joinPath(parts.slice(0, i + 1))} vanished`);
      children.set(name, rebuild(child, i + 1));
      return { ...at, children };
    };
    this.root = rebuild(this.root, 0);
  }
}
