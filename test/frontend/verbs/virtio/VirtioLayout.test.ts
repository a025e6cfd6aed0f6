/**
 * The guest's block for one virtio-rdma device (frontend/verbs/virtio/VirtioLayout.ts): every area
 * page-aligned, no two areas overlapping, every slot pair inside its area, for split and packed.
 */

import assert from 'node:assert/strict';
import { VirtioLayout } from '../../../../frontend/verbs/virtio/VirtioLayout.js';
import { PV_CTRL_SLOT_SIZE, PV_DATA_SLOT_SIZE } from '../../../../protocol/rdma/pv/PvConstants.js';
import { VRDMA_CTRL_QUEUE_SIZE, VRDMA_DATA_QUEUE_SIZE } from '../../../../protocol/rdma/virtio/VirtioRdma.js';
import { PAGE_SIZE } from '../../../../protocol/Types.js';
import { MMIO_REG_BYTES } from '../../../../protocol/virtio/MmioTransport.js';
import { packedLayout } from '../../../../protocol/virtio/PackedRing.js';
import { splitLayout } from '../../../../protocol/virtio/SplitRing.js';

describe('virtio-rdma guest block layout', () => {
  for (const packed of [false, true]) {
    it(`${packed ? 'packed' : 'split'}: areas are page-aligned, disjoint, in order, and the block is whole pages`, () => {
      const base = 5 * PAGE_SIZE;
      const l = new VirtioLayout(2 * PAGE_SIZE, base, packed);
      const q = (qs: number) => (packed ? packedLayout(qs).bytes : splitLayout(qs).bytes);
      assert.equal(l.window, 2 * PAGE_SIZE, 'the window is its own page, outside the block');
      assert.ok(MMIO_REG_BYTES <= PAGE_SIZE);
      const areas: Array<[string, number, number]> = [
        ['ctrl queue', l.ctrlQueue, q(VRDMA_CTRL_QUEUE_SIZE)],
        ['data queue', l.dataQueue, q(VRDMA_DATA_QUEUE_SIZE)],
        ['ctrl slots', l.ctrlReq(0), l.ctrlSlots * 2 * PV_CTRL_SLOT_SIZE],
        ['data slots', l.dataReq(0), l.dataSlots * 2 * PV_DATA_SLOT_SIZE],
      ];
      assert.equal(l.ctrlQueue, base);
      for (let i = 0; i < areas.length; i++) {
        const [name, at, bytes] = areas[i];
        assert.equal(at % PAGE_SIZE, 0, `${name} page-aligned`);
        if (i > 0) assert.ok(areas[i - 1][1] + areas[i - 1][2] <= at, `${areas[i - 1][0]} ends before ${name}`);
        assert.ok(at + bytes <= base + l.pages * PAGE_SIZE, `${name} inside the block`);
      }
      assert.equal(VirtioLayout.pagesFor(packed), l.pages);
      assert.equal(l.dataSlots, VRDMA_DATA_QUEUE_SIZE / 2);
      // Slot pairs: request then response, each a whole slot, never shared between pairs.
      for (let i = 0; i < l.dataSlots; i++) {
        assert.equal(l.dataRsp(i) - l.dataReq(i), PV_DATA_SLOT_SIZE);
        if (i > 0) assert.equal(l.dataReq(i) - l.dataRsp(i - 1), PV_DATA_SLOT_SIZE);
      }
      assert.equal(l.ctrlRsp(1) - l.ctrlReq(0), 3 * PV_CTRL_SLOT_SIZE);
    });
  }
});
