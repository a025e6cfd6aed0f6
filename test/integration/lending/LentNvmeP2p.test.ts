/**
 * NVMe → accelerator P2P across hosts (issue 5): host A lends nvme0 (file-backed) and accel0,
 * host C lends accel0; host B borrows all three and maps the SSD onto each accelerator's BAR 1
 * (Cluster.mapP2p with an NVMe initiator, P2pNvme.ts).
 *  - the UNCHANGED NvmeDriver in a domain of B READs A's file straight into accel0@C (across the
 *    A–C NTB) and into accel0@A (through A's switch); each accelerator checksums what landed
 *    == the checksum of the file bytes;
 *  - B's RAM never holds the data and the accelerators' DMA engines never run; the bounce path
 *    (NVMe → B RAM → accelerator DMA) is the control: the data is then in B's RAM;
 *  - counts: P2P crosses 1 NTB to C and 0 within A per access; the bounce path 1 + 1 = 2;
 *  - a forced return of either device makes the next P2P READ fail at once (no hang).
 */

import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import type { LentCountersSnapshot } from '../../../hypervisor-sim/cluster/LentStats.js';
import { crc32, fnv1a32 } from '../../../protocol/accel/AccelRegs.js';

const PROBE = new URL('./programs/LentNvmeP2pProbe.js', import.meta.url);
const LBA = 128;
const CHUNKS = 4;
const BYTES = CHUNKS * 32 * 512;

function makeCluster(): Cluster {
  return new Cluster({
    hosts: [
      {
        name: 'A',
        nvmes: [{ name: 'nvme0', sizeBytes: 8 << 20, maxIoQueues: 4 }],
        accels: [{ name: 'accel0', memBytes: 1 << 20 }],
      },
      { name: 'B' },
      { name: 'C', accels: [{ name: 'accel0', memBytes: 1 << 20 }] },
    ],
  });
}

/** Deterministic non-repeating bytes (xorshift32), written into A's backing file at LBA. */
function seedFile(cluster: Cluster): Uint8Array {
  const data = new Uint8Array(BYTES);
  let x = 0x9e37_79b9;
  for (let i = 0; i < BYTES; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  const fd = openSync(cluster.host('A').devices.backingFile('nvme0'), 'r+');
  try {
    writeSync(fd, data, 0, BYTES, LBA * 512);
  } finally {
    closeSync(fd);
  }
  return data;
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface RunOut {
  ok: boolean;
  statuses: string[];
  sums: Record<string, { fnv1a: number; crc32: number }>;
  inRam: boolean;
  bufZero: boolean;
}

describe('lent NVMe as P2P initiator: nvme0@A READs straight into accel0@C and accel0@A, borrowed by B', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let data: Uint8Array;
  const h: Record<string, LentHandle> = {};
  const maps: Record<string, { addr: number; ntbCrossings: number; linkHops: number }> = {};
  let p2p: RunOut;
  let bounce: RunOut;
  let afterP2p: Record<string, LentCountersSnapshot>;
  let afterBounce: Record<string, LentCountersSnapshot>;

  const snap = (): Record<string, LentCountersSnapshot> =>
    Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.stats.snapshot()]));

  const run = async (mode: 'p2p' | 'bounce', domid: number): Promise<RunOut> => {
    const d = cluster.host('B').createDomain({
      name: mode,
      domid,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: Object.keys(h).map((device) => ({ device, iommu: 'bypass' as const })),
      args: {
        mode,
        nvme: 'nvme0@A',
        targets: ['accel0@C', 'accel0@A'].map((name) => ({ name, addr: maps[name].addr })),
        lba: LBA,
        chunks: CHUNKS,
        signature: Array.from(data.subarray(1000, 1032)),
      },
    });
    const out = (await d.result).value as RunOut;
    await until(() => Object.keys(h).every((k) => cluster.lending('B').owner(k) === undefined), 'owners released');
    return out;
  };

  before(async () => {
    cluster = makeCluster();
    data = seedFile(cluster);
    for (const [host, dev] of [
      ['A', 'nvme0'],
      ['A', 'accel0'],
      ['C', 'accel0'],
    ]) {
      const id = await cluster.lend(host, dev);
      h[id] = await cluster.borrow(id, 'B');
    }
    for (const t of ['accel0@C', 'accel0@A']) maps[t] = cluster.mapP2p(h['nvme0@A'], h[t]);
    p2p = await run('p2p', 1);
    afterP2p = snap();
    bounce = await run('bounce', 2);
    afterBounce = snap();
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('the file bytes land in each accelerator: its own checksum equals the checksum of the file', () => {
    const want = { fnv1a: fnv1a32(data), crc32: crc32(data) };
    assert.deepEqual(p2p.statuses, ['ok']);
    assert.deepEqual(p2p.sums['accel0@C'], want);
    assert.deepEqual(p2p.sums['accel0@A'], want);
    assert.deepEqual(bounce.sums['accel0@C'], want, 'the bounce path moves the same bytes');
    assert.deepEqual(bounce.sums['accel0@A'], want);
  });

  it('P2P leaves B’s RAM untouched by the data and never runs the accelerators’ DMA engines', () => {
    assert.equal(p2p.inRam, false, 'no copy of the data anywhere in the domain’s RAM');
    assert.equal(p2p.bufZero, true);
    for (const t of ['accel0@C', 'accel0@A']) {
      assert.equal(afterP2p[t].dmaReads + afterP2p[t].dmaWrites, 0, `${t}: DMA engine idle`);
    }
    // Control: the scan sees the data when it does go through B's RAM.
    assert.equal(bounce.inRam, true);
    assert.equal(bounce.bufZero, false);
  });

  it('counts: P2P crosses 1 NTB to C and 0 within A per access; the bounce path crosses 2', () => {
    const n = afterP2p['nvme0@A'];
    assert.ok(n.p2pWrites > 0 && n.p2pWrites % 2 === 0, JSON.stringify(n));
    assert.equal(n.p2pReads, 0, 'a READ only writes into the accelerator');
    const perTarget = n.p2pWrites / 2;
    assert.equal(n.p2pNtbCrossings, perTarget * (1 + 0));
    assert.equal(n.p2pLinkHops, perTarget * (4 + 2), 'nvme0 → sw → ntb-C, ntb-A → sw → accel0; nvme0 → sw → accel0');
    // Bounce: the same commands; the data accesses now go A → B RAM (one NTB each)…
    const b = afterBounce['nvme0@A'];
    const dataWrites = b.dmaWrites - 2 * n.dmaWrites;
    assert.equal(dataWrites, n.p2pWrites, 'each P2P access became a write into B’s RAM');
    assert.equal(b.dmaNtbCrossings - n.dmaNtbCrossings, b.dmaReads + b.dmaWrites - n.dmaReads - n.dmaWrites);
    assert.equal(b.p2pWrites, n.p2pWrites, 'no P2P in the bounce run');
    // … and each accelerator's DMA engine reads it back from B (one NTB each).
    for (const t of ['accel0@C', 'accel0@A']) {
      const s = afterBounce[t];
      assert.ok(s.dmaReads > 0, t);
      assert.equal(s.dmaNtbCrossings, s.dmaReads, `${t}: B RAM → accelerator crosses one NTB`);
    }
    // Per access of the data, measured: bounce = SSD → B (its share of the extra crossings) +
    // B → accelerator; P2P = the route's crossings (p2pNtbCrossings per target).
    const ssdLeg = (b.dmaNtbCrossings - 2 * n.dmaNtbCrossings) / dataWrites;
    for (const [t, p2pPerAccess] of [
      ['accel0@C', 1],
      ['accel0@A', 0],
    ] as const) {
      const accelLeg = afterBounce[t].dmaNtbCrossings / afterBounce[t].dmaReads;
      assert.equal(ssdLeg + accelLeg, 2, `${t}: bounce crosses two NTBs per access`);
      assert.equal(maps[t].ntbCrossings, p2pPerAccess, `${t}: P2P crosses ${p2pPerAccess}`);
    }
    assert.equal(n.dmaFaults + b.dmaFaults, 0);
  });

  it('the target must be an accelerator: an SSD’s media is no BAR another device can DMA into', () => {
    assert.throws(() => cluster.mapP2p(h['accel0@A'], h['nvme0@A']), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => cluster.mapP2p(h['nvme0@A'], h['nvme0@A']), { code: 'PV_ERR_CONFIG' });
  });

  it('idle afterwards: every lease returns without force and every window closes', async () => {
    for (const handle of Object.values(h)) {
      assert.equal(cluster.inUse(handle), 0);
      await cluster.giveBack(handle);
    }
    for (const host of ['A', 'B', 'C']) assert.equal(cluster.fabric.windows(host).length, 0, host);
  });
});

for (const victim of ['nvme0@A', 'accel0@C'] as const) {
  describe(`forced return of ${victim} while B’s domain READs nvme0@A into accel0@C`, function () {
    this.timeout(120_000);
    let cluster: Cluster;
    const h: Record<string, LentHandle> = {};
    const go = new SharedArrayBuffer(4);
    let dom: ReturnType<ReturnType<Cluster['host']>['createDomain']>;
    let data: Uint8Array;

    before(async () => {
      cluster = makeCluster();
      data = seedFile(cluster);
      for (const id of [await cluster.lend('A', 'nvme0'), await cluster.lend('C', 'accel0')]) {
        h[id] = await cluster.borrow(id, 'B');
      }
      const map = cluster.mapP2p(h['nvme0@A'], h['accel0@C']);
      dom = cluster.host('B').createDomain({
        name: 'victim',
        domid: 1,
        program: PROBE,
        memoryBytes: 16 << 20,
        pci: Object.keys(h).map((device) => ({ device, iommu: 'bypass' as const })),
        args: {
          mode: 'revoke',
          nvme: 'nvme0@A',
          targets: [{ name: 'accel0@C', addr: map.addr }],
          lba: LBA,
          chunks: 2,
          signature: Array.from(data.subarray(1000, 1032)),
          go,
        },
      });
      await until(() => dom.console.includes('ready'), 'the first P2P READ');
    });

    after(async () => {
      await cluster?.shutdown();
    });

    it('the next P2P READ fails at once with an error (no hang), and never lands in B’s RAM', async () => {
      await cluster.giveBack(h[victim], { force: true });
      const w = new Int32Array(go);
      Atomics.store(w, 0, 1);
      Atomics.notify(w, 0);
      const r = (await dom.result).value as { before: string; after: string; inRam: boolean };
      assert.equal(r.before, 'ok');
      if (victim === 'nvme0@A') {
        assert.equal(r.after, 'PV_ERR_LEND_REVOKED', 'the doorbell of a returned SSD throws');
      } else {
        assert.equal(r.after, 'Data Transfer Error', 'the P2P window is gone: the controller’s DMA faults');
        assert.ok(h['nvme0@A'].stats.snapshot().dmaFaults >= 1);
      }
      assert.equal(r.inRam, false);
    });

    it('the P2P windows are closed with the lease', () => {
      // Only the surviving lease's own windows remain: one per BAR on B, the DMA window on its lender.
      const survivor = victim === 'nvme0@A' ? 'C' : 'A';
      assert.equal(cluster.fabric.windows('B').length, survivor === 'C' ? 2 : 1);
      assert.equal(cluster.fabric.windows(survivor).length, 1);
      assert.equal(cluster.fabric.windows(survivor === 'A' ? 'C' : 'A').length, 0);
    });
  });
}
