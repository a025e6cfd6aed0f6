/**
 * Lent accelerators: hosts A (accel0, accel1) and C (accel0) lend; host B borrows all three.
 *  - the UNCHANGED AccelDriver in a domain of B runs on `accel0@A`: DMA through the lender's DMA
 *    window into B, kernels with correct results, BAR 1 words through the BAR 1 window;
 *  - cross-host P2P: accel0@A's DMA engine writes into accel1@A's BAR 1 (through A's switch)
 *    and into accel0@C's BAR 1 (through the A–C NTB); the targets checksum what landed;
 *  - every access is counted: MMIO and DMA cross one NTB each, P2P 0 and 1;
 *  - a forced return fails the next register and BAR 1 access with PV_ERR_LEND_REVOKED, and the
 *    lender's reset scrubs the device memory before C borrows it.
 */

import assert from 'node:assert/strict';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { crc32, fnv1a32 } from '../../../protocol/accel/AccelRegs.js';

const PROBE = new URL('./programs/LentAccelProbe.js', import.meta.url);
const MEM = 1 << 20;

function makeCluster(): Cluster {
  return new Cluster({
    hosts: [
      {
        name: 'A',
        accels: [
          { name: 'accel0', memBytes: MEM },
          { name: 'accel1', memBytes: MEM },
        ],
      },
      { name: 'B' },
      { name: 'C', accels: [{ name: 'accel0', memBytes: MEM }] },
    ],
  });
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff);

describe('lent accelerator: the unchanged AccelDriver on accel0@A in a domain of B, and P2P to accel1@A and accel0@C', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const h: Record<string, LentHandle> = {};
  let out: {
    sumOk: boolean;
    checksum: { fnv1a: number; crc32: number };
    bar1: number;
    viaDma: number;
    p2p: Record<string, unknown>;
  };
  let hops: { local: number; remote: number };

  before(async () => {
    cluster = makeCluster();
    for (const [host, dev] of [
      ['A', 'accel0'],
      ['A', 'accel1'],
      ['C', 'accel0'],
    ]) {
      const id = await cluster.lend(host, dev);
      h[id] = await cluster.borrow(id, 'B');
    }
    const local = cluster.mapP2p(h['accel0@A'], h['accel1@A']);
    const remote = cluster.mapP2p(h['accel0@A'], h['accel0@C']);
    hops = { local: local.ntbCrossings, remote: remote.ntbCrossings };
    const d = cluster.host('B').createDomain({
      name: 'gpu',
      domid: 1,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: Object.keys(h).map((device) => ({ device, iommu: 'bypass' as const })),
      args: {
        mode: 'compute',
        names: ['accel0@A'],
        p2p: [
          { target: 'accel1@A', addr: local.addr, dev: 0 },
          { target: 'accel0@C', addr: remote.addr, dev: 0 },
        ],
      },
    });
    out = (await d.result).value as typeof out;
    await until(() => cluster.lending('B').owner('accel0@A') === undefined, 'the owner to be released');
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('kernels give correct results on the lent device: vector add, checksum of the DMAed bytes', () => {
    assert.equal(out.sumOk, true);
    assert.deepEqual(out.checksum, { fnv1a: fnv1a32(pattern), crc32: crc32(pattern) });
  });

  it('BAR 1 is reachable from B through its window: a word written by MMIO reads back and DMAs out', () => {
    assert.equal(out.bar1, 0x1234_5678);
    assert.equal(out.viaDma, 0x1234_5678);
  });

  it('P2P data lands intact in the peer on the same lender and in the peer on another lender', () => {
    const want = { fnv1a: fnv1a32(pattern), crc32: crc32(pattern) };
    assert.deepEqual(out.p2p['accel1@A'], want);
    assert.deepEqual(out.p2p['accel0@C'], want);
    // The target checksummed them on its side while the domain lived; its exit reset the device.
    const c = new Uint8Array(cluster.host('C').devices.accelData('accel0').state.mem, 0, 4096);
    assert.ok(
      c.every((x) => x === 0),
      'the owner’s exit scrubbed accel0@C (function-level reset)',
    );
  });

  it('counts: each MMIO and DMA crossed one NTB; P2P crossed none within A and one to C', () => {
    assert.deepEqual(hops, { local: 0, remote: 1 });
    const s = h['accel0@A'].stats.snapshot();
    assert.ok(s.mmioWrites > 0 && s.mmioReads > 0 && s.dmaReads > 0 && s.dmaWrites > 0, JSON.stringify(s));
    assert.equal(s.mmioNtbCrossings, s.mmioReads + s.mmioWrites);
    assert.equal(s.mmioLinkHops, 4 * (s.mmioReads + s.mmioWrites), 'rc → sw → ntb-A on B, ntb-B → sw → BAR on A');
    assert.equal(s.dmaNtbCrossings, s.dmaReads + s.dmaWrites);
    assert.equal(s.p2pWrites, 2);
    assert.equal(s.p2pNtbCrossings, 1);
    assert.equal(s.p2pLinkHops, 2 + 4, 'accel0 → sw → accel1; accel0 → sw → ntb-C, ntb-A → sw → accel0 on C');
    assert.equal(s.dmaFaults, 0);
    assert.equal(s.mmioRefused, 0);
    assert.equal(s.fabricNs, 0, 'ideal profile');
  });

  it('idle once the program is gone: every lease returns without force, P2P windows close', async () => {
    for (const handle of Object.values(h)) {
      assert.equal(cluster.inUse(handle), 0);
      await cluster.giveBack(handle);
    }
    for (const host of ['A', 'B', 'C']) assert.equal(cluster.fabric.windows(host).length, 0, host);
  });
});

describe('forced return of a lent accelerator while a domain of B drives it', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let handle: LentHandle;
  const go = new SharedArrayBuffer(4);
  let dom: ReturnType<ReturnType<Cluster['host']>['createDomain']>;

  before(async () => {
    cluster = makeCluster();
    handle = await cluster.borrow(await cluster.lend('A', 'accel0'), 'B');
    // Something on the device the next borrower must not see.
    new Uint8Array(cluster.host('A').devices.accelData('accel0').state.mem).fill(0xab, 0, 4096);
    dom = cluster.host('B').createDomain({
      name: 'victim',
      domid: 1,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: [{ device: 'accel0@A', iommu: 'translate' }],
      args: { mode: 'revoke', names: ['accel0@A'], go },
    });
    await until(() => dom.console.includes('ready'), 'the driver to be up');
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('a plain return is refused while B’s domain owns it; C cannot borrow it meanwhile', async () => {
    assert.equal(cluster.inUse(handle), 1);
    await assert.rejects(cluster.giveBack(handle), { code: 'PV_ERR_LEND_IN_USE' });
    await assert.rejects(cluster.borrow('accel0@A', 'C'), { code: 'PV_ERR_LEND_BUSY' });
  });

  it('forced: the next kernel launch and BAR 1 read fail with PV_ERR_LEND_REVOKED, no hang', async () => {
    await cluster.giveBack(handle, { force: true });
    const w = new Int32Array(go);
    Atomics.store(w, 0, 1);
    Atomics.notify(w, 0);
    const r = (await dom.result).value as { checksum: string; bar1: string };
    assert.equal(r.checksum, 'PV_ERR_LEND_REVOKED');
    assert.equal(r.bar1, 'PV_ERR_LEND_REVOKED');
    assert.ok(handle.stats.snapshot().mmioRefused >= 1);
  });

  it('the windows are closed, the memory scrubbed, and C can borrow it', async () => {
    assert.equal(cluster.fabric.windows('A').length, 0);
    assert.equal(cluster.fabric.windows('B').length, 0);
    const mem = new Uint8Array(cluster.host('A').devices.accelData('accel0').state.mem);
    assert.ok(
      mem.every((b) => b === 0),
      'function-level reset scrubbed the device memory',
    );
    const c = await cluster.borrow('accel0@A', 'C');
    assert.equal(c.borrower, 'C');
  });
});
