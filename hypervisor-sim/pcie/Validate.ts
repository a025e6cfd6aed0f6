/**
 * Checks a cluster description and enumerates it (assigns every BAR without a base), the one
 * boundary where description data is trusted: every later step relies on what this checks. Each
 * error is PV_ERR_PCIE_BAD_TOPOLOGY whose message starts with the path of the offending field
 * (`hosts[0].links[2].b: names no node 'sw9'`), so a scenario author can find it.
 *
 * Rules, per host: a unique name; RAM a positive safe integer; node ids unique; exactly one `rc`;
 * every link joins two distinct existing nodes (no dangling link); the links form a tree rooted at
 * `rc` (a link closing a cycle and a node not connected to `rc` are both refused, as PCIe is a
 * tree); endpoints and NTB adapters are leaves; BARs are powers of two ≥ 16 B, naturally aligned,
 * and RAM, BARs and apertures never overlap. Per NTB: two sides on two different hosts, each an
 * `ntb` node used by no other NTB; initial windows inside their side's aperture and disjoint.
 */

import { pvError } from '../../protocol/errors.js';
import type { BarSpec, ClusterSpec, ConfigSpaceSpec, HostSpec, LinkSpec, NodeSpec, NtbSpec } from './Types.js';
import { hex } from './WindowTable.js';

/** BARs are assigned from here up when a host gives no mmioBase: RAM rounded up to this. */
export const MMIO_ALIGN = 0x1000_0000;
/** Default size of each host's window table. */
export const DEFAULT_MAX_WINDOWS = 64;
/** Default loop guard. */
export const DEFAULT_MAX_NTB_CROSSINGS = 4;

const KINDS = new Set(['rc', 'switch', 'endpoint', 'ntb']);

function bad(field: string, message: string): Error {
  return pvError('PV_ERR_PCIE_BAD_TOPOLOGY', `${field}: ${message}`);
}

function isSafe(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}

function isPow2(v: number): boolean {
  return v > 0 && 2 ** Math.round(Math.log2(v)) === v;
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}

/** A claimed range of a host's address space, with the field that claimed it. */
interface Claim {
  readonly base: number;
  readonly size: number;
  readonly field: string;
}

/**
 * Validates `spec` and returns a normalised copy: every BAR and aperture has its base, every
 * host its mmioBase, and the limits their defaults. The copy is plain JSON (post it to workers).
 */
export function validateCluster(spec: ClusterSpec): ClusterSpec {
  if (spec === null || typeof spec !== 'object') throw bad('cluster', 'must be an object');
  if (!Array.isArray(spec.hosts) || spec.hosts.length === 0) throw bad('hosts', 'must be a non-empty array');
  if (!Array.isArray(spec.ntbs)) throw bad('ntbs', 'must be an array');
  const maxWindowsPerHost = spec.maxWindowsPerHost ?? DEFAULT_MAX_WINDOWS;
  if (!isSafe(maxWindowsPerHost, 1) || maxWindowsPerHost > 4096) throw bad('maxWindowsPerHost', 'must be 1 … 4096');
  const maxNtbCrossings = spec.maxNtbCrossings ?? DEFAULT_MAX_NTB_CROSSINGS;
  if (!isSafe(maxNtbCrossings, 0) || maxNtbCrossings > 64) throw bad('maxNtbCrossings', 'must be 0 … 64');
  const names = new Set<string>();
  const hosts = spec.hosts.map((h, i) => {
    const f = `hosts[${i}]`;
    if (h === null || typeof h !== 'object') throw bad(f, 'must be an object');
    if (typeof h.name !== 'string' || h.name === '') throw bad(`${f}.name`, 'must be a non-empty string');
    if (names.has(h.name)) throw bad(`${f}.name`, `duplicate host '${h.name}'`);
    names.add(h.name);
    return validateHost(h, f);
  });
  const windowsPerHost = new Map<string, number>();
  const usedNtbNodes = new Map<string, string>();
  const ntbNames = new Set<string>();
  spec.ntbs.forEach((n, k) => {
    validateNtb(n, `ntbs[${k}]`, hosts, ntbNames, usedNtbNodes, windowsPerHost);
  });
  for (const [host, count] of windowsPerHost) {
    if (count > maxWindowsPerHost) throw bad('maxWindowsPerHost', `host '${host}' starts with ${count} windows`);
  }
  return { hosts, ntbs: spec.ntbs.map((n) => structuredClone(n)), maxWindowsPerHost, maxNtbCrossings };
}

function validateConfig(c: ConfigSpaceSpec | undefined, f: string): void {
  if (c === undefined || c === null || typeof c !== 'object') throw bad(f, 'must be an object');
  if (!isSafe(c.vendorId, 0) || c.vendorId > 0xffff) throw bad(`${f}.vendorId`, 'must be a 16-bit integer');
  if (!isSafe(c.deviceId, 0) || c.deviceId > 0xffff) throw bad(`${f}.deviceId`, 'must be a 16-bit integer');
  if (!isSafe(c.classCode, 0) || c.classCode > 0xffffff) throw bad(`${f}.classCode`, 'must be a 24-bit integer');
}

function validateBar(b: BarSpec, f: string): void {
  if (b === null || typeof b !== 'object') throw bad(f, 'must be an object');
  if (!isSafe(b.size, 16) || !isPow2(b.size)) throw bad(`${f}.size`, 'must be a power of two ≥ 16');
  if (b.base !== undefined && (!isSafe(b.base, 0) || b.base % b.size !== 0)) {
    throw bad(`${f}.base`, `must be a safe integer aligned to the BAR size ${hex(b.size)}`);
  }
}

function validateHost(h: HostSpec, f: string): HostSpec {
  if (!isSafe(h.ramBytes, 1)) throw bad(`${f}.ramBytes`, 'must be a positive safe integer');
  const mmioBase = h.mmioBase ?? alignUp(h.ramBytes, MMIO_ALIGN);
  if (!isSafe(mmioBase, h.ramBytes)) throw bad(`${f}.mmioBase`, 'must be a safe integer ≥ ramBytes');
  if (!Array.isArray(h.nodes)) throw bad(`${f}.nodes`, 'must be an array');
  if (!Array.isArray(h.links)) throw bad(`${f}.links`, 'must be an array');
  const index = new Map<string, number>();
  let rcs = 0;
  h.nodes.forEach((n, k) => {
    const nf = `${f}.nodes[${k}]`;
    if (n === null || typeof n !== 'object') throw bad(nf, 'must be an object');
    if (typeof n.id !== 'string' || n.id === '') throw bad(`${nf}.id`, 'must be a non-empty string');
    if (index.has(n.id)) throw bad(`${nf}.id`, `duplicate node '${n.id}'`);
    index.set(n.id, k);
    if (!KINDS.has(n.kind)) throw bad(`${nf}.kind`, `unknown kind '${String(n.kind)}'`);
    if (n.kind === 'rc') rcs++;
    if (n.kind === 'endpoint') {
      validateConfig(n.config, `${nf}.config`);
      if (!Array.isArray(n.bars)) throw bad(`${nf}.bars`, 'must be an array');
      n.bars.forEach((b, j) => {
        validateBar(b, `${nf}.bars[${j}]`);
      });
    }
    if (n.kind === 'ntb') {
      if (n.config !== undefined) validateConfig(n.config, `${nf}.config`);
      validateBar(n.aperture, `${nf}.aperture`);
    }
  });
  if (rcs !== 1) throw bad(`${f}.nodes`, `needs exactly one 'rc' node, has ${rcs}`);
  validateTree(h, f, index);
  const nodes = enumerate(h, f, mmioBase);
  return { name: h.name, ramBytes: h.ramBytes, mmioBase, nodes, links: h.links.map((l) => ({ ...l })) };
}

function validateLinkParams(l: LinkSpec, lf: string): void {
  if (l.latencyNs !== undefined && !(Number.isFinite(l.latencyNs) && l.latencyNs >= 0)) {
    throw bad(`${lf}.latencyNs`, 'must be a finite number ≥ 0');
  }
  if (l.bytesPerNs !== undefined && !(Number.isFinite(l.bytesPerNs) && l.bytesPerNs > 0)) {
    throw bad(`${lf}.bytesPerNs`, 'must be a finite number > 0');
  }
  if (l.maxPayload !== undefined && (!isSafe(l.maxPayload, 128) || l.maxPayload > 4096 || !isPow2(l.maxPayload))) {
    throw bad(`${lf}.maxPayload`, 'must be a power of two, 128 … 4096');
  }
}

/** Links are a tree rooted at rc: union-find refuses the link that closes a cycle. */
function validateTree(h: HostSpec, f: string, index: Map<string, number>): void {
  const parent = h.nodes.map((_, k) => k);
  const find = (k: number): number => {
    while (parent[k] !== k) {
      parent[k] = parent[parent[k]];
      k = parent[k];
    }
    return k;
  };
  const degree = new Array<number>(h.nodes.length).fill(0);
  h.links.forEach((l, j) => {
    const lf = `${f}.links[${j}]`;
    if (l === null || typeof l !== 'object') throw bad(lf, 'must be an object');
    const a = index.get(l.a);
    if (a === undefined) throw bad(`${lf}.a`, `names no node '${String(l.a)}' (dangling link)`);
    const b = index.get(l.b);
    if (b === undefined) throw bad(`${lf}.b`, `names no node '${String(l.b)}' (dangling link)`);
    if (a === b) throw bad(lf, `links node '${l.a}' to itself`);
    validateLinkParams(l, lf);
    const ra = find(a);
    const rb = find(b);
    if (ra === rb) throw bad(lf, `closes a cycle between '${l.a}' and '${l.b}' (a PCIe fabric is a tree)`);
    parent[ra] = rb;
    degree[a]++;
    degree[b]++;
  });
  const rc = find(h.nodes.findIndex((n) => n.kind === 'rc'));
  h.nodes.forEach((n, k) => {
    if (find(k) !== rc) throw bad(`${f}.nodes[${k}]`, `'${n.id}' is not connected to the root complex`);
    if ((n.kind === 'endpoint' || n.kind === 'ntb') && degree[k] > 1) {
      throw bad(`${f}.nodes[${k}]`, `${n.kind} '${n.id}' must be a leaf (has ${degree[k]} links)`);
    }
  });
}

/** Assigns BARs without a base (natural alignment, in node order) and refuses any overlap. */
function enumerate(h: HostSpec, f: string, mmioBase: number): NodeSpec[] {
  const claims: Claim[] = [{ base: 0, size: h.ramBytes, field: `${f}.ramBytes` }];
  const overlap = (base: number, size: number): Claim | undefined =>
    claims.find((c) => base < c.base + c.size && c.base < base + size);
  const claim = (b: BarSpec, bf: string): BarSpec => {
    if (b.base !== undefined) {
      const o = overlap(b.base, b.size);
      if (o !== undefined) throw bad(`${bf}.base`, `[${hex(b.base)}, +${hex(b.size)}) overlaps ${o.field}`);
      claims.push({ base: b.base, size: b.size, field: bf });
      return { ...b };
    }
    return b;
  };
  // Explicit bases first (they are fixed), then the rest from mmioBase up.
  const fixed = h.nodes.map((n, k) => {
    const nf = `${f}.nodes[${k}]`;
    if (n.kind === 'endpoint') return { ...n, bars: n.bars.map((b, j) => claim(b, `${nf}.bars[${j}]`)) };
    if (n.kind === 'ntb') return { ...n, aperture: claim(n.aperture, `${nf}.aperture`) };
    return { ...n };
  });
  let cursor = mmioBase;
  const place = (b: BarSpec, bf: string): BarSpec => {
    if (b.base !== undefined) return b;
    let base = alignUp(cursor, b.size);
    for (let o = overlap(base, b.size); o !== undefined; o = overlap(base, b.size)) {
      base = alignUp(o.base + o.size, b.size);
    }
    if (!Number.isSafeInteger(base + b.size)) throw bad(bf, 'no room left in the address space');
    claims.push({ base, size: b.size, field: bf });
    cursor = base + b.size;
    return { size: b.size, base };
  };
  return fixed.map((n, k): NodeSpec => {
    const nf = `${f}.nodes[${k}]`;
    if (n.kind === 'endpoint') return { ...n, bars: n.bars.map((b, j) => place(b, `${nf}.bars[${j}]`)) };
    if (n.kind === 'ntb') return { ...n, aperture: place(n.aperture, `${nf}.aperture`) };
    return n;
  });
}

function validateNtb(
  n: NtbSpec,
  f: string,
  hosts: HostSpec[],
  ntbNames: Set<string>,
  usedNtbNodes: Map<string, string>,
  windowsPerHost: Map<string, number>,
): void {
  if (n === null || typeof n !== 'object') throw bad(f, 'must be an object');
  if (typeof n.name !== 'string' || n.name === '') throw bad(`${f}.name`, 'must be a non-empty string');
  if (ntbNames.has(n.name)) throw bad(`${f}.name`, `duplicate NTB '${n.name}'`);
  ntbNames.add(n.name);
  if (!Array.isArray(n.sides) || n.sides.length !== 2) throw bad(`${f}.sides`, 'must hold exactly two sides');
  n.sides.forEach((s, i) => {
    const sf = `${f}.sides[${i}]`;
    const host = hosts.find((h) => h.name === s?.host);
    if (host === undefined) throw bad(`${sf}.host`, `names no host '${String(s?.host)}'`);
    if (i === 1 && s.host === n.sides[0].host) throw bad(`${sf}.host`, 'both sides are on the same host');
    const node = host.nodes.find((x) => x.id === s.node);
    if (node === undefined) throw bad(`${sf}.node`, `names no node '${String(s.node)}' on '${s.host}'`);
    if (node.kind !== 'ntb') throw bad(`${sf}.node`, `'${s.node}' is a ${node.kind}, not an ntb adapter`);
    const key = `${s.host}/${s.node}`;
    const other = usedNtbNodes.get(key);
    if (other !== undefined) throw bad(`${sf}.node`, `'${key}' already belongs to NTB '${other}'`);
    usedNtbNodes.set(key, n.name);
    const ap = node.aperture as Required<BarSpec>;
    const seen: { base: number; size: number }[] = [];
    (s.windows ?? []).forEach((w, j) => {
      const wf = `${sf}.windows[${j}]`;
      if (!isSafe(w?.base, 0) || !isSafe(w.size, 1) || !isSafe(w.peerBase, 0)) {
        throw bad(wf, 'base, size and peerBase must be safe integers (size ≥ 1)');
      }
      if (w.base < ap.base || w.base + w.size > ap.base + ap.size) {
        throw bad(wf, `[${hex(w.base)}, +${hex(w.size)}) leaves the aperture [${hex(ap.base)}, +${hex(ap.size)})`);
      }
      if (!Number.isSafeInteger(w.peerBase + w.size)) throw bad(`${wf}.peerBase`, 'window end passes 2^53');
      const o = seen.findIndex((x) => w.base < x.base + x.size && x.base < w.base + w.size);
      if (o >= 0) throw bad(wf, `overlaps ${sf}.windows[${o}]`);
      seen.push(w);
    });
    windowsPerHost.set(s.host, (windowsPerHost.get(s.host) ?? 0) + seen.length);
  });
}
