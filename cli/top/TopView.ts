/**
 * `pvio top`'s screen as text: a pure function from rows (TopRates.ts) and the viewer's state to
 * at most `height` lines of at most `width` characters, so the same frame can be written to a
 * terminal, printed as plain lines, or parsed by @xterm/headless in a test. Layout, top to bottom:
 * a title, the domains (one row each, the selected one marked `>`), the rings (both ends of each
 * in one row), the devices, and a key line. With `details` the domain table gives way to the
 * selected domain's totals, its rings and its devices. Sections shrink to fit; what does not fit
 * is counted (`… 3 more`), never drawn past the last line.
 */

import type { MonitorSnapshot } from '../../hypervisor-sim/monitor/Snapshot.js';
import type { DomainRow, RingRow, TopRows } from './TopRates.js';

/** Sort keys, in the order `s` cycles through them. */
export const SORT_KEYS = ['cpu', 'id', 'name', 'notify'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

/** What the viewer chose. */
export interface TopState {
  sort: SortKey;
  /** Index of the selected domain in the sorted list (negative: none). */
  selected: number;
  details: boolean;
  /** Shown after the title (e.g. "run finished"). */
  note?: string;
}

/** Formats a rate: one decimal under 10, whole numbers under a million, then M. */
export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 10) return Math.round(n).toString();
  return n.toFixed(1);
}

/** Pads or cuts `s` to exactly `w` characters. */
function padCut(s: string, w: number): string {
  return s.length > w ? s.slice(0, w) : s.padEnd(w);
}

const r = (s: string, w: number) => (s.length >= w ? s.slice(0, w) : s.padStart(w));
const l = (s: string, w: number) => padCut(s, w);

/** Domains in the order of `sort` (ties by host, then id). */
export function sortDomains(rows: readonly DomainRow[], sort: SortKey): DomainRow[] {
  const by: Record<SortKey, (a: DomainRow, b: DomainRow) => number> = {
    cpu: (a, b) => b.cpuPct - a.cpuPct,
    id: () => 0,
    name: (a, b) => a.name.localeCompare(b.name),
    notify: (a, b) => b.notifiesPerSec - a.notifiesPerSec,
  };
  return [...rows].sort((a, b) => by[sort](a, b) || a.host.localeCompare(b.host) || a.domid - b.domid);
}

const DOMAIN_HEAD = ` ${r('ID', 4)} ${l('NAME', 14)} ${l('STATE', 9)}${r('CPU%', 7)}${r('NOTIFY/s', 10)}${r('MAPS/s', 9)}${r('COPIES/s', 10)}${r('COPY MiB/s', 11)}`;
const RING_HEAD = `${l('RING', 11)} ${l('BACK←FRONT', 10)}${r('REQ/s', 9)}${r('RSP/s', 9)}${r('NOTIFY/s', 10)}${r('SUPPR%', 8)}${r('BATCH', 7)}${r('STALL/s', 9)}`;
const DEVICE_HEAD = `${l('DEVICE', 9)} ${l('KIND', 9)}${r('OWNER', 6)}${r('OPS/s', 9)}${r('DMA MiB/s', 10)}${r('DOORBELL/s', 11)}${r('QDEPTH', 7)}${r('HOPS/s', 9)}${r('FAULTS', 7)}`;

function domainLine(d: DomainRow, selected: boolean, multiHost: boolean): string {
  const name = multiHost ? `${d.host}/${d.name}` : d.name;
  return `${selected ? '>' : ' '}${r(String(d.domid), 4)} ${l(name, 14)} ${l(d.state, 9)}${r(d.cpuPct.toFixed(1), 7)}${r(fmtRate(d.notifiesPerSec), 10)}${r(fmtRate(d.mapsPerSec), 9)}${r(fmtRate(d.copiesPerSec), 10)}${r(d.copyMiBPerSec.toFixed(1), 11)}`;
}

function ringLine(x: RingRow): string {
  const share = Number.isNaN(x.suppressedShare) ? '-' : `${(x.suppressedShare * 100).toFixed(1)}%`;
  const batch = Number.isNaN(x.batch) ? '-' : x.batch.toFixed(1);
  return `${l(x.kind, 11)} ${l(`${x.backend}←${x.frontend}`, 10)}${r(fmtRate(x.reqPerSec), 9)}${r(fmtRate(x.rspPerSec), 9)}${r(fmtRate(x.notifiesPerSec), 10)}${r(share, 8)}${r(batch, 7)}${r(fmtRate(x.stallsPerSec), 9)}`;
}

/**
 * Appends a section: heading, then as many rows as `room` allows (the last says how many did not
 * fit); nothing at all for no rows.
 */
function section(out: string[], heading: string, rows: string[], room: number): void {
  if (room < 2 || rows.length === 0) return;
  out.push(heading);
  const space = room - 1;
  if (rows.length <= space) {
    out.push(...rows);
    return;
  }
  out.push(...rows.slice(0, space - 1), `  … ${rows.length - (space - 1)} more`);
}

/** The frame; see the file comment. */
export function renderTop(rows: TopRows, snap: MonitorSnapshot, st: TopState, width: number, height: number): string[] {
  const hosts = [...new Set(snap.hosts.map((h) => h.name))];
  const doms = sortDomains(rows.domains, st.sort);
  // A negative selection selects nothing (plain output).
  const sel = doms.length === 0 || st.selected < 0 ? -1 : Math.min(st.selected, doms.length - 1);
  const title =
    `pvio top · pid ${snap.pid} · ${hosts.length === 0 ? 'no host running' : hosts.join(', ')} · ` +
    `${doms.length} domains · ${rows.rings.length} rings · sort: ${st.sort}` +
    (st.note === undefined ? '' : ` · ${st.note}`);
  const keys = st.details ? 'q quit  d back  ↑↓ select  s sort' : 'q quit  s sort  d details  ↑↓ select';
  const out: string[] = [title];
  const body = Math.max(0, height - 2);
  if (st.details && sel >= 0) {
    const d = doms[sel];
    const t = d.totals;
    const mine = rows.rings.filter((x) => x.host === d.host && (x.backend === d.domid || x.frontend === d.domid));
    const devs = rows.devices.filter((x) => x.host === d.host && x.owner === d.domid);
    const facts = [
      `domain ${d.domid} '${d.name}' on ${d.host} · ${d.state} · CPU ${d.cpuPct.toFixed(1)}% · ${(t.cpuNs / 1e6).toFixed(0)} ms in all`,
      `grants: ${t.grantMaps} maps, ${t.grantUnmaps} unmaps, ${t.grantCopies} copies (${(t.grantCopyBytes / 1048576).toFixed(1)} MiB) · ${t.notifies} notifies sent`,
    ];
    out.push(...facts.slice(0, body));
    const left = body - Math.min(body, facts.length);
    const ringRoom = devs.length === 0 ? left : Math.max(2, left - Math.min(devs.length + 1, 4));
    section(out, RING_HEAD, mine.map(ringLine), Math.min(ringRoom, left));
    section(
      out,
      DEVICE_HEAD,
      devs.map((x) => deviceLine(x)),
      body - (out.length - 1),
    );
  } else {
    const ringLines = rows.rings.map(ringLine);
    const devLines = rows.devices.map((x) => deviceLine(x));
    // Domains first, but leave the rings and devices at least a heading and two rows each.
    const devRoom = devLines.length === 0 ? 0 : Math.min(devLines.length + 1, 4);
    const ringRoom = ringLines.length === 0 ? 0 : Math.min(ringLines.length + 1, 6);
    const domRoom = Math.max(2, body - devRoom - ringRoom);
    section(
      out,
      DOMAIN_HEAD,
      doms.map((d, i) => domainLine(d, i === sel, hosts.length > 1)),
      Math.min(domRoom, body),
    );
    section(out, RING_HEAD, ringLines, body - (out.length - 1) - devRoom);
    section(out, DEVICE_HEAD, devLines, body - (out.length - 1));
  }
  while (out.length < height - 1) out.push('');
  out.push(keys);
  return out.slice(0, height).map((s) => padCut(s, width));
}

function deviceLine(x: TopRows['devices'][number]): string {
  return `${l(x.name, 9)} ${l(x.kind, 9)}${r(x.owner < 0 ? '-' : String(x.owner), 6)}${r(fmtRate(x.opsPerSec), 9)}${r(x.dmaMiBPerSec.toFixed(1), 10)}${r(fmtRate(x.doorbellsPerSec), 11)}${r(String(x.queueDepth), 7)}${r(fmtRate(x.hopsPerSec), 9)}${r(String(x.faults), 7)}`;
}
