/**
 * Peer-to-peer DMA: an NVMe READ pointed at the accelerator's BAR 1 lands in device memory with
 * no bounce through host RAM, checksums the same as the file and as the bounce path; the fabric
 * model counts the hops of both paths; a P2P window protects like an IOMMU mapping does.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { p2p, unmapP2p } from '../../../../drivers/accel/P2p.js';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import { bouncePath, p2pHost, p2pPath } from '../../../../hypervisor-sim/devices/accel/P2pPaths.js';
import { P2P_IOVA_BASE, P2P_SLOTS } from '../../../../hypervisor-sim/devices/accel/PeerWindows.js';
import { PcieCluster } from '../../../../hypervisor-sim/pcie/PcieCluster.js';
import { fabricProfile } from '../../../../hypervisor-sim/pcie/Profiles.js';
import type { Route } from '../../../../hypervisor-sim/pcie/Types.js';
import { crc32, fnv1a32 } from '../../../../protocol/accel/AccelRegs.js';
import { NvmeStatus } from '../../../../protocol/nvme/NvmeCommand.js';
import type { Iova } from '../../../../protocol/Types.js';
import { type AccelRig, makeAccelRig, pattern } from './helpers/AccelRig.js';

const LBA = 512;

function path(r: Route): string[] {
  return r.hops.map((h) => (h.kind === 'link' ? `${h.from}>${h.to}` : `ntb:${h.ntb}`));
}

describe('accel P2P correctness: NVMe reads straight into accelerator memory', function () {
  this.timeout(30_000);
  let rig: AccelRig;
  let nvme: NvmeDriver;
  let accel: AccelDriver;
  const file = pattern(1 << 20, 42);

  beforeEach(() => {
    rig = makeAccelRig({ nvmeBytes: 8 << 20, devBytes: 4 << 20 });
    // The data is written to the NVMe backing file directly, as a dataset on disk would be.
    const fd = fs.openSync(rig.nvme!.backingFile, 'r+');
    fs.writeSync(fd, file, 0, file.length, 100 * LBA);
    fs.closeSync(fd);
    nvme = new NvmeDriver(rig.nvmePci!, rig.mem, { ioQueues: 1 });
    accel = new AccelDriver(rig.accelPci);
  });
  afterEach(() => {
    nvme.close();
    rig.dispose();
  });

  it('P2P: NVMe READ into BAR 1, checksummed on the device == checksum of the file bytes; host RAM untouched', () => {
    const win = p2p(rig.nvmePci!, rig.accelPci);
    assert.equal(win, P2P_IOVA_BASE);
    const freeBefore = rig.mem.freePageCount();
    const dev = 65536;
    // 1 MiB in four 256 KiB READs (MDTS is 4 MiB; smaller commands exercise PRP lists into BAR 1).
    for (let k = 0; k < 4; k++) {
      const blocks = (256 << 10) / LBA;
      const c = nvme.wait(1, nvme.submitIo('read', 100 + k * blocks, blocks, (win + dev + k * (256 << 10)) as Iova));
      nvme.check(c, 'P2P READ', 100 + k * blocks, blocks);
    }
    assert.deepEqual(accel.checksum(dev, file.length), { fnv1a: fnv1a32(file), crc32: crc32(file) });
    assert.equal(rig.mem.freePageCount(), freeBefore, 'no bounce buffer was allocated');
    assert.equal(rig.accel.metrics().dmaTransfers, 0, "the accelerator's DMA engine never ran");
    assert.equal(rig.accels.resolver('nvme0', undefined as never).peerBytes, file.length);
  });

  it('bounce: NVMe → host RAM → accelerator DMA engine → device memory gives the same checksum', () => {
    const gpa = rig.mem.allocPages(file.length / 4096);
    nvme.read(100, file.length / LBA, gpa);
    accel.copyToDevice(gpa, 0, file.length);
    assert.equal(accel.checksum(0, file.length).fnv1a, fnv1a32(file));
    assert.equal(rig.accel.metrics().bytesToDevice, file.length);
  });

  it('a P2P window is bounded and permissioned: past BAR 1 or read-only → the NVMe command fails, nothing lands', () => {
    const ro = p2p(rig.nvmePci!, rig.accelPci, true);
    const c1 = nvme.wait(1, nvme.submitIo('read', 100, 8, ro));
    assert.equal(c1.status, NvmeStatus.DATA_TRANSFER_ERROR, 'a READ writes memory: refused by a read-only window');
    assert.ok(
      rig.accel.ctx.mem.every((b) => b === 0),
      'no byte reached device memory',
    );
    const rw = p2p(rig.nvmePci!, rig.accelPci);
    const c2 = nvme.wait(1, nvme.submitIo('read', 100, 16, (rw + (4 << 20) - 4096) as Iova));
    assert.equal(c2.status, NvmeStatus.DATA_TRANSFER_ERROR, 'the transfer runs past the end of BAR 1');
    // The page inside BAR 1 may have landed before the fault (as on a real controller); the
    // page past the end resolved nowhere.
    assert.ok(rig.accel.ctx.mem.subarray(0, (4 << 20) - 4096).every((b) => b === 0));
    assert.ok(unmapP2p(rig.nvmePci!, rw));
    const c3 = nvme.wait(1, nvme.submitIo('read', 100, 8, rw));
    assert.equal(c3.status, NvmeStatus.DATA_TRANSFER_ERROR, 'an unmapped window no longer resolves');
    // NVMe WRITE from accelerator memory through the read-only window is allowed (a DMA read).
    rig.accel.ctx.mem.set(pattern(4096, 9), 0);
    nvme.check(nvme.wait(1, nvme.submitIo('write', 5000, 8, ro)), 'WRITE', 5000, 8);
    const back = rig.mem.allocPages(1);
    nvme.read(5000, 8, back);
    assert.deepEqual(rig.mem.view(back, 4096), pattern(4096, 9));
  });

  it('the peer DMA port refuses what is not an owned accelerator BAR 1, and runs out of windows cleanly', () => {
    const port = (rig.nvmePci as unknown as { peerDma: { mapPeerBar(p: unknown, bar: number): number } }).peerDma;
    assert.throws(() => port.mapPeerBar(rig.accelPci, 0), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => port.mapPeerBar(rig.nvmePci, 1), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => port.mapPeerBar({ ...rig.accelPci, name: 'accel9' }, 1), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => p2p(rig.accelPci, rig.accelPci), { code: 'PV_ERR_CONFIG' }, 'not its own peer');
    for (let i = 0; i < P2P_SLOTS; i++) p2p(rig.nvmePci!, rig.accelPci);
    assert.throws(() => p2p(rig.nvmePci!, rig.accelPci), { code: 'PV_ERR_LIMIT' });
  });
});

describe('accel P2P paths in the fabric model: P2P turns at the switch, bounce goes through the root complex twice', () => {
  const cluster = PcieCluster.create({ hosts: [p2pHost()], ntbs: [] });
  const nvme0 = { host: 'h0', node: 'nvme0' };
  const accel0 = { host: 'h0', node: 'accel0' };

  it('P2P: nvme0 > sw0 > accel0, two links, no root complex, ends in BAR 1 of accel0', () => {
    const s = p2pPath(cluster, nvme0, accel0, 65536, 1 << 20, fabricProfile('ideal'));
    assert.equal(s.routes.length, 1);
    assert.deepEqual(path(s.routes[0]), ['nvme0>sw0', 'sw0>accel0']);
    assert.deepEqual(s.routes[0].target, { kind: 'bar', host: 'h0', endpoint: 'accel0', bar: 1, offset: 65536 });
    assert.equal(s.linkHops, 2);
    assert.equal(s.rootComplexLegs, 0);
    assert.equal(s.ntbCrossings, 0);
  });

  it('bounce: nvme0 > sw0 > rc, then accel0 > sw0 > rc — four links, the root complex on both legs', () => {
    const s = bouncePath(cluster, nvme0, accel0, 0x10_0000, 1 << 20, fabricProfile('ideal'));
    assert.deepEqual(s.routes.map(path), [
      ['nvme0>sw0', 'sw0>rc'],
      ['accel0>sw0', 'sw0>rc'],
    ]);
    assert.equal(s.linkHops, 4);
    assert.equal(s.rootComplexLegs, 2);
  });

  it('costs: ideal prices both at 0; pcie3-x8-ntb prices the bounce above P2P (two legs, a read round trip)', () => {
    const ideal = fabricProfile('ideal');
    assert.equal(p2pPath(cluster, nvme0, accel0, 0, 4096, ideal).costNs, 0);
    assert.equal(bouncePath(cluster, nvme0, accel0, 0, 4096, ideal).costNs, 0);
    const gen3 = fabricProfile('pcie3-x8-ntb');
    const p = p2pPath(cluster, nvme0, accel0, 0, 1 << 20, gen3).costNs;
    const b = bouncePath(cluster, nvme0, accel0, 0, 1 << 20, gen3).costNs;
    assert.ok(p > 0 && b > p, `P2P ${p} ns < bounce ${b} ns`);
  });
});
