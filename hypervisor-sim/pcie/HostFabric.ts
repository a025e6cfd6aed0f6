/**
 * One host's PCIe tree, indexed for routing: each node's parent link and depth below the root
 * complex (so the path between two nodes climbs to their lowest common ancestor and descends, as
 * TLPs do: peer-to-peer between two endpoints under one switch turns at the switch, never reaching
 * the root), and the host's address map (RAM, BARs, NTB apertures) for address decoding.
 *
 * INVARIANT: built only from a host that `validateCluster` returned: ids are unique, the links
 * form a tree rooted at `rc`, every BAR and aperture has a base, and no two regions overlap.
 */

import type { HostSpec, LinkHop, LinkSpec, NodeSpec } from './Types.js';

/** A decoded address: which region of the host's map it falls in, and where that region ends. */
export type Decoded =
  | { readonly kind: 'ram'; readonly base: number; readonly size: number }
  | { readonly kind: 'bar'; readonly node: string; readonly bar: number; readonly base: number; readonly size: number }
  | { readonly kind: 'aperture'; readonly node: string; readonly base: number; readonly size: number };

interface TreeEntry {
  /** Parent node id ('' for the root complex). */
  readonly parent: string;
  /** Index of the link to the parent (-1 for the root complex). */
  readonly link: number;
  readonly depth: number;
}

/** The index of one host (see the file comment). */
export class HostFabric {
  readonly name: string;
  readonly ramBytes: number;
  /** Id of the root complex (host RAM's node). */
  readonly rc: string;
  private readonly _nodes = new Map<string, NodeSpec>();
  private readonly _links: readonly LinkSpec[];
  private readonly _tree = new Map<string, TreeEntry>();
  /** BARs and apertures, sorted by base. */
  private readonly _regions: Decoded[] = [];

  constructor(host: HostSpec) {
    this.name = host.name;
    this.ramBytes = host.ramBytes;
    this._links = host.links;
    for (const n of host.nodes) this._nodes.set(n.id, n);
    this.rc = host.nodes.find((n) => n.kind === 'rc')!.id;
    this._buildTree();
    for (const n of host.nodes) {
      // INVARIANT: validateCluster assigned every base.
      if (n.kind === 'endpoint') {
        n.bars.forEach((b, i) => {
          this._regions.push({ kind: 'bar', node: n.id, bar: i, base: b.base!, size: b.size });
        });
      } else if (n.kind === 'ntb') {
        this._regions.push({ kind: 'aperture', node: n.id, base: n.aperture.base!, size: n.aperture.size });
      }
    }
    this._regions.sort((x, y) => x.base - y.base);
  }

  /** The node with id `id`, if any. */
  node(id: string): NodeSpec | undefined {
    return this._nodes.get(id);
  }

  /** Every node. */
  nodes(): NodeSpec[] {
    return [...this._nodes.values()];
  }

  /** The region `addr` falls in, or null when it decodes to nothing. */
  decode(addr: number): Decoded | null {
    if (addr < this.ramBytes) return { kind: 'ram', base: 0, size: this.ramBytes };
    // Binary search for the last region whose base ≤ addr (regions never overlap).
    let lo = 0;
    let hi = this._regions.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this._regions[mid].base <= addr) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return null;
    const r = this._regions[found];
    return addr - r.base < r.size ? r : null;
  }

  /** Links from node `from` to node `to`, in order of traversal ([] when from === to). */
  path(from: string, to: string): LinkHop[] {
    let a = this._tree.get(from)!;
    let b = this._tree.get(to)!;
    let x = from;
    let y = to;
    const up: LinkHop[] = [];
    const down: LinkHop[] = [];
    // INVARIANT: both ids are nodes of this tree; parents strictly decrease depth, so this ends.
    while (x !== y) {
      if (a.depth >= b.depth) {
        up.push(this._hop(a.link, x, a.parent));
        x = a.parent;
        a = this._tree.get(x)!;
      } else {
        down.push(this._hop(b.link, b.parent, y));
        y = b.parent;
        b = this._tree.get(y)!;
      }
    }
    return up.concat(down.reverse());
  }

  /** Depth of node `id` below the root complex (0 for the rc). */
  depth(id: string): number {
    return this._tree.get(id)!.depth;
  }

  private _hop(link: number, from: string, to: string): LinkHop {
    const l = this._links[link];
    const hop: { -readonly [K in keyof LinkHop]: LinkHop[K] } = { kind: 'link', host: this.name, link, from, to };
    if (l.latencyNs !== undefined) hop.latencyNs = l.latencyNs;
    if (l.bytesPerNs !== undefined) hop.bytesPerNs = l.bytesPerNs;
    if (l.maxPayload !== undefined) hop.maxPayload = l.maxPayload;
    return hop;
  }

  /** Breadth-first from the root complex: parent link and depth of every node. */
  private _buildTree(): void {
    const adj = new Map<string, { peer: string; link: number }[]>();
    for (const id of this._nodes.keys()) adj.set(id, []);
    this._links.forEach((l, i) => {
      adj.get(l.a)!.push({ peer: l.b, link: i });
      adj.get(l.b)!.push({ peer: l.a, link: i });
    });
    this._tree.set(this.rc, { parent: '', link: -1, depth: 0 });
    const queue = [this.rc];
    for (let q = 0; q < queue.length; q++) {
      const id = queue[q];
      const depth = this._tree.get(id)!.depth + 1;
      for (const { peer, link } of adj.get(id)!) {
        if (this._tree.has(peer)) continue;
        this._tree.set(peer, { parent: id, link, depth });
        queue.push(peer);
      }
    }
  }
}
