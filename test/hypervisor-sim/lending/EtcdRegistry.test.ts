import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { EtcdRegistry } from '../../../hypervisor-sim/lending/EtcdRegistry.js';
import type { Lease, RegistryEvent } from '../../../hypervisor-sim/lending/Types.js';
import { EtcdServer, etcdBinary } from '../../helpers/EtcdServer.js';
import { NIC, NVME, recorder, registryContract } from './RegistryContract.js';

/** Lease TTL of these tests (seconds): a crashed host's borrows must be back within TTL + 1 s. */
const TTL = 2;

let server: EtcdServer | undefined;
let clusters = 0;
const open: EtcdRegistry[] = [];

/** A registry client (one "host") on `cluster`. */
async function client(cluster: string, onListenerError?: (err: unknown) => void): Promise<EtcdRegistry> {
  const r = await EtcdRegistry.connect({
    endpoints: [(server as EtcdServer).endpoint],
    cluster,
    ttl: TTL,
    onListenerError,
  });
  open.push(r);
  return r;
}

/** Retries `fn` until it stops throwing, or rethrows its last error after `ms`. */
async function eventually<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Resolves with the first event `pred` accepts, or rejects after `ms`. */
function nextEvent(r: EtcdRegistry, ms: number, pred: (e: RegistryEvent) => boolean): Promise<RegistryEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no matching registry event within ${ms} ms`));
    }, ms);
    const stop = r.watch((e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      stop();
      resolve(e);
    });
  });
}

describe('lending registry (etcd)', function () {
  this.timeout(60_000);

  before(async function () {
    if (etcdBinary() === undefined) {
      console.log(
        '    etcd binary not found (Debian etcd-server; .ci/run installs it): skipping the etcd registry tests',
      );
      this.skip();
    }
    server = await EtcdServer.start();
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((r) => r.close()));
  });

  after(async () => {
    await server?.destroy();
  });

  registryContract({
    create: (opts) => client(`contract${++clusters}`, opts?.onListenerError as (err: unknown) => void),
    denseRevisions: false,
  });

  describe('lending registry on etcd: several hosts', () => {
    it('concurrent borrows from two hosts: exactly one wins each round, the other is BUSY naming it', async () => {
      const cluster = `hosts${++clusters}`;
      const [a, b, c] = [await client(cluster), await client(cluster), await client(cluster)];
      await a.register(NIC);
      for (let round = 0; round < 10; round++) {
        const results = await Promise.allSettled([
          b.borrow(NIC.id, 'B', { mode: 'exclusive' }),
          c.borrow(NIC.id, 'C', { mode: 'exclusive' }),
        ]);
        const won = results.filter((x): x is PromiseFulfilledResult<Lease> => x.status === 'fulfilled');
        assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results)}`);
        const lost = results.find((x) => x.status === 'rejected') as PromiseRejectedResult;
        assert.equal(lost.reason.code, 'PV_ERR_LEND_BUSY');
        assert.match(lost.reason.message, new RegExp(`held exclusively by ${won[0].value.holder}`));
        // Either host may return it: the lease, not the client, identifies the holding.
        await (round % 2 === 0 ? b : c).return(won[0].value);
      }
    });

    it('concurrent shared borrows from two hosts never share a queue', async () => {
      const cluster = `hosts${++clusters}`;
      const [a, b, c] = [await client(cluster), await client(cluster), await client(cluster)];
      await a.register(NVME);
      const calls = [b, c, b, c].map((r, i) => r.borrow(NVME.id, `H${i}`, { mode: 'shared' }));
      const results = await Promise.allSettled(calls);
      const queues = results.flatMap((x) => (x.status === 'fulfilled' ? [x.value.queue] : []));
      assert.deepEqual([...queues].sort(), [0, 1, 2]);
      const refused = results.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
      assert.deepEqual(
        refused.map((x) => x.reason.code),
        ['PV_ERR_LEND_BUSY'],
      );
    });

    it('a borrower that crashes (client gone without returning) loses the device within TTL + 1 s; another host borrows it', async () => {
      const cluster = `crash${++clusters}`;
      const [a, b, c] = [await client(cluster), await client(cluster), await client(cluster)];
      await a.register(NIC);
      const lease = await b.borrow(NIC.id, 'B', { mode: 'exclusive' });
      await b.setInUse(lease, 4);
      await assert.rejects(c.borrow(NIC.id, 'C', { mode: 'exclusive' }), { code: 'PV_ERR_LEND_BUSY' });
      const revoked = nextEvent(a, (TTL + 1) * 1000, (e) => e.type === 'revoked');
      await b.close({ graceful: false });
      const e = await revoked;
      assert.equal(e.type === 'revoked' && e.lease.generation, lease.generation);
      assert.deepEqual((await a.list())[0].state, { kind: 'available' });
      const taken = await c.borrow(NIC.id, 'C', { mode: 'exclusive' });
      assert.ok(taken.generation > lease.generation);
    });

    it('a host that closes gracefully withdraws its devices at once', async () => {
      const cluster = `close${++clusters}`;
      const [a, b] = [await client(cluster), await client(cluster)];
      await a.register(NIC);
      await b.borrow(NIC.id, 'B', { mode: 'exclusive' });
      const seen = recorder(b);
      const gone = nextEvent(b, 5000, (e) => e.type === 'unregistered');
      await a.close();
      await gone;
      assert.deepEqual(
        seen.map((x) => x.type),
        ['revoked', 'unregistered'],
      );
      assert.deepEqual(await b.list(), []);
    });

    it('a host whose lease is lost (revoked in etcd) re-registers its devices', async () => {
      const cluster = `lost${++clusters}`;
      const [a, w] = [await client(cluster), await client(cluster)];
      const seen = recorder(w);
      const first = nextEvent(w, 5000, (e) => e.type === 'registered');
      await a.register(NIC);
      await first;
      const raw = new Etcd3({ hosts: [(server as EtcdServer).endpoint] });
      try {
        const kv = (await raw.getAll().prefix(`/pvio/${cluster}/devices/`).exec()).kvs[0];
        const back = nextEvent(w, 10_000, (e) => e.type === 'registered');
        await raw.leaseClient.leaseRevoke({ ID: kv.lease });
        await back;
      } finally {
        raw.close();
      }
      assert.deepEqual(
        seen.map((x) => x.type),
        ['registered', 'unregistered', 'registered'],
      );
      assert.deepEqual(
        (await w.list()).map((x) => x.device),
        [NIC],
      );
    });
  });

  describe('lending registry on etcd: etcd restarts', () => {
    it('an etcd restart loses no registration and watches resume', async () => {
      const cluster = `restart${++clusters}`;
      const [a, b, w] = [await client(cluster), await client(cluster), await client(cluster)];
      await a.register(NIC);
      await a.register(NVME);
      await (server as EtcdServer).stop();
      await (server as EtcdServer).resume();
      const borrowed = nextEvent(w, 20_000, (e) => e.type === 'borrowed');
      const lease = await eventually(20_000, () => b.borrow(NIC.id, 'B', { mode: 'exclusive' }));
      assert.equal((await borrowed).type, 'borrowed');
      assert.deepEqual(
        (await eventually(20_000, () => w.list())).map((x) => x.device.id),
        [NIC.id, NVME.id],
      );
      await b.return(lease);
    });

    it('a call made right after etcd is back succeeds: the outage leaves no open circuit breaker behind', async () => {
      const cluster = `breaker${++clusters}`;
      const a = await client(cluster);
      await a.register(NIC);
      await (server as EtcdServer).stop();
      // During the outage a call waits out its retries (every attempt counts towards the
      // endpoint's breaker, which opens) and then fails with etcd's own error, not the breaker's.
      const during = await a.list().then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      assert.ok(during, 'a call with etcd down fails');
      assert.doesNotMatch(during.message, /circuit breaker/i);
      await (server as EtcdServer).resume();
      // No `eventually`: the very first call must get through (etcd3's default breaker stays open
      // 5 s after the outage, so this failed with "circuit breaker is open" in CI).
      assert.deepEqual(
        (await a.list()).map((x) => x.device.id),
        [NIC.id],
      );
      assert.equal((await a.borrow(NIC.id, 'A', { mode: 'exclusive' })).holder, 'A');
    });

    it('etcd down for longer than the TTL: the owning host re-registers once it is back', async () => {
      const cluster = `outage${++clusters}`;
      const [a, w] = [await client(cluster), await client(cluster)];
      await a.register(NIC);
      await (server as EtcdServer).stop();
      // Long enough for the client to give its lease up (etcd3 does after 2 × TTL without a keepalive).
      await new Promise((r) => setTimeout(r, 2 * TTL * 1000 + 500));
      await (server as EtcdServer).resume();
      // After more than a TTL the old lease has surely expired: only a re-registration keeps the device.
      await new Promise((r) => setTimeout(r, (TTL + 1) * 1000));
      const ids = await eventually(20_000, async () => {
        const l = await w.list();
        if (l.length === 0) throw new Error('device not re-registered yet');
        return l.map((x) => x.device.id);
      });
      assert.deepEqual(ids, [NIC.id]);
      const lease = await eventually(20_000, () => w.borrow(NIC.id, 'W', { mode: 'exclusive' }));
      assert.equal(lease.holder, 'W');
    });
  });
});
