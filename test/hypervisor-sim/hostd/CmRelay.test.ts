import assert from 'node:assert/strict';
import { exchangeConnInfo } from '../../../frontend/verbs/Connect.js';
import { CmRelay, proxyDomid } from '../../../hypervisor-sim/hostd/CmRelay.js';
import { LocalStoreClient } from '../../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../../hypervisor-sim/store/XenStore.js';
import type { CmRecordMsg } from '../../../protocol/link/LinkSchema.js';
import type { DomainEnv } from '../../../protocol/Program.js';
import { DOM0, domId } from '../../../protocol/Types.js';

/** One simulated host's store with guest domain 1 introduced. */
function hostStore() {
  const store = new XenStore();
  store.introduceDomain(domId(1));
  return { toolstack: new LocalStoreClient(store, DOM0), guest: new LocalStoreClient(store, domId(1)) };
}

function env(store: LocalStoreClient): DomainEnv {
  return { domid: domId(1), hypercalls: { store } } as unknown as DomainEnv;
}

describe('hostd/CmRelay', () => {
  it('two guests on two hosts trade perftest records through the unchanged store exchange', async () => {
    const a = hostStore();
    const b = hostStore();
    const wire: CmRecordMsg[] = [];
    // The link is a function here; each relay delivers into the other host's store.
    const relayA = await CmRelay.start(
      a.toolstack,
      { localDomid: 1, remoteHostId: 2, remoteDomid: 1, myHostId: 1 },
      async (m) => {
        wire.push(m);
        await CmRelay.deliver(b.toolstack, m);
      },
    );
    const relayB = await CmRelay.start(
      b.toolstack,
      { localDomid: 1, remoteHostId: 1, remoteDomid: 1, myHostId: 2 },
      async (m) => {
        wire.push(m);
        await CmRelay.deliver(a.toolstack, m);
      },
    );
    try {
      const [fromB, fromA] = await Promise.all([
        exchangeConnInfo(env(a.guest), {
          peerDomid: proxyDomid(2),
          name: 'pt-x',
          info: { qpn: 7, rkey: 11 },
          timeoutMs: 5000,
        }),
        exchangeConnInfo(env(b.guest), {
          peerDomid: proxyDomid(1),
          name: 'pt-x',
          info: { qpn: 9, rkey: 13 },
          timeoutMs: 5000,
        }),
      ]);
      assert.deepEqual(fromB, { qpn: 9, rkey: 13 });
      assert.deepEqual(fromA, { qpn: 7, rkey: 11 });
      assert.equal(wire.length, 2);
      assert.deepEqual(
        wire.map((m) => m.fromDomid).sort(),
        [proxyDomid(1), proxyDomid(2)],
        'each record names its sender by the proxy id the other host knows it by',
      );
    } finally {
      await relayA.close();
      await relayB.close();
    }
  });

  it('a relayed record must come from a proxy domain, have a store-safe name and stay under 4 KiB', async () => {
    const a = hostStore();
    const ok = { toDomid: 1, fromDomid: proxyDomid(3), name: 'pt-1', record: '{}' };
    await CmRelay.deliver(a.toolstack, ok);
    assert.equal(await a.toolstack.read(`/local/domain/1/rdma-cm/from-${proxyDomid(3)}/pt-1`), '{}');
    await assert.rejects(CmRelay.deliver(a.toolstack, { ...ok, fromDomid: 0 }), { code: 'PV_ERR_BAD_REQUEST' });
    await assert.rejects(CmRelay.deliver(a.toolstack, { ...ok, name: '../x' }), { code: 'PV_ERR_BAD_REQUEST' });
    await assert.rejects(CmRelay.deliver(a.toolstack, { ...ok, record: 'x'.repeat(5000) }), {
      code: 'PV_ERR_BAD_LENGTH',
    });
    await assert.rejects(CmRelay.deliver(a.toolstack, { ...ok, toDomid: 0x1_0000 }), { code: 'PV_ERR_INVALID_ARG' });
  });
});
