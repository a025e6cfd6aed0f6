/**
 * `pvio top`'s frames, rendered into an @xterm/headless terminal as a user's terminal would show
 * them: headings and rows appear, `s` orders change the rows, `d` shows one domain, a smaller
 * terminal reflows the frame (never a line past the width or the last row), and the rates come
 * from the difference of two cumulative snapshots.
 */

import assert from 'node:assert/strict';
import xterm from '@xterm/headless';
import { topRows } from '../../../cli/top/TopRates.js';
import { parseKeys } from '../../../cli/top/TopScreen.js';
import { renderTop, type TopState } from '../../../cli/top/TopView.js';
import type {
  DomainSnapshot,
  HostSnapshot,
  MonitorSnapshot,
  RingSnapshot,
} from '../../../hypervisor-sim/monitor/Snapshot.js';

const { Terminal } = xterm;

function dom(domid: number, name: string, cpuNs: number, extra: Partial<DomainSnapshot> = {}): DomainSnapshot {
  return {
    domid,
    name,
    state: 'running',
    cpuNs,
    grantMaps: 0,
    grantUnmaps: 0,
    grantCopies: 0,
    grantCopyBytes: 0,
    notifies: 0,
    ...extra,
  };
}

function ring(owner: number, peer: number, end: 'front' | 'back', k: number, kind = 'vrdma-data'): RingSnapshot {
  return {
    kind,
    owner,
    peer,
    end,
    requests: 1000 * k,
    responses: 1000 * k,
    notifies: 10 * k,
    suppressed: 90 * k,
    fullStalls: end === 'front' ? 5 * k : 0,
    batches: end === 'back' ? 250 * k : 0,
    batchedItems: end === 'back' ? 1000 * k : 0,
  };
}

/** Two snapshots one second apart: `k` scales the second one's counters. */
function snaps(domains = 3): [MonitorSnapshot, MonitorSnapshot] {
  const host = (k: number): HostSnapshot => ({
    name: 'host0',
    domains: [
      dom(0, 'dom0', 0.9e9 * k, { grantMaps: 40 * k, grantCopies: 7 * k, grantCopyBytes: 7 * 4096 * k }),
      dom(1, 'neighbour', 0.3e9 * k, { notifies: 100 * k }),
      dom(2, 'flooder', 0.6e9 * k),
      ...Array.from({ length: Math.max(0, domains - 3) }, (_, i) => dom(3 + i, `extra${i}`, 0.01e9 * k)),
    ],
    rings: [ring(0, 1, 'back', k), ring(1, 0, 'front', k), ring(0, 2, 'back', 2 * k), ring(2, 0, 'front', 2 * k)],
    devices: [
      {
        name: 'nic0',
        kind: 'rdma-nic',
        owner: 0,
        ops: 5000 * k,
        dmaBytes: 5000 * 4096 * k,
        doorbells: 900 * k,
        faults: 0,
        queueDepth: 3,
        fabricHops: 10 * k,
        extra: {},
      },
    ],
  });
  const a: MonitorSnapshot = { t: 1_000_000, pid: 4242, command: 'pvio test', hosts: [host(1)] };
  const b: MonitorSnapshot = { t: 1_001_000, pid: 4242, command: 'pvio test', hosts: [host(2)] };
  return [a, b];
}

/** Writes a frame into a headless terminal of `cols`×`rows` and returns its screen lines. */
async function screen(lines: readonly string[], cols: number, rows: number): Promise<string[]> {
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  await new Promise<void>((resolve) => term.write(`\x1b[H${lines.join('\x1b[K\r\n')}\x1b[K\x1b[J`, resolve));
  const out: string[] = [];
  for (let i = 0; i < rows; i++) out.push((term.buffer.active.getLine(i)?.translateToString(true) ?? '').trimEnd());
  term.dispose();
  return out;
}

const state = (over: Partial<TopState> = {}): TopState => ({ sort: 'cpu', selected: 0, details: false, ...over });

describe('pvio top: the dashboard in an 80×24 terminal (@xterm/headless)', () => {
  it('shows the title, the domain, ring and device headings, one row per domain and the key line', async () => {
    const [a, b] = snaps();
    const s = await screen(renderTop(topRows(a, b), b, state(), 80, 24), 80, 24);
    assert.match(s[0], /^pvio top · pid 4242 · host0 · 3 domains · 2 rings · sort: cpu/);
    assert.match(s[1], /ID NAME +STATE +CPU% +NOTIFY\/s +MAPS\/s +COPIES\/s/);
    const neighbour = s.find((x) => /\bneighbour\b/.test(x));
    assert.ok(neighbour, 'a row for the neighbour');
    // 0.3 s of CPU in a 1 s interval; 100 notifies in that second.
    assert.match(neighbour, /^ +1 neighbour +running +30\.0 +100 /);
    const dom0 = s.find((x) => /\bdom0\b/.test(x)) ?? '';
    assert.match(dom0, / 90\.0 +0\.0 +40 +7\.0 +0\.0$/);
    assert.ok(s.some((x) => /^RING +BACK←FRONT +REQ\/s/.test(x)));
    // Ring 0←2 (k doubled): 2000 req/s, notifies 20+20, suppressed 90 %, batch 4, stalls 10/s.
    assert.ok(
      s.some((x) => /^vrdma-data +0←2 +2000 +2000 +40 +90\.0% +4\.0 +10$/.test(x)),
      s.join('\n'),
    );
    assert.ok(
      s.some((x) => /^nic0 +rdma-nic +0 +5000 +19\.5 +900 +3 +10 +0$/.test(x)),
      s.join('\n'),
    );
    assert.equal(s[23], 'q quit  s sort  d details  ↑↓ select');
  });

  it('sorting changes the order of the rows (cpu: busiest first; name: alphabetical; id: by domain id)', async () => {
    const [a, b] = snaps();
    const rows = topRows(a, b);
    const order = async (sort: TopState['sort']) =>
      (await screen(renderTop(rows, b, state({ sort }), 80, 24), 80, 24)).slice(2, 5).map((x) => x.slice(6, 20).trim());
    assert.deepEqual(await order('cpu'), ['dom0', 'flooder', 'neighbour']);
    assert.deepEqual(await order('name'), ['dom0', 'flooder', 'neighbour'].sort());
    assert.deepEqual(await order('id'), ['dom0', 'neighbour', 'flooder']);
    assert.deepEqual(await order('notify'), ['neighbour', 'dom0', 'flooder']);
  });

  it('d shows the selected domain: its totals, its rings and nothing of the others', async () => {
    const [a, b] = snaps();
    // Sorted by cpu: dom0, flooder, neighbour — select the third.
    const s = await screen(renderTop(topRows(a, b), b, state({ details: true, selected: 2 }), 80, 24), 80, 24);
    assert.match(s[1], /^domain 1 'neighbour' on host0 · running · CPU 30\.0% · 600 ms in all/);
    assert.match(s[2], /grants: 0 maps, 0 unmaps, 0 copies \(0\.0 MiB\) · 200 notifies sent/);
    assert.ok(s.some((x) => /^vrdma-data +0←1 /.test(x)));
    assert.ok(!s.some((x) => /0←2/.test(x)), 'rings of other domains are not shown');
    assert.equal(s[23], 'q quit  d back  ↑↓ select  s sort');
  });

  it('a smaller terminal reflows the frame: every line fits, overflow is counted, the key line stays last', async () => {
    const [a, b] = snaps(30);
    const rows = topRows(a, b);
    const big = await screen(renderTop(rows, b, state(), 120, 40), 120, 40);
    assert.ok(big.filter((x) => /^ +\d+ (dom0|neighbour|flooder|extra)/.test(x) || /^> +\d+ /.test(x)).length > 20);
    const small = renderTop(rows, b, state(), 60, 15);
    assert.equal(small.length, 15);
    assert.ok(small.every((x) => x.length === 60));
    const s = await screen(small, 60, 15);
    assert.ok(
      s.some((x) => /^ {2}… \d+ more/.test(x)),
      'the rows that do not fit are counted',
    );
    assert.equal(s[14], 'q quit  s sort  d details  ↑↓ select');
    assert.ok(
      s.some((x) => x.startsWith('RING')),
      'the rings keep a place',
    );
    assert.ok(
      s.some((x) => x.startsWith('DEVICE')),
      'the devices keep a place',
    );
  });

  it('the first frame has no rates yet, and a counter that went backwards (reused domid) counts from zero', () => {
    const [a, b] = snaps();
    assert.ok(topRows(undefined, a).domains.every((d) => d.cpuPct === 0));
    const h = b.hosts[0];
    const later: MonitorSnapshot = {
      ...b,
      t: b.t + 1000,
      hosts: [
        { ...h, domains: h.domains.map((d) => (d.domid === 1 ? dom(1, 'neighbour', 0.1e9, { notifies: 5 }) : d)) },
      ],
    };
    const n = topRows(b, later).domains.find((d) => d.name === 'neighbour');
    assert.equal(n?.notifiesPerSec, 5);
    assert.equal(n?.cpuPct, 10);
  });

  it('keys: q and Ctrl-C quit, s sorts, d details, arrows and j/k select; other bytes are ignored', () => {
    assert.deepEqual(parseKeys('qs\x03dx\x1b[A\x1b[Bjk'), [
      'quit',
      'sort',
      'quit',
      'details',
      'up',
      'down',
      'down',
      'up',
    ]);
  });
});
