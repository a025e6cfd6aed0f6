import assert from 'node:assert/strict';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import type { DomId } from '../../../protocol/Types.js';

const HOLDER = new URL('./programs/Holder.js', import.meta.url);
const BINDER = new URL('./programs/Binder.js', import.meta.url);

async function waitFor(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error('condition not met within 10 s');
}

describe('domains: a crashed domain is cleaned up by the host', function () {
  this.timeout(30_000);

  it('crash closes its ports (peer woken, port unbound), releases its grants and removes its store entries', async () => {
    const host = new Host({ name: 'crash-test' });
    try {
      // dom0 idles as the driver domain; the two guests are 1 (holder) and 2 (binder).
      host.createDomain({ name: 'dom0', program: HOLDER, args: { peer: 1 } });
      const holder = host.createDomain({ name: 'holder', program: HOLDER, args: { peer: 2 } });
      const binder = host.createDomain({ name: 'binder', program: BINDER, args: { holder: holder.domid } });
      await waitFor(async () => (await host.toolstack.tryRead(`/local/domain/${binder.domid}/bound`)) === '1');
      const ref = Number(await host.toolstack.read(`/local/domain/${holder.domid}/data/ref`));
      const pinned = host.grants.snapshot(holder.domid, ref);
      assert.equal(pinned.writePins, 1, 'binder holds a write pin');

      await host.crashDomain(holder.domid);
      await assert.rejects(holder.result, { code: 'PV_ERR_DOMAIN_CRASHED' });
      assert.equal(holder.state, 'crashed');
      assert.equal(await host.toolstack.tryRead(`/local/domain/${holder.domid}/data/ref`), undefined);

      const r = (await binder.result).value as Record<string, unknown>;
      assert.deepEqual(r.firstBytes, [1, 2, 3, 4], 'the mapping was a view of the holder page');
      assert.equal(r.notifyAfterDeath, 'PV_ERR_EVTCHN_BAD_STATE', 'the peer port went back to unbound');
      assert.equal(r.stillMapped, 1, 'the dead granter cannot revoke a live mapping');
      assert.equal(r.liveAfterUnmap, 0);
      // Once the mapper unmapped, the dead domain's grant can be ended.
      const report = host.grants.releaseDomain(holder.domid as DomId);
      assert.equal(report.stillMapped, 0);
      assert.equal(host.grants.snapshot(holder.domid, ref).flags & 3, 0, 'grant entry ended');
    } finally {
      await host.shutdown();
    }
  });

  it('a program that throws rejects its result with the error code and is torn down', async () => {
    const host = new Host({ name: 'throw-test' });
    try {
      const d = host.createDomain({ name: 'bad', program: new URL('./programs/Missing.js', import.meta.url) });
      await assert.rejects(d.result);
      await d.whenExited();
      assert.equal(host.domains().length, 0);
      assert.equal(await host.toolstack.tryRead(`/local/domain/${d.domid}`), undefined);
    } finally {
      await host.shutdown();
    }
  });

  it('a request left outstanding when the program returns does not fail the finished domain', async () => {
    const host = new Host({ name: 'late-reject' });
    try {
      const program = new URL('./programs/LeavesRequest.js', import.meta.url);
      const domains = Array.from({ length: 8 }, (_, i) => host.createDomain({ name: `d${i}`, program }));
      const results = await Promise.all(domains.map((d) => d.result));
      assert.deepEqual(
        results.map((r) => r.value),
        domains.map(() => 'done'),
      );
      assert.ok(domains.every((d) => d.state === 'finished'));
    } finally {
      await host.shutdown();
    }
  });

  it('refuses a domain id beyond the host limit with a message naming the limit', () => {
    const host = new Host({ name: 'limits', maxDomains: 4 });
    assert.throws(() => host.createDomain({ name: 'x', program: HOLDER, domid: 9 }), {
      code: 'PV_ERR_CONFIG',
      message: /maxDomains \(4\)/,
    });
  });
});
