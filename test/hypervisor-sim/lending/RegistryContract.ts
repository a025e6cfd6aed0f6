/**
 * The DeviceRegistry contract (hypervisor-sim/lending/Types.ts), run against every registry: the
 * embedded one (InMemoryRegistry.test.ts) and the etcd one (EtcdRegistry.test.ts). Each case asks
 * the factory for a fresh, empty registry; the factory closes what it made after each case.
 */

import assert from 'node:assert/strict';
import type {
  DeviceDescriptor,
  DeviceFilter,
  DeviceRegistry,
  Lease,
  RegistryEvent,
} from '../../../hypervisor-sim/lending/Types.js';

/** A registry under test, with the revision of its last change. */
export type TestRegistry = DeviceRegistry & { readonly revision: number };

export interface RegistryFactory {
  /** A fresh, empty registry (its own cluster). */
  create(opts?: { onListenerError?: (err: unknown, event: RegistryEvent) => void }): Promise<TestRegistry>;
  /** Does the registry number its revisions 1, 2, 3… (true for the embedded one; etcd's are global)? */
  readonly denseRevisions: boolean;
}

export const NVME: DeviceDescriptor = {
  id: 'A/nvme0',
  owner: 'A',
  kind: 'nvme',
  bdf: '0000:05:00.0',
  shareable: true,
  queues: 3,
};
export const NIC: DeviceDescriptor = {
  id: 'A/nic0',
  owner: 'A',
  kind: 'rdma-nic',
  bdf: '0000:03:00.0',
  shareable: false,
  queues: 1,
};

/** Records every event (after registration), for order checks. */
export function recorder(r: DeviceRegistry): RegistryEvent[] {
  const seen: RegistryEvent[] = [];
  r.watch((e) => seen.push(e));
  return seen;
}

/** Declares the contract suites for one registry implementation. */
export function registryContract(factory: RegistryFactory): void {
  async function registry(...devices: DeviceDescriptor[]): Promise<TestRegistry> {
    const r = await factory.create();
    for (const d of devices) await r.register(d);
    return r;
  }

  describe('lending registry: exclusive and shared borrowing', () => {
    it('an exclusive lease needs the device unheld: a second exclusive and any shared borrow are BUSY naming the holder', async () => {
      const r = await registry(NVME);
      const lease = await r.borrow(NVME.id, 'B', { mode: 'exclusive' });
      assert.deepEqual(
        { ...lease },
        { id: NVME.id, holder: 'B', mode: 'exclusive', queue: undefined, generation: lease.generation },
      );
      await assert.rejects(r.borrow(NVME.id, 'C', { mode: 'exclusive' }), {
        code: 'PV_ERR_LEND_BUSY',
        message: /held exclusively by B/,
      });
      await assert.rejects(r.borrow(NVME.id, 'C', { mode: 'shared' }), {
        code: 'PV_ERR_LEND_BUSY',
        message: /held exclusively by B/,
      });
      const [entry] = await r.list();
      assert.deepEqual(entry.state, { kind: 'exclusive', holder: 'B', generation: lease.generation });
    });

    it('shared leases get distinct queues up to the queue count, then BUSY; an exclusive borrow is BUSY while any is shared', async () => {
      const r = await registry(NVME);
      const leases = [
        await r.borrow(NVME.id, 'B', { mode: 'shared' }),
        await r.borrow(NVME.id, 'C', { mode: 'shared' }),
        await r.borrow(NVME.id, 'A', { mode: 'shared' }), // the owner borrows its own device too
      ];
      assert.deepEqual(
        leases.map((l) => l.queue),
        [0, 1, 2],
      );
      await assert.rejects(r.borrow(NVME.id, 'D', { mode: 'shared' }), {
        code: 'PV_ERR_LEND_BUSY',
        message: /all 3 queues taken, shared by B \(queue 0\), C \(queue 1\), A \(queue 2\)/,
      });
      await assert.rejects(r.borrow(NVME.id, 'D', { mode: 'exclusive' }), {
        code: 'PV_ERR_LEND_BUSY',
        message: /shared by B/,
      });
      // A freed queue is handed out again: the lowest free index.
      await r.return(leases[1]);
      const again = await r.borrow(NVME.id, 'D', { mode: 'shared' });
      assert.equal(again.queue, 1);
      const [entry] = await r.list();
      assert.deepEqual(entry.state, {
        kind: 'shared',
        holders: [
          { host: 'B', queue: 0, generation: leases[0].generation },
          { host: 'D', queue: 1, generation: again.generation },
          { host: 'A', queue: 2, generation: leases[2].generation },
        ],
      });
    });

    it('a device that is not shareable is borrowed exclusively only', async () => {
      const r = await registry(NIC);
      await assert.rejects(r.borrow(NIC.id, 'B', { mode: 'shared' }), {
        code: 'PV_ERR_INVALID_ARG',
        message: /not shareable/,
      });
      await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
    });

    it('concurrent borrows: exactly one of many simultaneous exclusive borrows wins, the rest are BUSY naming it', async () => {
      const r = await registry(NVME);
      const hosts = ['B', 'C', 'D', 'E', 'F', 'G', 'H', 'I'];
      const results = await Promise.allSettled(hosts.map((h) => r.borrow(NVME.id, h, { mode: 'exclusive' })));
      const won = results.filter((x): x is PromiseFulfilledResult<Lease> => x.status === 'fulfilled');
      assert.equal(won.length, 1);
      const winner = won[0].value.holder;
      for (const x of results) {
        if (x.status === 'rejected') {
          assert.equal(x.reason.code, 'PV_ERR_LEND_BUSY');
          assert.match(x.reason.message, new RegExp(`held exclusively by ${winner}`));
        }
      }
    });

    it('concurrent shared and exclusive borrows never mix, and concurrent shared borrows never share a queue', async () => {
      const r = await registry(NVME);
      const calls = ['B', 'C', 'D', 'E', 'F'].flatMap((h) => [
        r.borrow(NVME.id, h, { mode: 'shared' }),
        r.borrow(NVME.id, `${h}x`, { mode: 'exclusive' }),
      ]);
      const won = (await Promise.allSettled(calls)).flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
      const modes = new Set(won.map((l) => l.mode));
      assert.equal(modes.size, 1, 'either exclusive or shared holders, never both');
      if (modes.has('exclusive')) assert.equal(won.length, 1);
      else assert.deepEqual(won.map((l) => l.queue).sort(), [0, 1, 2]);
    });
  });

  describe('lending registry: return, re-borrow and revocation', () => {
    it('an idle lease is returned and another host borrows the device', async () => {
      const r = await registry(NIC);
      const b = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await r.setInUse(b, 2);
      await r.setInUse(b, 0);
      await r.return(b);
      assert.deepEqual((await r.list())[0].state, { kind: 'available' });
      const c = await r.borrow(NIC.id, 'C', { mode: 'exclusive' });
      assert.ok(c.generation > b.generation, 'generations are never reused');
    });

    it('a return while the holder reports requests outstanding is IN_USE; forced, it revokes the lease', async () => {
      const r = await registry(NIC);
      const b = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      const seen = recorder(r);
      await r.setInUse(b, 3);
      assert.deepEqual((await r.list())[0].outstanding, { [b.generation]: 3 });
      await assert.rejects(r.return(b), { code: 'PV_ERR_LEND_IN_USE', message: /B still has 3 request/ });
      assert.equal((await r.list({ holder: 'B' })).length, 1, 'a refused return changes nothing');
      await r.return(b, { force: true });
      assert.deepEqual(
        seen.map((e) => e.type),
        ['revoked'],
      );
      assert.deepEqual((await r.list())[0].state, { kind: 'available' });
    });

    it('NOT_FOUND for an unknown device; NOT_HOLDER for a lease not held (returned, forged or stale)', async () => {
      const r = await registry(NIC);
      await assert.rejects(r.borrow('nope', 'B', { mode: 'exclusive' }), { code: 'PV_ERR_LEND_NOT_FOUND' });
      const b = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await assert.rejects(r.return({ ...b, id: 'nope' }), { code: 'PV_ERR_LEND_NOT_FOUND' });
      await assert.rejects(r.return({ ...b, holder: 'C' }), {
        code: 'PV_ERR_LEND_NOT_HOLDER',
        message: /C does not hold .* held exclusively by B/,
      });
      await r.return(b);
      await assert.rejects(r.return(b), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      await assert.rejects(r.setInUse(b, 1), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      // B borrows again: the old lease (older generation) is still not held.
      const b2 = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await assert.rejects(r.return(b), { code: 'PV_ERR_LEND_NOT_HOLDER' });
      await r.return(b2);
    });

    it('unregister is BUSY while leased; forced, every lease is revoked before the device goes', async () => {
      const r = await registry(NVME, NIC);
      const b = await r.borrow(NVME.id, 'B', { mode: 'shared' });
      const c = await r.borrow(NVME.id, 'C', { mode: 'shared' });
      await assert.rejects(r.unregister(NVME.id), { code: 'PV_ERR_LEND_BUSY', message: /shared by B \(queue 0\)/ });
      const seen = recorder(r);
      await r.unregister(NVME.id, { force: true });
      assert.deepEqual(
        seen.map((e) => [e.type, e.type === 'revoked' ? e.lease.holder : '']),
        [
          ['revoked', 'B'],
          ['revoked', 'C'],
          ['unregistered', ''],
        ],
      );
      await assert.rejects(r.return(c), { code: 'PV_ERR_LEND_NOT_FOUND' });
      await assert.rejects(r.unregister(NVME.id), { code: 'PV_ERR_LEND_NOT_FOUND' });
      assert.deepEqual(
        (await r.list()).map((e) => e.device.id),
        [NIC.id],
      );
      assert.equal(b.queue, 0);
    });
  });

  describe('lending registry: watch, list and validation', () => {
    it('watchers see every change in order with increasing revisions; a reaction inside a watcher runs after delivery', async () => {
      const r = await factory.create();
      const first: string[] = [];
      const second: string[] = [];
      const revisions: number[] = [];
      let reacted: Promise<Lease> | undefined;
      r.watch((e) => {
        first.push(e.type);
        revisions.push(e.revision);
        // C borrows the moment B returns: its 'borrowed' must reach every watcher after 'returned'.
        if (e.type === 'returned') reacted = r.borrow(NIC.id, 'C', { mode: 'exclusive' });
      });
      const unwatch = r.watch((e) => second.push(e.type));
      await r.register(NIC);
      const b = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await r.return(b);
      const c = await reacted;
      assert.equal(c?.holder, 'C');
      unwatch();
      await r.return(c as Lease, { force: true });
      await r.unregister(NIC.id);
      assert.deepEqual(first, ['registered', 'borrowed', 'returned', 'borrowed', 'revoked', 'unregistered']);
      assert.deepEqual(second, ['registered', 'borrowed', 'returned', 'borrowed']);
      for (let i = 1; i < revisions.length; i++) assert.ok(revisions[i] > revisions[i - 1], `revisions ${revisions}`);
      if (factory.denseRevisions) assert.deepEqual(revisions, [1, 2, 3, 4, 5, 6]);
      assert.equal(r.revision, revisions[5]);
    });

    it('a throwing watcher does not stop delivery to the others nor undo the change', async () => {
      const errors: unknown[] = [];
      const r = await factory.create({ onListenerError: (err) => errors.push(err) });
      const seen: string[] = [];
      r.watch(() => {
        throw new Error('broken watcher');
      });
      r.watch((e) => seen.push(e.type));
      await r.register(NIC);
      assert.deepEqual(seen, ['registered']);
      assert.equal(errors.length, 1);
      assert.equal((await r.list()).length, 1);
    });

    it('list filters by owner, kind, availability and holder', async () => {
      const r = await registry(NVME, NIC, { ...NIC, id: 'B/nic0', owner: 'B' });
      await r.borrow(NVME.id, 'C', { mode: 'shared' });
      const ids = async (f: DeviceFilter) => (await r.list(f)).map((e) => e.device.id);
      assert.deepEqual(await ids({ owner: 'A' }), ['A/nvme0', 'A/nic0']);
      assert.deepEqual(await ids({ kind: 'rdma-nic' }), ['A/nic0', 'B/nic0']);
      assert.deepEqual(await ids({ available: true }), ['A/nic0', 'B/nic0']);
      assert.deepEqual(await ids({ available: false }), ['A/nvme0']);
      assert.deepEqual(await ids({ holder: 'C' }), ['A/nvme0']);
      assert.deepEqual(await ids({ owner: 'B', available: true }), ['B/nic0']);
    });

    it('malformed descriptors, duplicate ids, bad modes and bad usage counts are INVALID_ARG', async () => {
      const r = await registry(NIC);
      const bad: Partial<DeviceDescriptor>[] = [
        { ...NIC, id: 'x', bdf: '3:0.0' },
        { ...NIC, id: 'x', queues: 0 },
        { ...NIC, id: 'x', queues: 1.5 },
        { ...NIC, id: 'x', kind: 'gpu' as never },
        { ...NIC, id: '' },
        { ...NIC, id: 'x', owner: '' },
        { ...NIC, id: 'x', shareable: 'yes' as never },
        NIC,
      ];
      for (const d of bad) {
        await assert.rejects(r.register(d as DeviceDescriptor), { code: 'PV_ERR_INVALID_ARG' }, JSON.stringify(d));
      }
      await assert.rejects(r.borrow(NIC.id, 'B', { mode: 'both' as never }), { code: 'PV_ERR_INVALID_ARG' });
      await assert.rejects(r.borrow(NIC.id, '', { mode: 'exclusive' }), { code: 'PV_ERR_INVALID_ARG' });
      const b = await r.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await assert.rejects(r.setInUse(b, -1), { code: 'PV_ERR_INVALID_ARG' });
      await assert.rejects(r.setInUse(b, 0.5), { code: 'PV_ERR_INVALID_ARG' });
    });
  });
}
