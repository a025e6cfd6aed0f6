import assert from 'node:assert/strict';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { WcStatus } from '../../../protocol/rdma/Verbs.js';

const RDMA_PEER = new URL('./programs/RdmaPeer.js', import.meta.url);
const BYTES = 3 * 4096 + 100;

describe('rnic across domains: an RDMA WRITE from domain A on nic0 lands in domain B memory on nic1', function () {
  this.timeout(60_000);

  for (const deviceEngine of ['inline', 'dedicated'] as const) {
    it(`(${deviceEngine}) both own their NIC through a translating IOMMU; the WRITE completes with SUCCESS`, async () => {
      const host = new Host({
        name: `rdma-${deviceEngine}`,
        nics: [
          { name: 'nic0', portId: 1 },
          { name: 'nic1', portId: 2 },
        ],
        deviceEngine,
      });
      try {
        const a = host.createDomain({
          name: 'a',
          domid: 1,
          program: RDMA_PEER,
          args: { role: 'initiator', peer: 2, bytes: BYTES },
          pci: [{ device: 'nic0', iommu: 'translate' }],
        });
        const b = host.createDomain({
          name: 'b',
          domid: 2,
          program: RDMA_PEER,
          args: { role: 'target', peer: 1, bytes: BYTES },
          pci: [{ device: 'nic1', iommu: 'translate' }],
        });
        const [sa, sb] = await Promise.allSettled([a.result, b.result]);
        if (sa.status === 'rejected' || sb.status === 'rejected') {
          const why = (s: PromiseSettledResult<unknown>): string =>
            s.status === 'rejected' ? (s.reason as Error).message : 'ok';
          const engine = host.engineThread?.error?.message ?? 'none';
          assert.fail(`initiator: ${why(sa)}; target: ${why(sb)}; device thread error: ${engine}`);
        }
        const [ra, rb] = [sa.value, sb.value];
        assert.deepEqual(ra.value, {
          role: 'initiator',
          portId: 1,
          wrId: 42,
          status: WcStatus.SUCCESS,
          byteLen: BYTES,
        });
        assert.deepEqual(rb.value, { role: 'target', portId: 2, mismatches: 0, head: [3, 10, 17, 24] });
        assert.equal(host.devices.iommu('nic0').faults(), 0);
        assert.equal(host.devices.iommu('nic1').faults(), 0);
        // The device thread leaves on its stop word, without the terminate() fallback.
        assert.equal(await host.shutdown(), deviceEngine === 'dedicated' ? 'stopped' : 'none');
      } finally {
        await host.shutdown();
      }
    });
  }
});
