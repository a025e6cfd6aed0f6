/**
 * The virtio-mmio device side: every refused queue-config write (and what it leaves behind),
 * the setup phase of §3.1.1, DEVICE_NEEDS_RESET after a queue breaks, reset, kicks and
 * interrupts. The driver's writes are posted here with the real MmioDriver / VirtioStatusDriver
 * and served by `service()` on this same thread, so each write's verdict is read as the driver
 * reads it (through the registers).
 */

import assert from 'node:assert/strict';
import { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../../backend/virtio/MmioDevice.js';
import { MmioDriver } from '../../../frontend/virtio/MmioDriver.js';
import { guestPhysAddr } from '../../../protocol/Types.js';
import {
  VIRTIO_STATUS_ACKNOWLEDGE as ACK,
  VIRTIO_STATUS_DRIVER as DRV,
  VIRTIO_STATUS_FAILED as FAIL,
  VIRTIO_STATUS_FEATURES_OK as FOK,
  featureBit,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET as NR,
  VIRTIO_STATUS_DRIVER_OK as OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from '../../../protocol/virtio/DeviceStatus.js';
import {
  MmioWord,
  MmioReg as R,
  regWord,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
} from '../../../protocol/virtio/MmioTransport.js';
import { AvailOffset, splitLayout } from '../../../protocol/virtio/SplitRing.js';
import { VirtioStatusDriver } from '../../../protocol/virtio/StatusDriver.js';

const MEM = 1 << 16;
const V1 = featureBit(VIRTIO_F_VERSION_1);

function rig(opts: { queues?: number; max?: number; offered?: bigint; features?: bigint } = {}) {
  const mem = new SharedArrayBuffer(MEM);
  const map = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: MEM, backing: mem, offset: 0 }]);
  const dev = new MmioDevice({
    offered: opts.offered ?? V1 | featureBit(VIRTIO_F_EVENT_IDX),
    memory: map,
    queues: opts.queues ?? 4,
    queueNumMax: opts.max ?? 256,
  });
  const drv = new MmioDriver(dev.regs, mem);
  const sd = new VirtioStatusDriver(dev.regs);
  /** One posted register write, served here: the code the driver reads back ('ok' if applied). */
  const write = (reg: R, value: number): string => {
    const seq = drv.postWrite(reg, value);
    assert.equal(drv.writeResult(seq), undefined, 'not acknowledged before the device ran');
    const out = dev.service();
    assert.equal(out?.reg?.reg, reg);
    const r = drv.writeResult(seq);
    assert.ok(r !== undefined);
    assert.equal(r.error, out?.reg?.error?.code, 'the code crosses the registers');
    return r.error ?? 'ok';
  };
  const status = (v: number): string => {
    const seq = sd.postStatus(v);
    dev.service();
    return sd.result(seq)?.error ?? 'ok';
  };
  /** Reset → ACK → DRIVER → VERSION_1 → FEATURES_OK: the queue setup phase. */
  const toSetup = () => {
    for (const v of [0, ACK, ACK | DRV]) assert.equal(status(v), 'ok');
    sd.writeDriverFeatures(opts.features ?? V1);
    assert.equal(status(ACK | DRV | FOK), 'ok');
  };
  /** A whole valid queue config at `base` for the selected queue; returns QueueReady's verdict. */
  const place = (q: number, qs: number, base: number): string => {
    const l = splitLayout(qs);
    for (const [reg, v] of [
      [R.QUEUE_SEL, q],
      [R.QUEUE_NUM, qs],
      [R.QUEUE_DESC_LOW, base + l.desc],
      [R.QUEUE_DESC_HIGH, 0],
      [R.QUEUE_DRIVER_LOW, base + l.avail],
      [R.QUEUE_DRIVER_HIGH, 0],
      [R.QUEUE_DEVICE_LOW, base + l.used],
      [R.QUEUE_DEVICE_HIGH, 0],
    ] as const) {
      assert.equal(write(reg, v), 'ok', `register 0x${reg.toString(16)} = ${v}`);
    }
    return write(R.QUEUE_READY, 1);
  };
  return { mem, dev, drv, sd, write, status, toSetup, place };
}

describe('virtio-mmio device: refused queue-config writes', () => {
  it('QueueNum not a power of two, zero, or above QueueNumMax is PV_ERR_VIRTQ_LAYOUT and leaves QueueNum alone', () => {
    const t = rig({ max: 256 });
    t.toSetup();
    assert.equal(t.write(R.QUEUE_SEL, 0), 'ok');
    for (const bad of [0, 3, 6, 100, 255, 512, 0x8000, 0xffffffff]) {
      assert.equal(t.write(R.QUEUE_NUM, bad), 'PV_ERR_VIRTQ_LAYOUT', `QueueNum ${bad}`);
      assert.equal(t.drv.read(R.QUEUE_NUM), 0);
    }
    assert.equal(t.write(R.QUEUE_NUM, 256), 'ok');
    assert.equal(t.drv.read(R.QUEUE_NUM), 256);
    assert.equal(t.write(R.QUEUE_NUM, 1), 'ok');
    assert.equal(t.drv.read(R.QUEUE_NUM), 1);
  });

  it('misaligned Low halves (desc 16, driver 2, device 4) and High halves ≥ 2^21 are PV_ERR_VIRTQ_LAYOUT', () => {
    const t = rig();
    t.toSetup();
    const cases: Array<[R, number, string]> = [
      [R.QUEUE_DESC_LOW, 8, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DESC_LOW, 0x1001, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DESC_LOW, 0x1010, 'ok'],
      [R.QUEUE_DRIVER_LOW, 0x2001, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DRIVER_LOW, 0x2002, 'ok'],
      [R.QUEUE_DEVICE_LOW, 0x3002, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DEVICE_LOW, 0x3004, 'ok'],
      [R.QUEUE_DESC_HIGH, 0x200000, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DRIVER_HIGH, 0xffffffff, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DEVICE_HIGH, 0x1fffff, 'ok'],
    ];
    for (const [reg, v, want] of cases)
      assert.equal(t.write(reg, v), want, `0x${reg.toString(16)} = 0x${v.toString(16)}`);
    // Only the accepted values show through the registers.
    assert.deepEqual(
      [R.QUEUE_DESC_LOW, R.QUEUE_DRIVER_LOW, R.QUEUE_DEVICE_LOW, R.QUEUE_DESC_HIGH, R.QUEUE_DEVICE_HIGH].map((r) =>
        t.drv.read(r),
      ),
      [0x1010, 0x2002, 0x3004, 0, 0x1fffff],
    );
  });

  it('queue config before FEATURES_OK, or after DRIVER_OK, is PV_ERR_VIRTIO_STATUS (§3.1.1)', () => {
    const t = rig();
    assert.equal(t.write(R.QUEUE_NUM, 16), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_READY, 1), 'PV_ERR_VIRTIO_STATUS');
    for (const v of [ACK, ACK | DRV]) assert.equal(t.status(v), 'ok');
    assert.equal(t.write(R.QUEUE_NUM, 16), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_READY, 1), 'PV_ERR_VIRTIO_STATUS');
    t.sd.writeDriverFeatures(V1);
    assert.equal(t.status(ACK | DRV | FOK), 'ok');
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    assert.equal(t.write(R.QUEUE_SEL, 1), 'ok', 'selecting is fine in any phase');
    assert.equal(t.write(R.QUEUE_NUM, 16), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_READY, 1), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.dev.queue(1), undefined);
    assert.ok(t.dev.queue(0) !== undefined);
  });

  it('QueueSel or QueueNotify of a queue index ≥ the device count is PV_ERR_VIRTQ_LAYOUT; the selection stays', () => {
    const t = rig({ queues: 2 });
    t.toSetup();
    assert.equal(t.write(R.QUEUE_SEL, 1), 'ok');
    for (const q of [2, 7, 8, 0xffffffff]) {
      assert.equal(t.write(R.QUEUE_SEL, q), 'PV_ERR_VIRTQ_LAYOUT', `QueueSel ${q}`);
      assert.equal(t.write(R.QUEUE_NOTIFY, q), 'PV_ERR_VIRTQ_LAYOUT', `QueueNotify ${q}`);
    }
    assert.equal(t.drv.read(R.QUEUE_SEL), 1);
    assert.equal(t.drv.read(R.QUEUE_NUM_MAX), 256);
  });

  it('QueueReady 1 without QueueNum, outside guest memory, or overlapping another ready queue is refused; the queue stays not ready', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.write(R.QUEUE_SEL, 0), 'ok');
    assert.equal(t.write(R.QUEUE_READY, 1), 'PV_ERR_VIRTQ_LAYOUT', 'no QueueNum');
    assert.equal(t.place(0, 16, MEM - 64), 'PV_ERR_VIRTQ_LAYOUT', 'areas past the end of guest memory');
    assert.equal(t.drv.read(R.QUEUE_READY), 0);
    assert.equal(t.dev.queue(0), undefined);
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.drv.read(R.QUEUE_READY), 1);
    assert.equal(t.place(1, 16, 256), 'PV_ERR_VIRTQ_LAYOUT', "queue 1's descriptors inside queue 0's avail ring");
    assert.equal(t.dev.queue(1), undefined);
    assert.equal(t.place(1, 16, 0x1000), 'ok');
    assert.equal(t.write(R.QUEUE_READY, 2), 'PV_ERR_VIRTIO_STATUS', 'queue 1 is ready: its config is frozen');
  });

  it('a ready queue refuses config writes until QueueReady 0 detaches it; then it can be placed again', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    const first = t.dev.queue(0);
    assert.equal(t.write(R.QUEUE_NUM, 32), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_DESC_LOW, 0x800), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_READY, 0), 'ok');
    assert.equal(t.dev.queue(0), undefined);
    assert.equal(first?.size, 0, 'the old SplitDevice was reset');
    assert.equal(t.place(0, 32, 0x800), 'ok');
    assert.equal(t.dev.queue(0)?.size, 32);
  });

  it('registers the driver may not write (device-owned, or Status/features in the window) are PV_ERR_INVALID_ARG', () => {
    const t = rig();
    t.toSetup();
    for (const reg of [R.MAGIC_VALUE, R.QUEUE_NUM_MAX, R.INTERRUPT_STATUS, R.STATUS, R.DRIVER_FEATURES, 0x3, 0x1000]) {
      assert.equal(t.write(reg, 1), 'PV_ERR_INVALID_ARG', `register 0x${reg.toString(16)}`);
    }
    assert.equal(t.drv.read(R.MAGIC_VALUE), 0x74726976);
    assert.equal(t.write(R.INTERRUPT_ACK, 4), 'PV_ERR_INVALID_ARG');
  });
});

describe('virtio-mmio device: DEVICE_NEEDS_RESET, FAILED and reset', () => {
  it('a queue that broke is reported (NEEDS_RESET) even when the driver posted QueueReady 0 before the device looked', () => {
    // Found by `pvio fuzz --backend virtq` (mmio cases): service() used to apply the posted
    // QueueReady 0 first, detaching the broken queue, and then found nothing broken.
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    const q = t.dev.queue(0);
    assert.ok(q !== undefined);
    new Uint16Array(t.mem)[(splitLayout(16).avail + AvailOffset.IDX) >> 1] = 100;
    assert.throws(() => q.pop(q.newIovecList()), { code: 'PV_ERR_VIRTQ_AVAIL_IDX' });
    assert.equal(t.write(R.QUEUE_READY, 0), 'PV_ERR_VIRTIO_NEEDS_RESET');
    assert.equal(t.drv.status() & NR, NR);
    assert.equal(t.drv.read(R.INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    assert.equal(t.dev.queue(0), q, 'the broken queue stays until a reset');
  });

  it('a broken queue sets DEVICE_NEEDS_RESET with a config interrupt; then every queue write is refused until a reset', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    const q = t.dev.queue(0);
    assert.ok(q !== undefined);
    // The guest moves avail.idx 100 past the device's 0, QS 16: fatal (Firecracker's InvalidAvailIdx).
    new Uint16Array(t.mem)[(splitLayout(16).avail + AvailOffset.IDX) >> 1] = 100;
    assert.throws(() => q.pop(q.newIovecList()), { code: 'PV_ERR_VIRTQ_AVAIL_IDX' });
    const gen = t.drv.read(R.CONFIG_GENERATION);
    assert.equal(t.dev.service(), undefined);
    assert.equal(t.drv.status() & NR, NR);
    assert.equal(t.drv.read(R.INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    assert.equal(t.drv.read(R.CONFIG_GENERATION), gen + 1);
    for (const [reg, v] of [
      [R.QUEUE_SEL, 1],
      [R.QUEUE_READY, 0],
      [R.QUEUE_NUM, 16],
      [R.QUEUE_NOTIFY, 0],
    ] as const) {
      assert.equal(t.write(reg, v), 'PV_ERR_VIRTIO_NEEDS_RESET', `register 0x${reg.toString(16)}`);
    }
    assert.equal(
      t.write(R.INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG),
      'ok',
      'acking the interrupt that told it is allowed',
    );
    assert.equal(t.drv.read(R.INTERRUPT_STATUS), 0);
    assert.equal(t.status(0), 'ok');
    assert.equal(t.drv.status(), 0);
    assert.equal(t.dev.queue(0), undefined);
    assert.equal(q.broken, false, 'the SplitDevice was reset');
    t.toSetup();
    assert.equal(t.place(0, 16, 0x1000), 'ok');
  });

  it('after FAILED queue writes are PV_ERR_VIRTIO_STATUS', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.status(ACK | DRV | FOK | FAIL), 'ok');
    assert.equal(t.write(R.QUEUE_SEL, 0), 'PV_ERR_VIRTIO_STATUS');
    assert.equal(t.write(R.QUEUE_NUM, 16), 'PV_ERR_VIRTIO_STATUS');
  });

  it('a reset (Status 0) detaches every queue, forgets every config, clears InterruptStatus and drops old kicks', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.place(2, 64, 0x2000), 'ok');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    const qs = [t.dev.queue(0), t.dev.queue(2)];
    t.dev.interrupt(2);
    t.drv.notify(0);
    assert.equal(t.status(0), 'ok');
    assert.deepEqual(
      [0, 1, 2, 3].map((q) => t.dev.queue(q)),
      [undefined, undefined, undefined, undefined],
    );
    assert.deepEqual(
      qs.map((q) => q?.size),
      [0, 0],
    );
    assert.equal(t.drv.read(R.INTERRUPT_STATUS), 0);
    assert.deepEqual([t.drv.read(R.QUEUE_SEL), t.drv.read(R.QUEUE_NUM), t.drv.read(R.QUEUE_DESC_LOW)], [0, 0, 0]);
    t.toSetup();
    assert.equal(t.write(R.QUEUE_SEL, 2), 'ok');
    assert.deepEqual([t.drv.read(R.QUEUE_NUM), t.drv.read(R.QUEUE_DEVICE_LOW), t.drv.read(R.QUEUE_READY)], [0, 0, 0]);
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    assert.deepEqual(t.dev.kicked(), [], 'the kick before the reset is not reported to the new queue 0');
  });
});

describe('virtio-mmio device: kicks and interrupts', () => {
  it('kicks of different queues are never merged or lost; none is reported before DRIVER_OK; kicks of queues not ready are dropped', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.equal(t.place(1, 16, 0x1000), 'ok');
    t.drv.notify(0);
    assert.deepEqual(t.dev.kicked(), [], 'nothing is served before DRIVER_OK');
    assert.equal(t.status(ACK | DRV | FOK | OK), 'ok');
    assert.deepEqual(t.dev.kicked(), [0], 'the early kick was kept, not consumed');
    const bell = t.dev.doorbell();
    t.drv.notify(1);
    t.drv.notify(0);
    t.drv.notify(1);
    t.drv.notify(3);
    assert.notEqual(t.dev.doorbell(), bell, 'every kick rings the doorbell the device sleeps on');
    assert.deepEqual(t.dev.kicked(), [0, 1]);
    assert.deepEqual(t.dev.kicked(), [], 'each kick is reported once');
    assert.equal(t.write(R.QUEUE_NOTIFY, 1), 'ok');
    assert.deepEqual(t.dev.kicked(), [1], 'a posted QueueNotify counts as a kick');
  });

  it('interrupt(q) sets InterruptStatus bit 0 and moves irq_seq; InterruptACK clears only the bits it names', () => {
    const t = rig();
    t.toSetup();
    assert.equal(t.place(0, 16, 0), 'ok');
    assert.throws(() => t.dev.interrupt(1), { code: 'PV_ERR_INVALID_ARG' });
    const words = new Int32Array(t.dev.regs);
    const seq = words[MmioWord.IRQ_SEQ];
    t.dev.interrupt(0);
    t.dev.configChanged();
    assert.equal(words[MmioWord.IRQ_SEQ], seq + 2);
    assert.equal(t.drv.waitInterrupt(0), VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
    assert.equal(t.write(R.INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING), 'ok');
    assert.equal(words[regWord(R.INTERRUPT_STATUS)], VIRTIO_MMIO_INT_CONFIG);
    assert.equal(t.write(R.INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG), 'ok');
    assert.equal(t.drv.waitInterrupt(0), 0, 'nothing pending: returns 0 at the timeout');
  });

  it('a split-only device (ringPacked: false) refuses to offer packed rings; so do a bad queue count / QueueNumMax', () => {
    const map = new GuestMemoryMap([
      { gpa: guestPhysAddr(0), size: 64, backing: new SharedArrayBuffer(64), offset: 0 },
    ]);
    const mk = (o: object) => () => new MmioDevice({ offered: V1, memory: map, ...o });
    const packed = V1 | featureBit(VIRTIO_F_RING_PACKED);
    assert.throws(mk({ offered: packed, ringPacked: false }), { code: 'PV_ERR_NOT_SUPPORTED' });
    assert.equal(mk({ offered: packed })().regs.byteLength > 0, true, 'offered by default');
    assert.throws(mk({ queues: 0 }), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(mk({ queues: 9 }), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(mk({ queueNumMax: 100 }), { code: 'PV_ERR_VIRTQ_LAYOUT' });
  });
});

describe('virtio-mmio device: packed queues once VIRTIO_F_RING_PACKED is negotiated', () => {
  const PACKED = V1 | featureBit(VIRTIO_F_RING_PACKED);

  it('QueueNum is any value in 1..QueueNumMax; zero and above QueueNumMax stay PV_ERR_VIRTQ_LAYOUT', () => {
    const t = rig({ max: 256, offered: PACKED, features: PACKED });
    t.toSetup();
    assert.equal(t.write(R.QUEUE_SEL, 0), 'ok');
    for (const bad of [0, 257, 0xffffffff]) assert.equal(t.write(R.QUEUE_NUM, bad), 'PV_ERR_VIRTQ_LAYOUT', `${bad}`);
    for (const good of [3, 100, 255, 1, 256]) {
      assert.equal(t.write(R.QUEUE_NUM, good), 'ok', `${good}`);
      assert.equal(t.drv.read(R.QUEUE_NUM), good);
    }
  });

  it('the driver area is an event suppression structure: Low halves aligned 16 / 4 / 4', () => {
    const t = rig({ offered: PACKED, features: PACKED });
    t.toSetup();
    const cases: Array<[R, number, string]> = [
      [R.QUEUE_DESC_LOW, 0x1008, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DESC_LOW, 0x1010, 'ok'],
      [R.QUEUE_DRIVER_LOW, 0x2002, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DRIVER_LOW, 0x2004, 'ok'],
      [R.QUEUE_DEVICE_LOW, 0x3002, 'PV_ERR_VIRTQ_LAYOUT'],
      [R.QUEUE_DEVICE_LOW, 0x3004, 'ok'],
    ];
    for (const [reg, v, want] of cases)
      assert.equal(t.write(reg, v), want, `0x${reg.toString(16)} = 0x${v.toString(16)}`);
  });

  it('QueueReady 1 attaches a PackedDevice with the ring and both event structures; overlaps are refused', () => {
    const t = rig({ offered: PACKED, features: PACKED });
    t.toSetup();
    const setup = (q: number, qs: number, desc: number, drvEv: number, devEv: number): string => {
      for (const [reg, v] of [
        [R.QUEUE_SEL, q],
        [R.QUEUE_NUM, qs],
        [R.QUEUE_DESC_LOW, desc],
        [R.QUEUE_DRIVER_LOW, drvEv],
        [R.QUEUE_DEVICE_LOW, devEv],
      ] as const) {
        assert.equal(t.write(reg, v), 'ok');
      }
      return t.write(R.QUEUE_READY, 1);
    };
    assert.equal(setup(0, 5, 0x1000, 0x1050, 0x1054), 'ok');
    assert.equal(t.dev.packedQueue(0)?.size, 5);
    assert.equal(t.dev.queue(0), undefined, 'not a split queue');
    assert.equal(t.dev.virtq(0), t.dev.packedQueue(0));
    assert.equal(setup(1, 4, 0x1040, 0x2000, 0x2004), 'PV_ERR_VIRTQ_LAYOUT', 'ring over queue 0 ring');
    assert.equal(setup(1, 4, 0x2000, 0x1054, 0x3000), 'PV_ERR_VIRTQ_LAYOUT', 'driver event over queue 0 device event');
    assert.equal(setup(1, 4, 0x2000, 0x2030, 0x2034), 'PV_ERR_VIRTQ_LAYOUT', 'driver event inside its own ring');
    assert.equal(t.dev.virtq(1), undefined);
    assert.equal(setup(1, 4, 0x2000, 0x2040, 0x2044), 'ok');
    assert.equal(t.dev.packedQueue(1)?.size, 4);
  });
});
