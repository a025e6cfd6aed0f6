import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { SplitDevice } from '../../../backend/virtio/SplitDevice.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_DRIVER_OK,
  VirtioStatusDevice,
} from '../../../protocol/virtio/DeviceStatus.js';
import { splitLayout } from '../../../protocol/virtio/SplitRing.js';
import type { EchoGuestData, EchoGuestResult } from './VirtioEchoGuest.js';

const GUEST = new URL('./VirtioEchoGuest.js', import.meta.url);
const MEM_BYTES = 1 << 20;
const QUEUE_BASE = 4096;
const BUF_BASE = 65536;
const BUF_BYTES = 256;

/**
 * Runs the guest Worker against the device side in this thread until the guest is done: serves
 * Status writes, then (after DRIVER_OK) the queue — pop, echo the readable bytes into the
 * writable ones, publish, interrupt only when `publishUsed()` says so.
 */
async function run(opts: {
  qs: number;
  chains: number;
  offered: bigint;
  wantEventIdx: boolean;
  wantIndirect: boolean;
}) {
  const mem = new SharedArrayBuffer(MEM_BYTES);
  const bell = new Int32Array(new SharedArrayBuffer(12));
  const dev = VirtioStatusDevice.create(opts.offered);
  const data: EchoGuestData = {
    mem,
    regs: dev.regs,
    bell: bell.buffer as SharedArrayBuffer,
    queueBase: QUEUE_BASE,
    qs: opts.qs,
    bufBase: BUF_BASE,
    bufBytes: BUF_BYTES,
    chains: opts.chains,
    eventIdx: opts.wantEventIdx,
    indirect: opts.wantIndirect,
  };
  const guest = new Worker(GUEST, { workerData: data });
  let failed: Error | undefined;
  const result = new Promise<EchoGuestResult>((resolve, reject) => {
    guest.once('message', resolve);
    guest.once('error', (err) => {
      failed = err;
      reject(err);
    });
  });
  result.catch(() => undefined);
  let device: SplitDevice | undefined;
  let served = 0;
  let interrupts = 0;
  let spurious = 0;
  const list = { v: undefined as ReturnType<SplitDevice['newIovecList']> | undefined };
  const scratch = new Uint8Array(BUF_BYTES);
  // ORDERING: seq-cst loads of the guest's done flag; the guest notifies word 0 after setting it.
  while (Atomics.load(bell, 2) === 0 && failed === undefined) {
    dev.service();
    if (device === undefined && (dev.status & VIRTIO_STATUS_DRIVER_OK) !== 0) {
      const map = new GuestMemoryMap([{ gpa: 0 as GuestPhysAddr, size: MEM_BYTES, backing: mem, offset: 0 }]);
      device = new SplitDevice(map, {
        indirectDesc: dev.has(VIRTIO_F_INDIRECT_DESC),
        eventIdx: dev.has(VIRTIO_F_EVENT_IDX),
      });
      const l = splitLayout(opts.qs);
      device.attach({
        size: opts.qs,
        desc: (QUEUE_BASE + l.desc) as GuestPhysAddr,
        avail: (QUEUE_BASE + l.avail) as GuestPhysAddr,
        used: (QUEUE_BASE + l.used) as GuestPhysAddr,
      });
      list.v = device.newIovecList();
    }
    // ORDERING: the kick count is read before looking at the ring, so a kick after the look wakes us.
    const kicks = Atomics.load(bell, 0);
    let any = false;
    if (device !== undefined && list.v !== undefined) {
      for (let head = device.pop(list.v); head >= 0; head = device.pop(list.v)) {
        const n = list.v.read(0, scratch, 0, list.v.readableBytes);
        const w = list.v.write(0, scratch, 0, n);
        device.addUsed(head, w);
        served++;
        any = true;
      }
      if (any && device.publishUsed()) {
        interrupts++;
        // ORDERING: seq-cst add then notify: the guest sleeps on this word.
        Atomics.add(bell, 1, 1);
        Atomics.notify(bell, 1);
      }
    }
    if (!any) {
      // Sleep until a kick or a Status write; a wake with nothing to do is a spurious kick.
      if (Atomics.wait(bell, 0, kicks, 50) === 'ok' && device !== undefined) spurious++;
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  const r = await result;
  await guest.terminate();
  return { ...r, served, interrupts, spurious, device: device as SplitDevice };
}

const ALL = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_INDIRECT_DESC);

describe('virtio end to end: the guest driver in a Worker, the device in the driver domain, one guest memory', function () {
  this.timeout(60_000);

  it('every chain comes back exactly once with its bytes echoed (EVENT_IDX and indirect tables negotiated)', async () => {
    const r = await run({ qs: 64, chains: 5000, offered: ALL, wantEventIdx: true, wantIndirect: true });
    assert.equal(BigInt(`0x${r.negotiated}`), ALL);
    assert.equal(r.completed, 5000);
    assert.equal(r.served, 5000);
    assert.equal(r.badData, 0);
    assert.equal(r.device.broken, false);
    // Notification suppression did something: fewer kicks and interrupts than chains.
    assert.ok(r.kicks < 5000, `kicks ${r.kicks}`);
    assert.ok(r.interrupts < 5000, `interrupts ${r.interrupts}`);
  });

  it('a device that does not offer EVENT_IDX or indirect gets neither, and every chain still comes back through the flag-word hints', async () => {
    const r = await run({
      qs: 16,
      chains: 2000,
      offered: featureBit(VIRTIO_F_VERSION_1),
      wantEventIdx: true,
      wantIndirect: true,
    });
    assert.equal(BigInt(`0x${r.negotiated}`), featureBit(VIRTIO_F_VERSION_1));
    assert.equal(r.completed, 2000);
    assert.equal(r.served, 2000);
    assert.equal(r.badData, 0);
  });
});
