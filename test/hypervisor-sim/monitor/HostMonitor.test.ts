/**
 * The monitor over real Workers: a paravirt blk guest and a paravirt RDMA guest move traffic
 * through dom0's driver domain, then hold their devices open (programs/MonitorGuest.ts) while
 * the test snapshots the host from the main thread, then close them; a second snapshot is
 * taken while both guests still run with their devices gone.
 */

import assert from 'node:assert/strict';
import type { Host } from '../../../hypervisor-sim/domain/Host.js';
import { liveHosts, snapshotAll } from '../../../hypervisor-sim/monitor/LiveHosts.js';
import type { HostSnapshot, MonitorSnapshot, RingSnapshot } from '../../../hypervisor-sim/monitor/Snapshot.js';
import { runScenario } from '../../../hypervisor-sim/scenario/Scenario.js';
import { CLOSED_KEY, EXIT_KEY, GO_KEY, READY_KEY } from './programs/MonitorGuest.js';

const GUEST = new URL('./programs/MonitorGuest.js', import.meta.url);
const ROUNDS = 24;

/** Polls `cond` every 10 ms (the main thread's event loop keeps running) until true or `ms` pass. */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Seen {
  mid: MonitorSnapshot;
  after: HostSnapshot;
  guests: Record<string, number>;
}

/** Drives both guests through ready → snapshot → go → closed → snapshot → exit. */
async function watch(host: Host): Promise<Seen> {
  const key = (domid: number, k: string): string => `/local/domain/${domid}/${k}`;
  const guests: Record<string, number> = {};
  await until(
    () => {
      for (const d of host.domains()) if (d.name !== 'dom0') guests[d.name] = d.domid;
      return Object.keys(guests).length === 2;
    },
    30_000,
    'both guests to start',
  );
  const all = Object.values(guests);
  const present = async (k: string): Promise<boolean> => {
    for (const g of all) if ((await host.toolstack.tryRead(key(g, k))) === undefined) return false;
    return true;
  };
  await until(() => present(READY_KEY), 60_000, 'both guests to finish their traffic');
  const mid = snapshotAll('monitor test');
  for (const g of all) await host.toolstack.write(key(g, GO_KEY), '1');
  await until(() => present(CLOSED_KEY), 60_000, 'both guests to close their devices');
  // The backend lets go of a ring when it sees the frontend close (xenbus): poll for it.
  const ringsOf = (h: HostSnapshot): RingSnapshot[] =>
    h.rings.filter((r) => all.includes(r.owner) || all.includes(r.peer));
  let after = snapshotAll('monitor test').hosts.find((h) => h.name === host.name);
  await until(
    () => {
      after = snapshotAll('monitor test').hosts.find((h) => h.name === host.name);
      return after !== undefined && ringsOf(after).length === 0;
    },
    30_000,
    'the ring records of both guests to be released',
  ).catch(() => {});
  const stillRunning = host.domains().filter((d) => all.includes(d.domid) && d.state === 'running').length;
  for (const g of all) await host.toolstack.write(key(g, EXIT_KEY), '1');
  assert.ok(after, 'the host is live while its guests run');
  assert.equal(stillRunning, 2, 'the second snapshot was taken while both guests still ran');
  return { mid, after, guests };
}

function ring(h: HostSnapshot, kind: string, owner: number, peer: number, end: 'front' | 'back'): RingSnapshot {
  const found = h.rings.filter((r) => r.kind === kind && r.owner === owner && r.peer === peer && r.end === end);
  assert.equal(found.length, 1, `one ${kind} ${end} ring of dom${owner} with dom${peer}: ${JSON.stringify(h.rings)}`);
  return found[0];
}

describe('HostMonitor: snapshots of a running host come from shared memory', function () {
  this.timeout(180_000);

  it('mid-run, paravirt blk and RDMA rings show traffic on both ends, dom0 grant ops, CPU time and NIC ops; records are released when the guests disconnect', async () => {
    let seen: Promise<Seen> | undefined;
    let host: Host | undefined;
    const result = await runScenario(
      {
        host: { nics: 1, nvmes: [{ sizeBytes: 16 << 20 }] },
        guests: [
          {
            name: 'blk-guest',
            program: GUEST,
            args: { kind: 'blk', rounds: ROUNDS },
            devices: [{ device: 'nvme0', transport: 'paravirt' }],
          },
          {
            name: 'rdma-guest',
            program: GUEST,
            args: { kind: 'rdma', rounds: ROUNDS },
            devices: [{ device: 'nic0', transport: 'paravirt' }],
          },
        ],
      },
      {
        onHost: (h) => {
          host = h;
          seen = watch(h);
          seen.catch(() => {});
        },
      },
    );
    assert.ok(seen && host);
    const { mid, after, guests } = await seen;
    for (const g of ['blk-guest', 'rdma-guest']) {
      assert.deepEqual(result.guests[g].value, { kind: g.slice(0, g.indexOf('-')), rounds: ROUNDS, mismatches: 0 });
    }

    assert.equal(mid.pid, process.pid);
    assert.equal(mid.command, 'monitor test');
    const h = mid.hosts.find((x) => x.name === host?.name);
    assert.ok(h, 'the running host is in the snapshot');
    const blk = guests['blk-guest'];
    const rdma = guests['rdma-guest'];

    // Rings: both ends of each, counted by their own threads.
    const bf = ring(h, 'blkif', blk, 0, 'front');
    const bb = ring(h, 'blkif', 0, blk, 'back');
    assert.ok(bf.requests >= 2 * ROUNDS && bf.responses >= 2 * ROUNDS, JSON.stringify(bf));
    // The guest waited for every response before saying ready: both ends agree exactly.
    assert.equal(bb.requests, bf.requests);
    assert.equal(bb.responses, bf.responses);
    assert.ok(bb.batches > 0 && bb.batchedItems >= bb.batches, 'the backend records its batches');
    for (const kind of ['vrdma-ctrl', 'vrdma-data']) {
      const f = ring(h, kind, rdma, 0, 'front');
      const b = ring(h, kind, 0, rdma, 'back');
      assert.ok(f.requests > 0 && b.requests > 0, `${kind}: ${JSON.stringify([f, b])}`);
      assert.ok(b.responses > 0 && f.responses > 0, `${kind}: ${JSON.stringify([f, b])}`);
      assert.ok(f.responses <= b.responses && b.requests <= f.requests, 'a consumer never passes its producer');
    }
    for (const r of [bf, bb]) assert.ok(r.notifies + r.suppressed > 0, `pushes counted: ${JSON.stringify(r)}`);
    assert.ok(
      ring(h, 'vrdma-data', rdma, 0, 'front').notifies + ring(h, 'vrdma-data', rdma, 0, 'front').suppressed > 0,
    );

    // Domains: CPU time from schedstat, dom0's grant work as the grantee, notifies.
    const dom = (id: number) => h.domains.find((d) => d.domid === id);
    for (const id of [0, blk, rdma]) {
      const d = dom(id);
      assert.ok(d && d.state === 'running' && d.cpuNs > 0, `dom${id}: ${JSON.stringify(d)}`);
    }
    const d0 = dom(0);
    assert.ok(d0 && d0.grantMaps + d0.grantCopies > 0, `dom0 mapped or copied guest pages: ${JSON.stringify(d0)}`);
    assert.ok(d0.grantMaps >= d0.grantUnmaps, 'an unmap follows a map');
    assert.ok((dom(blk)?.notifies ?? 0) > 0, 'the blk guest notified its backend');

    // Devices: the NIC ran the RDMA WRITEs, the SSD the blk commands.
    const nic = h.devices.find((d) => d.name === 'nic0');
    assert.ok(nic && nic.kind === 'rdma-nic' && nic.owner === 0, JSON.stringify(nic));
    assert.ok(nic.ops >= ROUNDS && nic.dmaBytes > 0 && nic.doorbells > 0, JSON.stringify(nic));
    assert.ok('cqes' in nic.extra, 'the counters not mapped are kept in extra');
    const ssd = h.devices.find((d) => d.name === 'nvme0');
    assert.ok(ssd && ssd.kind === 'nvme' && ssd.ops >= 2 * ROUNDS, JSON.stringify(ssd));

    // After the guests closed their devices (still running): no ring record of theirs is left.
    assert.deepEqual(
      after.rings.filter((r) => r.owner === blk || r.owner === rdma || r.peer === blk || r.peer === rdma),
      [],
    );
    // The scenario shut the host down: it left the registry.
    assert.ok(!liveHosts().includes(host));
  });
});
