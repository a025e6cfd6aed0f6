import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { crc32, fnv1a32 } from '../../../protocol/accel/AccelRegs.js';
import type { P2pReport } from './programs/P2pProgram.js';

const PROGRAM = new URL('./programs/P2pProgram.js', import.meta.url);

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  if (!cond()) throw new Error('condition not met within 10 s');
}

function bytesOf(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 131 + seed * 17 + (i >>> 11)) & 0xff;
  return out;
}

describe('accel in a domain: a real Worker owning nvme0 + accel0 runs the P2P and the bounce path', function () {
  this.timeout(60_000);

  for (const iommu of ['translate', 'bypass'] as const) {
    it(`P2P checksum == bounce checksum == checksum of the file bytes (IOMMU ${iommu}); the owner's exit resets accel0`, async () => {
      const host = new Host({
        name: 'p2p',
        nvmes: [{ name: 'nvme0', sizeBytes: 8 << 20 }],
        accels: [{ name: 'accel0', memBytes: 16 << 20 }],
      });
      try {
        const data = bytesOf(1 << 20, 5);
        const fd = fs.openSync(host.devices.backingFile('nvme0'), 'r+');
        fs.writeSync(fd, data, 0, data.length, 2048 * 512);
        fs.closeSync(fd);
        const d = host.createDomain({
          name: 'owner',
          program: PROGRAM,
          pci: [
            { device: 'nvme0', iommu },
            { device: 'accel0', iommu },
          ],
          args: { lba: 2048, bytes: data.length },
        });
        const r = (await d.result).value as P2pReport;
        const want = { fnv1a: fnv1a32(data), crc32: crc32(data) };
        const transport = iommu === 'translate' ? 'passthrough' : 'native';
        assert.deepEqual(r.transports, [transport, transport]);
        assert.equal(r.nvmeHasPeerDma, true);
        assert.deepEqual(r.p2p, want, 'P2P: NVMe → accelerator memory');
        assert.deepEqual(r.bounce, want, 'bounce: NVMe → RAM → accelerator');
        assert.equal(r.freePages[0], r.freePages[1], 'the P2P path took no host page');
        const m = host.devices.accelMetrics().accel0;
        assert.equal(m.dmaTransfers, 1, 'only the bounce path used the DMA engine');
        assert.equal(m.bytesToDevice, data.length);
        assert.equal(m.checksums, 2);
        assert.equal(m.errors, 0);
        await waitFor(() => host.devices.owner('accel0') === undefined);
        // Not `m.resets + 1`: the domain may exit (and the host reset its device) before `m` is
        // read. The driver resets the device once at probe; the release adds the FLR.
        assert.equal(host.devices.accelMetrics().accel0.resets, 2, 'released with a function-level reset');
      } finally {
        await host.shutdown();
      }
    });
  }

  it('accel0 owned by a live domain is refused to another; a name clash with an NVMe is a config error', async () => {
    assert.throws(() => new Host({ nvmes: [{ name: 'x', sizeBytes: 1 << 20 }], accels: [{ name: 'x' }] }), {
      code: 'PV_ERR_CONFIG',
    });
    const host = new Host({ name: 'conflict', accels: [{ name: 'accel0', memBytes: 1 << 20 }] });
    try {
      const a = host.createDomain({
        name: 'a',
        program: new URL('../../../hypervisor-sim/scenario/IdleProgram.js', import.meta.url),
        pci: [{ device: 'accel0', iommu: 'translate' }],
      });
      assert.equal(host.devices.owner('accel0'), a.domid);
      assert.throws(
        () => host.createDomain({ name: 'b', program: PROGRAM, pci: [{ device: 'accel0', iommu: 'bypass' }] }),
        {
          code: 'PV_ERR_CONFIG',
        },
      );
    } finally {
      await host.shutdown();
    }
  });
});
