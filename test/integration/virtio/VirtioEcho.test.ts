/**
 * virtio end to end over the virtio-mmio transport: the guest (VirtioEchoGuest.ts, a Worker)
 * probes the device, negotiates, places its queues in its own memory through the registers and
 * drives them; the device side here is MmioDevice over the guest's memory map, serving Status and
 * register writes, draining each queue it was kicked for, echoing every chain and raising the
 * interrupt only when `publishUsed()` says so. Nothing but the register block and guest memory
 * is shared: the queue addresses reach the device through QueueDesc/Driver/Device.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import type { IovecList } from '../../../backend/virtio/DescChain.js';
import { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../../backend/virtio/MmioDevice.js';
import { guestPhysAddr } from '../../../protocol/Types.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from '../../../protocol/virtio/DeviceStatus.js';
import { MmioReg } from '../../../protocol/virtio/MmioTransport.js';
import type { EchoGuestData, EchoGuestResult } from './VirtioEchoGuest.js';

const GUEST = new URL('./VirtioEchoGuest.js', import.meta.url);
const MEM_BYTES = 1 << 20;
const BUF_BASE = 65536;
const BUF_BYTES = 256;
const QUEUE_NUM_MAX = 256;

async function run(opts: {
  queues: ReadonlyArray<{ qs: number; base: number }>;
  chains: number;
  offered: bigint;
  wantEventIdx: boolean;
  wantIndirect: boolean;
  wantPacked?: boolean;
  badQueueNums?: number[];
}) {
  const mem = new SharedArrayBuffer(MEM_BYTES);
  const map = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: MEM_BYTES, backing: mem, offset: 0 }]);
  const dev = new MmioDevice({ offered: opts.offered, memory: map, queues: 2, queueNumMax: QUEUE_NUM_MAX });
  const data: EchoGuestData = {
    mem,
    regs: dev.regs,
    queues: opts.queues,
    bufBase: BUF_BASE,
    bufBytes: BUF_BYTES,
    chains: opts.chains,
    eventIdx: opts.wantEventIdx,
    indirect: opts.wantIndirect,
    badQueueNums: opts.badQueueNums ?? [],
    packed: opts.wantPacked ?? false,
  };
  const guest = new Worker(GUEST, { workerData: data });
  let done: EchoGuestResult | undefined;
  let failed: Error | undefined;
  guest.once('message', (m: EchoGuestResult) => {
    done = m;
  });
  guest.once('error', (err) => {
    failed = err;
  });
  const served = [0, 0];
  const interrupts = [0, 0];
  const refused: Array<[number, number, string]> = [];
  const lists = new Map<number, IovecList>();
  const scratch = new Uint8Array(BUF_BYTES);
  while (done === undefined && failed === undefined) {
    // The snapshot comes first: a write or kick after it moves the doorbell and the wait returns.
    const bell = dev.doorbell();
    for (let out = dev.service(); out !== undefined; out = dev.service()) {
      const r = out.reg;
      if (r?.error !== undefined) refused.push([r.reg, r.value, r.error.code]);
    }
    let any = false;
    for (const q of dev.kicked()) {
      const sd = dev.virtq(q);
      if (sd === undefined) continue;
      let list = lists.get(q);
      if (list === undefined || list.capacity !== 2 * sd.size) {
        list = sd.newIovecList();
        lists.set(q, list);
      }
      // Drain until empty: with EVENT_IDX the empty pop re-arms avail_event, so the next publish kicks.
      let popped = 0;
      for (let head = sd.pop(list); head >= 0; head = sd.pop(list)) {
        const n = list.read(0, scratch, 0, list.readableBytes);
        sd.addUsed(head, list.write(0, scratch, 0, n));
        popped++;
      }
      served[q] += popped;
      if (popped > 0) {
        any = true;
        if (sd.publishUsed()) {
          interrupts[q]++;
          dev.interrupt(q);
        }
      }
    }
    if (!any) {
      dev.waitDoorbell(bell, 20);
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  await guest.terminate();
  if (failed !== undefined) throw failed;
  const r = done as EchoGuestResult;
  return { ...r, served, interrupts, refused, dev };
}

const ALL = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_INDIRECT_DESC);

describe('virtio end to end over virtio-mmio: the guest driver in a Worker, the device in the driver domain, one guest memory', function () {
  this.timeout(60_000);

  it('every chain comes back exactly once with its bytes echoed (EVENT_IDX and indirect tables negotiated)', async () => {
    const r = await run({
      queues: [{ qs: 64, base: 4096 }],
      chains: 5000,
      offered: ALL,
      wantEventIdx: true,
      wantIndirect: true,
    });
    assert.equal(r.negotiated, ALL);
    assert.equal(r.dev.negotiated, ALL);
    assert.deepEqual(r.completed, [5000]);
    assert.deepEqual(r.distinct, [5000]);
    assert.deepEqual(r.served, [5000, 0]);
    assert.equal(r.badData, 0);
    assert.equal(r.dev.queue(0)?.broken, false);
    assert.equal(r.dev.live, true);
    // Notification suppression did something: fewer kicks and interrupts than chains.
    assert.ok(r.kicks[0] < 5000, `kicks ${r.kicks[0]}`);
    assert.ok(r.interrupts[0] < 5000, `interrupts ${r.interrupts[0]}`);
  });

  it('a device that does not offer EVENT_IDX or indirect gets neither, and every chain still comes back through the flag-word hints', async () => {
    const r = await run({
      queues: [{ qs: 16, base: 4096 }],
      chains: 2000,
      offered: featureBit(VIRTIO_F_VERSION_1),
      wantEventIdx: true,
      wantIndirect: true,
    });
    assert.equal(r.negotiated, featureBit(VIRTIO_F_VERSION_1));
    assert.deepEqual(r.completed, [2000]);
    assert.deepEqual(r.distinct, [2000]);
    assert.deepEqual(r.served, [2000, 0]);
    assert.equal(r.badData, 0);
  });

  it('two queues of different sizes are kicked, served and interrupted independently; no chain crosses queues', async () => {
    const r = await run({
      queues: [
        { qs: 32, base: 4096 },
        { qs: 16, base: 16384 },
      ],
      chains: 3000,
      offered: ALL,
      wantEventIdx: true,
      wantIndirect: true,
    });
    assert.deepEqual(r.completed, [3000, 3000]);
    assert.deepEqual(r.distinct, [3000, 3000]);
    assert.deepEqual(r.served, [3000, 3000], 'each chain was popped from the queue it was posted on');
    assert.equal(r.badData, 0, 'the per-queue patterns came back on their own queue');
    assert.ok(r.kicks[0] > 0 && r.kicks[1] > 0, `kicks ${r.kicks}`);
    assert.deepEqual([r.dev.queue(0)?.size, r.dev.queue(1)?.size], [32, 16]);
  });

  it('a guest whose QueueNum is refused (not a power of two, above QueueNumMax) sees the refusal and sets a good one', async () => {
    const r = await run({
      queues: [{ qs: 8, base: 4096 }],
      chains: 500,
      offered: ALL,
      wantEventIdx: false,
      wantIndirect: false,
      badQueueNums: [3, 2 * QUEUE_NUM_MAX],
    });
    assert.deepEqual(r.badQueueNum, ['PV_ERR_VIRTQ_LAYOUT', 'PV_ERR_VIRTQ_LAYOUT']);
    assert.deepEqual(r.refused, [
      [MmioReg.QUEUE_NUM, 3, 'PV_ERR_VIRTQ_LAYOUT'],
      [MmioReg.QUEUE_NUM, 2 * QUEUE_NUM_MAX, 'PV_ERR_VIRTQ_LAYOUT'],
    ]);
    assert.equal(r.negotiated, featureBit(VIRTIO_F_VERSION_1));
    assert.equal(r.dev.queue(0)?.size, 8);
    assert.deepEqual(r.completed, [500]);
    assert.deepEqual(r.distinct, [500]);
    assert.equal(r.badData, 0);
  });

  it('RING_PACKED negotiated: two packed queues of non-power-of-two sizes echo every chain exactly once (EVENT_IDX, indirect)', async () => {
    const packed = ALL | featureBit(VIRTIO_F_RING_PACKED);
    const r = await run({
      queues: [
        { qs: 24, base: 4096 },
        { qs: 10, base: 16384 },
      ],
      chains: 4000,
      offered: packed,
      wantEventIdx: true,
      wantIndirect: true,
      wantPacked: true,
      badQueueNums: [0, 2 * QUEUE_NUM_MAX],
    });
    assert.equal(r.negotiated, packed);
    assert.deepEqual(r.badQueueNum, ['PV_ERR_VIRTQ_LAYOUT', 'PV_ERR_VIRTQ_LAYOUT']);
    assert.deepEqual(r.completed, [4000, 4000]);
    assert.deepEqual(r.distinct, [4000, 4000]);
    assert.deepEqual(r.served, [4000, 4000], 'each chain was popped from the queue it was posted on');
    assert.equal(r.badData, 0);
    assert.deepEqual([r.dev.packedQueue(0)?.size, r.dev.packedQueue(1)?.size], [24, 10]);
    assert.equal(r.dev.queue(0), undefined, 'a packed queue is not a SplitDevice');
    assert.equal(r.dev.packedQueue(0)?.broken, false);
    assert.ok(r.kicks[0] < 4000 && r.interrupts[0] < 4000, `kicks ${r.kicks}, interrupts ${r.interrupts}`);
  });

  it('RING_PACKED without EVENT_IDX or indirect: the ENABLE/DISABLE event flags alone carry every chain', async () => {
    const r = await run({
      queues: [
        { qs: 7, base: 4096 },
        { qs: 16, base: 16384 },
      ],
      chains: 2000,
      offered: featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_PACKED),
      wantEventIdx: true,
      wantIndirect: true,
      wantPacked: true,
    });
    assert.equal(r.negotiated, featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_PACKED));
    assert.deepEqual(r.completed, [2000, 2000]);
    assert.deepEqual(r.distinct, [2000, 2000]);
    assert.deepEqual(r.served, [2000, 2000]);
    assert.equal(r.badData, 0);
  });

  it('a guest that does not ask for RING_PACKED gets split queues from a device that offers it', async () => {
    const r = await run({
      queues: [{ qs: 16, base: 4096 }],
      chains: 300,
      offered: ALL | featureBit(VIRTIO_F_RING_PACKED),
      wantEventIdx: true,
      wantIndirect: true,
    });
    assert.equal(r.negotiated, ALL);
    assert.equal(r.dev.queue(0)?.size, 16);
    assert.deepEqual(r.completed, [300]);
    assert.equal(r.badData, 0);
  });
});
