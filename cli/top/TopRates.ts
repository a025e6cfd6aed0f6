/**
 * `pvio top`'s arithmetic: two cumulative snapshots (Snapshot.ts) → rows of rates. A ring's two
 * ends (the frontend's counters and the backend's) become one row: requests and responses per
 * second as the backend consumed and produced them, notifies of both ends, the share of pushes
 * whose notify the peer's event index suppressed, the backend's mean batch and the frontend's
 * full-ring stalls. A counter that went backwards (a domain id reused) counts from zero.
 */

import type {
  DomainSnapshot,
  HostSnapshot,
  MonitorSnapshot,
  RingSnapshot,
} from '../../hypervisor-sim/monitor/Snapshot.js';

/** One domain's row. */
export interface DomainRow {
  readonly host: string;
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  readonly cpuPct: number;
  readonly notifiesPerSec: number;
  readonly mapsPerSec: number;
  readonly copiesPerSec: number;
  readonly copyMiBPerSec: number;
  /** Rings this domain is an end of. */
  readonly rings: number;
  /** The cumulative counters, for the details view. */
  readonly totals: DomainSnapshot;
}

/** One ring's row (both ends). */
export interface RingRow {
  readonly host: string;
  readonly kind: string;
  readonly backend: number;
  readonly frontend: number;
  readonly reqPerSec: number;
  readonly rspPerSec: number;
  readonly notifiesPerSec: number;
  /** Suppressed / (notified + suppressed) pushes in the interval; NaN with no push. */
  readonly suppressedShare: number;
  /** Requests per non-empty batch the backend took in the interval; NaN with none. */
  readonly batch: number;
  readonly stallsPerSec: number;
}

/** One device's row. */
export interface DeviceRow {
  readonly host: string;
  readonly name: string;
  readonly kind: string;
  readonly owner: number;
  readonly opsPerSec: number;
  readonly dmaMiBPerSec: number;
  readonly doorbellsPerSec: number;
  readonly faults: number;
  readonly queueDepth: number;
  /** PCIe hops through the fabric per second (a borrowed device; 0 for local ones). */
  readonly hopsPerSec: number;
}

/** Everything one frame shows. */
export interface TopRows {
  readonly seconds: number;
  readonly domains: DomainRow[];
  readonly rings: RingRow[];
  readonly devices: DeviceRow[];
}

const MIB = 1024 * 1024;

/** Increase of a cumulative counter (0 when it went backwards: a new domain or device). */
function delta(cur: number, prev: number | undefined): number {
  if (prev === undefined || cur < prev) return cur;
  return cur - prev;
}

function ringKey(host: string, r: RingSnapshot): string {
  const [b, f] = r.end === 'back' ? [r.owner, r.peer] : [r.peer, r.owner];
  return `${host}|${r.kind}|${b}|${f}`;
}

/** Sums the ring ends of `h` by ring (kind, backend, frontend) and end. */
function ringEnds(h: HostSnapshot): Map<string, { back?: RingSnapshot; front?: RingSnapshot }> {
  const out = new Map<string, { back?: RingSnapshot; front?: RingSnapshot }>();
  for (const r of h.rings) {
    const k = ringKey(h.name, r);
    const e = out.get(k) ?? {};
    e[r.end] = r;
    out.set(k, e);
  }
  return out;
}

/** Rates between `prev` (undefined: the first frame, totals over the process's life) and `cur`. */
export function topRows(prev: MonitorSnapshot | undefined, cur: MonitorSnapshot): TopRows {
  const seconds = prev === undefined ? 1 : Math.max(1e-3, (cur.t - prev.t) / 1000);
  const rate = (c: number, p: number | undefined) => (prev === undefined ? 0 : delta(c, p) / seconds);
  const domains: DomainRow[] = [];
  const rings: RingRow[] = [];
  const devices: DeviceRow[] = [];
  for (const h of cur.hosts) {
    const ph = prev?.hosts.find((x) => x.name === h.name);
    const ringCount = new Map<number, number>();
    for (const r of h.rings) ringCount.set(r.owner, (ringCount.get(r.owner) ?? 0) + 1);
    for (const d of h.domains) {
      const p = ph?.domains.find((x) => x.domid === d.domid && x.name === d.name);
      domains.push({
        host: h.name,
        domid: d.domid,
        name: d.name,
        state: d.state,
        cpuPct: prev === undefined ? 0 : (delta(d.cpuNs, p?.cpuNs) / (seconds * 1e9)) * 100,
        notifiesPerSec: rate(d.notifies, p?.notifies),
        mapsPerSec: rate(d.grantMaps, p?.grantMaps),
        copiesPerSec: rate(d.grantCopies, p?.grantCopies),
        copyMiBPerSec: rate(d.grantCopyBytes, p?.grantCopyBytes) / MIB,
        rings: ringCount.get(d.domid) ?? 0,
        totals: d,
      });
    }
    const prevEnds = ph === undefined ? undefined : ringEnds(ph);
    for (const [key, e] of ringEnds(h)) {
      const pe = prevEnds?.get(key);
      const any = (e.back ?? e.front) as RingSnapshot;
      const [backend, frontend] = any.end === 'back' ? [any.owner, any.peer] : [any.peer, any.owner];
      const sum = (f: 'notifies' | 'suppressed', ends: typeof e | undefined) =>
        (ends?.back?.[f] ?? 0) + (ends?.front?.[f] ?? 0);
      const notified = delta(sum('notifies', e), pe === undefined ? undefined : sum('notifies', pe));
      const suppressed = delta(sum('suppressed', e), pe === undefined ? undefined : sum('suppressed', pe));
      const batches = delta(e.back?.batches ?? 0, pe?.back?.batches);
      const items = delta(e.back?.batchedItems ?? 0, pe?.back?.batchedItems);
      // The backend's end says what was served; a ring seen only from the front uses the front's.
      const served = e.back ?? e.front;
      const pserved = e.back !== undefined ? pe?.back : pe?.front;
      rings.push({
        host: h.name,
        kind: any.kind,
        backend,
        frontend,
        reqPerSec: rate(served?.requests ?? 0, pserved?.requests),
        rspPerSec: rate(served?.responses ?? 0, pserved?.responses),
        notifiesPerSec: prev === undefined ? 0 : notified / seconds,
        suppressedShare: notified + suppressed === 0 ? Number.NaN : suppressed / (notified + suppressed),
        batch: batches === 0 ? Number.NaN : items / batches,
        stallsPerSec: rate(e.front?.fullStalls ?? 0, pe?.front?.fullStalls),
      });
    }
    for (const d of h.devices) {
      const p = ph?.devices.find((x) => x.name === d.name);
      devices.push({
        host: h.name,
        name: d.name,
        kind: d.kind,
        owner: d.owner,
        opsPerSec: rate(d.ops, p?.ops),
        dmaMiBPerSec: rate(d.dmaBytes, p?.dmaBytes) / MIB,
        doorbellsPerSec: rate(d.doorbells, p?.doorbells),
        faults: d.faults,
        queueDepth: d.queueDepth ?? 0,
        hopsPerSec: rate(d.fabricHops ?? 0, p?.fabricHops),
      });
    }
  }
  return { seconds, domains, rings, devices };
}
