/**
 * Teardown (protocol.md §6.4: leaks at teardown, XSA-371): however a guest goes away — an
 * orderly close, an unplug, or its death (the toolstack removes the backend directory) — the
 * backend destroys its QPs, CQs, MRs and PDs on the NIC, unmaps every grant (MR pages, CQ rings,
 * ring pages) and frees its bounce space: dom0's live mappings, IOMMU extents and free pages
 * return to what they were before the guest connected.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../frontend/verbs/index.js';
import type { Transport } from '../../../protocol/Pci.js';
import { VRDMA_DEVICE_TYPE } from '../../../protocol/rdma/pv/PvConstants.js';
import { Access } from '../../../protocol/rdma/Verbs.js';
import { DOM0, type GrantRef, type GuestPhysAddr } from '../../../protocol/Types.js';
import { backendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import { type Dom, PvWorld, until } from './helpers/PvWorld.js';
import { openSide, type Side } from './helpers/Sides.js';

/** What dom0 holds, to compare before and after. */
function snapshot(world: PvWorld): { mappings: number; extents: number; free: number } {
  return {
    mappings: world.dom0.grant.liveMappings(),
    extents: world.iommu.liveExtents(),
    free: world.dom0.mem.freePageCount(),
  };
}

/** A guest with a bit of everything: two CQs, a QP with receives posted, local and remote MRs. */
async function busyGuest(world: PvWorld, dom: Dom, transport: Transport): Promise<{ side: Side; qpn: number }> {
  const side = await openSide(world, dom, transport);
  const extra = side.ctx.allocBuffer(64 * 1024);
  ibv.regMr(side.pd, extra, 32 * 1024, Access.LOCAL_WRITE);
  ibv.regMr(side.pd, (extra + 32 * 1024) as GuestPhysAddr, 32 * 1024, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
  const cq2 = ibv.createCq(side.ctx, 64);
  const qp2 = ibv.createQp(side.pd, {
    sendCq: side.cq,
    recvCq: cq2,
    cap: { maxSendWr: 8, maxRecvWr: 8, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
  });
  ibv.modifyQp(
    qp2,
    { qpState: 1, pkeyIndex: 0, portNum: 1, qpAccessFlags: Access.LOCAL_WRITE },
    1 | (1 << 3) | (1 << 4) | (1 << 5),
  );
  for (let i = 0; i < 4; i++)
    ibv.postRecv(qp2, { wrId: i, sgList: [{ addr: extra, length: 4096, lkey: side.mr.lkey }] });
  world.serve(2);
  return { side, qpn: qp2.qpNum };
}

/** Grant refs of `dom` still mapped by anyone. */
function guestGrantsInUse(world: PvWorld, dom: Dom): number {
  let n = 0;
  for (let ref = 8; ref < world.grants.config.entriesPerDomain; ref++) {
    if (dom.grant.isGrantInUse(ref as GrantRef)) n++;
  }
  return n;
}

for (const transport of ['paravirt', 'paravirt-copy'] as Transport[]) {
  describe(`${transport} teardown: dom0 returns to where it was before the guest connected`, () => {
    let world: PvWorld;
    afterEach(async () => world.close());

    it('an orderly close: NIC objects destroyed, every grant unmapped, bounce space and queues freed', async () => {
      world = await PvWorld.create({ guests: 1 });
      const g = world.guests[0];
      const before = snapshot(world);
      const { side, qpn } = await busyGuest(world, g, transport);
      assert.ok(world.dom0.grant.liveMappings() > before.mappings + 4, 'the guest had things mapped');
      await ibv.closeDevice(side.ctx);
      await until(world, () => world.backend.connections === 0, 'the backend to disconnect');
      assert.deepEqual(snapshot(world), before);
      assert.throws(() => world.driver.queryQp(qpn), { code: 'PV_ERR_RDMA_BAD_HANDLE' }, 'the QP is gone from the NIC');
      assert.equal(guestGrantsInUse(world, g), 0, "none of the guest's pages is still pinned");
      assert.equal(world.backend.stats.teardownErrors, 0);
    });

    it('unplug: the same teardown, and the guest’s later verbs fail with PV_ERR_DISCONNECTED', async () => {
      world = await PvWorld.create({ guests: 1 });
      const g = world.guests[0];
      const before = snapshot(world);
      const { side } = await busyGuest(world, g, transport);
      await world.unplug(g);
      await until(world, () => world.backend.connections === 0, 'the backend to disconnect');
      assert.deepEqual(snapshot(world), before);
      assert.equal(guestGrantsInUse(world, g), 0);
      await until(
        world,
        () => {
          try {
            side.provider.allocPd();
            return false;
          } catch (err) {
            return (err as { code?: string }).code === 'PV_ERR_DISCONNECTED';
          }
        },
        'the frontend to see the device go',
      );
      await side.provider.close();
    });

    it("the guest's death: the toolstack removes the backend directory and dom0 releases everything", async () => {
      world = await PvWorld.create({ guests: 1 });
      const g = world.guests[0];
      const before = snapshot(world);
      await busyGuest(world, g, transport);
      // The host's toolstack does this for a dead frontend (Host._removeBackendDirsOf); the guest
      // itself runs no more code.
      await world.toolstack.rm(backendDir(DOM0, VRDMA_DEVICE_TYPE, g.domid, 0));
      await until(world, () => world.backend.connections === 0, 'the backend to disconnect');
      assert.deepEqual(snapshot(world), before);
      assert.equal(guestGrantsInUse(world, g), 0);
    });
  });
}
