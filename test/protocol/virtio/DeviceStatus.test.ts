import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { ERROR_CATALOGUE } from '../../../protocol/errors.js';
import {
  VIRTIO_STATUS_ACKNOWLEDGE as ACK,
  VIRTIO_STATUS_DRIVER as DRV,
  VIRTIO_STATUS_FAILED as FAIL,
  VIRTIO_STATUS_FEATURES_OK as FOK,
  featureBit,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET as NR,
  VIRTIO_STATUS_DRIVER_OK as OK,
  STATUS_REG_BYTES,
  STATUS_REG_WORDS,
  StatusWord,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VirtioStatusDevice,
} from '../../../protocol/virtio/DeviceStatus.js';
import { VirtioStatusDriver } from '../../../protocol/virtio/StatusDriver.js';

const V1 = featureBit(VIRTIO_F_VERSION_1);
const OFFERED = V1 | featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_EVENT_IDX);

/** One Status write, handled by the device in this thread: the driver's view of the outcome. */
function write(dev: VirtioStatusDevice, drv: VirtioStatusDriver, value: number) {
  const seq = drv.postStatus(value);
  assert.equal(drv.result(seq), undefined, 'not acknowledged before the device ran');
  const outcome = dev.service();
  assert.ok(outcome !== undefined);
  assert.equal(outcome.written, value);
  const r = drv.result(seq);
  assert.ok(r !== undefined);
  assert.equal(r.error, outcome.error?.code, 'the code crosses the registers');
  return r;
}

function pair(offered = OFFERED) {
  const dev = VirtioStatusDevice.create(offered);
  return { dev, drv: new VirtioStatusDriver(dev.regs) };
}

/** The §3.1.1 steps, in order; the prefix states are [0, A, A|D, A|D|FOK, A|D|FOK|OK]. */
const STEPS = [ACK, DRV, FOK, OK];
const PREFIXES = [0, ACK, ACK | DRV, ACK | DRV | FOK, ACK | DRV | FOK | OK];

/** Drives a fresh pair to `prefix`, then FAILED and/or NEEDS_RESET. */
function reach(prefix: number, failed: boolean, needsReset: boolean) {
  const p = pair();
  p.drv.writeDriverFeatures(V1 | featureBit(VIRTIO_F_EVENT_IDX));
  let s = 0;
  for (const bit of STEPS) {
    if ((prefix & bit) === 0) break;
    s |= bit;
    assert.equal(write(p.dev, p.drv, s).error, undefined);
  }
  if (failed) assert.equal(write(p.dev, p.drv, s | FAIL).error, undefined);
  if (needsReset) p.dev.markNeedsReset();
  return p;
}

/** The spec's rules as a reference (VIRTIO 1.2 §2.1.1, §3.1.1), independent of the implementation's order of checks. */
function reference(s: number, v: number): 'ok' | 'PV_ERR_VIRTIO_STATUS' | 'PV_ERR_VIRTIO_NEEDS_RESET' {
  if (v === 0 || v === s) return 'ok';
  if ((s & NR) !== 0) return v === (s | FAIL) ? 'ok' : 'PV_ERR_VIRTIO_NEEDS_RESET';
  if (v === (s | FAIL)) return 'ok';
  const i = PREFIXES.indexOf(s);
  if (i >= 0 && i < STEPS.length && v === (s | STEPS[i])) return 'ok';
  return 'PV_ERR_VIRTIO_STATUS';
}

describe('virtio device status: register layout and constants', () => {
  it('status bits and feature bit numbers are the VIRTIO 1.2 values', () => {
    assert.deepEqual([ACK, DRV, OK, FOK, NR, FAIL], [1, 2, 4, 8, 64, 128]);
    assert.deepEqual(
      [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED],
      [28, 29, 32, 34],
    );
    assert.equal(featureBit(32), 0x1_0000_0000n);
  });

  it('nine distinct Int32 words, 36 bytes; features split lo/hi', () => {
    const words = [
      StatusWord.STATUS,
      StatusWord.STATUS_WRITE,
      StatusWord.WRITE_SEQ,
      StatusWord.ACK_SEQ,
      StatusWord.WRITE_ERROR,
      StatusWord.DEVICE_FEAT_LO,
      StatusWord.DEVICE_FEAT_HI,
      StatusWord.DRIVER_FEAT_LO,
      StatusWord.DRIVER_FEAT_HI,
    ];
    assert.deepEqual(
      [...words].sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.equal(STATUS_REG_WORDS, 9);
    assert.equal(STATUS_REG_BYTES, 36);
    const { dev } = pair(OFFERED | featureBit(63));
    const w = new Int32Array(dev.regs);
    assert.equal(w[StatusWord.DEVICE_FEAT_LO] >>> 0, 0x3000_0000);
    assert.equal(w[StatusWord.DEVICE_FEAT_HI] >>> 0, 0x8000_0001);
    assert.equal(new VirtioStatusDriver(dev.regs).deviceFeatures(), OFFERED | featureBit(63));
  });

  it('a register block that is too small is PV_ERR_VIRTQ_LAYOUT; a device without VERSION_1 is PV_ERR_INVALID_ARG', () => {
    assert.throws(() => new VirtioStatusDriver(new SharedArrayBuffer(32)), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => VirtioStatusDevice.create(featureBit(VIRTIO_F_EVENT_IDX)), { code: 'PV_ERR_INVALID_ARG' });
  });
});

describe('virtio device status: the §3.1.1 init sequence', () => {
  it('reset → ACKNOWLEDGE → DRIVER → features → FEATURES_OK (kept) → DRIVER_OK makes the device live', () => {
    const { dev, drv } = pair();
    assert.equal(write(dev, drv, 0).status, 0);
    assert.equal(write(dev, drv, ACK).status, ACK);
    assert.equal(write(dev, drv, ACK | DRV).status, ACK | DRV);
    drv.writeDriverFeatures(V1 | featureBit(VIRTIO_F_INDIRECT_DESC));
    assert.equal(write(dev, drv, ACK | DRV | FOK).status, ACK | DRV | FOK);
    assert.equal(dev.negotiated, V1 | featureBit(VIRTIO_F_INDIRECT_DESC));
    assert.equal(dev.live, false);
    assert.equal(write(dev, drv, ACK | DRV | FOK | OK).status, ACK | DRV | FOK | OK);
    assert.equal(dev.live, true);
    assert.equal(dev.has(VIRTIO_F_INDIRECT_DESC), true);
    assert.equal(dev.has(VIRTIO_F_EVENT_IDX), false);
  });

  it('features not a subset of the offer: FEATURES_OK is not kept (PV_ERR_VIRTIO_STATUS); a reset and a retry work', () => {
    const { dev, drv } = pair();
    write(dev, drv, ACK);
    write(dev, drv, ACK | DRV);
    drv.writeDriverFeatures(V1 | featureBit(VIRTIO_F_RING_PACKED));
    const r = write(dev, drv, ACK | DRV | FOK);
    assert.deepEqual(r, { status: ACK | DRV, error: 'PV_ERR_VIRTIO_STATUS' });
    assert.equal(dev.negotiated, 0n);
    assert.equal(write(dev, drv, 0).status, 0);
    write(dev, drv, ACK);
    write(dev, drv, ACK | DRV);
    drv.writeDriverFeatures(V1);
    assert.equal(write(dev, drv, ACK | DRV | FOK).error, undefined);
    assert.equal(dev.negotiated, V1);
  });

  it('a driver that does not accept VERSION_1 is refused at FEATURES_OK', () => {
    const { dev, drv } = pair();
    write(dev, drv, ACK);
    write(dev, drv, ACK | DRV);
    drv.writeDriverFeatures(featureBit(VIRTIO_F_EVENT_IDX));
    assert.deepEqual(write(dev, drv, ACK | DRV | FOK), { status: ACK | DRV, error: 'PV_ERR_VIRTIO_STATUS' });
  });

  it('the device keeps its private copy: DriverFeatures rewritten after FEATURES_OK change nothing', () => {
    const { dev, drv } = pair();
    write(dev, drv, ACK);
    write(dev, drv, ACK | DRV);
    drv.writeDriverFeatures(V1);
    write(dev, drv, ACK | DRV | FOK);
    drv.writeDriverFeatures(OFFERED);
    write(dev, drv, ACK | DRV | FOK | OK);
    assert.equal(dev.negotiated, V1);
  });

  it('a reset clears status, the negotiated features, FAILED and DEVICE_NEEDS_RESET', () => {
    const { dev, drv } = reach(ACK | DRV | FOK | OK, true, true);
    assert.equal(drv.status(), ACK | DRV | FOK | OK | FAIL | NR);
    assert.equal(write(dev, drv, 0).status, 0);
    assert.equal(dev.negotiated, 0n);
    assert.equal(drv.status(), 0);
  });
});

describe('virtio device status: every write from every reachable state', () => {
  it('matches the reference rules for all 256 values written from 20 states', () => {
    let cases = 0;
    for (const prefix of PREFIXES) {
      for (const failed of [false, true]) {
        for (const needsReset of [false, true]) {
          const s = prefix | (failed ? FAIL : 0) | (needsReset ? NR : 0);
          for (let v = 0; v < 256; v++) {
            const { dev, drv } = reach(prefix, failed, needsReset);
            assert.equal(drv.status(), s);
            const r = write(dev, drv, v);
            const want = reference(s, v);
            const label = `status 0x${s.toString(16)}, write 0x${v.toString(16)}`;
            assert.equal(r.error ?? 'ok', want, label);
            assert.equal(r.status, want === 'ok' ? v : s, `${label}: a refused write leaves the status alone`);
            cases++;
          }
        }
      }
    }
    assert.equal(cases, 20 * 256);
  });

  it('a hostile driver writing bits beyond the 8-bit status is refused; the driver API refuses them itself', () => {
    const { dev, drv } = pair();
    const w = new Int32Array(dev.regs);
    Atomics.store(w, StatusWord.STATUS_WRITE, 0x101);
    Atomics.store(w, StatusWord.WRITE_SEQ, 1);
    const o = dev.service();
    assert.equal(o?.error?.code, 'PV_ERR_VIRTIO_STATUS');
    assert.equal(Atomics.load(w, StatusWord.WRITE_ERROR), ERROR_CATALOGUE.PV_ERR_VIRTIO_STATUS.status);
    assert.equal(dev.status, 0);
    assert.throws(() => drv.postStatus(0x101), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.writeDriverFeatures(-1n), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(() => drv.writeDriverFeatures(1n << 64n), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('one write at a time: posting before the device acknowledged is PV_ERR_VIRTIO_STATUS; service() is idle after', () => {
    const { dev, drv } = pair();
    drv.postStatus(ACK);
    assert.throws(() => drv.postStatus(ACK | DRV), { code: 'PV_ERR_VIRTIO_STATUS' });
    assert.equal(dev.pending(), true);
    assert.equal(dev.service()?.status, ACK);
    assert.equal(dev.pending(), false);
    assert.equal(dev.service(), undefined, 'nothing pending: a spurious doorbell is harmless');
  });
});

/**
 * The driver's thread: steps through an illegal write, the init sequence, a bit-clearing write,
 * then (after the main thread set DEVICE_NEEDS_RESET) FAILED, an illegal clear, a reset and a
 * second negotiation. Every step blocks on the device's acknowledgement.
 */
const DRIVER_THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
Promise.all([import(workerData.moduleUrl), import(workerData.driverUrl)]).then(([m, d]) => {
  const drv = new d.VirtioStatusDriver(workerData.regs);
  const ctl = new Int32Array(workerData.ctl);
  const log = [];
  try {
    log.push(drv.writeStatus(m.VIRTIO_STATUS_DRIVER, 5000));
    log.push(drv.negotiate(workerData.wanted, 5000));
    const s = drv.status();
    log.push(drv.writeStatus(s & ~m.VIRTIO_STATUS_DRIVER, 5000));
    parentPort.postMessage({ phase: 1, log: log.splice(0) });
    Atomics.wait(ctl, 0, 0, 10000);
    const nr = drv.status();
    log.push(nr);
    log.push(drv.writeStatus(nr | m.VIRTIO_STATUS_FAILED, 5000));
    log.push(drv.writeStatus((nr | m.VIRTIO_STATUS_FAILED) & ~m.VIRTIO_STATUS_DEVICE_NEEDS_RESET, 5000));
    log.push(drv.negotiate(0n, 5000));
    parentPort.postMessage({ phase: 2, log });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.stack || err) });
  }
});
`;

describe('virtio device status: driver in a Worker, device validating in the main thread', function () {
  this.timeout(30_000);

  it('the init sequence, refusals, DEVICE_NEEDS_RESET and a reset all cross threads over one SAB', async () => {
    const dev = VirtioStatusDevice.create(OFFERED);
    const ctl = new Int32Array(new SharedArrayBuffer(4));
    const moduleUrl = new URL('../../../protocol/virtio/DeviceStatus.js', import.meta.url).href;
    const driverUrl = new URL('../../../protocol/virtio/StatusDriver.js', import.meta.url).href;
    const wanted = featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_RING_PACKED);
    const worker = new Worker(DRIVER_THREAD, {
      eval: true,
      workerData: { regs: dev.regs, ctl: ctl.buffer, moduleUrl, driverUrl, wanted },
    });
    const outcomes: Array<{ written: number; error: string | undefined }> = [];
    let stop = false;
    const serve = (async () => {
      while (!stop) {
        const o = dev.service();
        if (o !== undefined) outcomes.push({ written: o.written, error: o.error?.code });
        else await new Promise((r) => setTimeout(r, 1));
      }
    })();
    try {
      const [m1] = await once(worker, 'message');
      assert.equal(m1.error, undefined, m1.error);
      assert.deepEqual(m1.log[0], { status: 0, error: 'PV_ERR_VIRTIO_STATUS' }, 'DRIVER before ACKNOWLEDGE');
      assert.equal(m1.log[1], V1 | featureBit(VIRTIO_F_EVENT_IDX), 'RING_PACKED was not offered');
      assert.deepEqual(m1.log[2], { status: ACK | DRV | FOK | OK, error: 'PV_ERR_VIRTIO_STATUS' }, 'clearing DRIVER');
      assert.equal(dev.live, true);
      assert.equal(dev.negotiated, V1 | featureBit(VIRTIO_F_EVENT_IDX));
      dev.markNeedsReset();
      assert.equal(dev.live, false);
      Atomics.store(ctl, 0, 1);
      Atomics.notify(ctl, 0);
      const [m2] = await once(worker, 'message');
      assert.equal(m2.error, undefined, m2.error);
      assert.equal(m2.log[0], ACK | DRV | FOK | OK | NR, 'the driver sees DEVICE_NEEDS_RESET');
      assert.deepEqual(m2.log[1], { status: ACK | DRV | FOK | OK | NR | FAIL, error: undefined });
      assert.deepEqual(m2.log[2], { status: ACK | DRV | FOK | OK | NR | FAIL, error: 'PV_ERR_VIRTIO_NEEDS_RESET' });
      assert.equal(m2.log[3], V1, 'renegotiated after the reset');
      assert.equal(dev.live, true);
      assert.equal(dev.negotiated, V1);
      assert.deepEqual(
        outcomes.map((o) => o.error ?? 'ok'),
        [
          ...['PV_ERR_VIRTIO_STATUS', 'ok', 'ok', 'ok', 'ok', 'ok', 'PV_ERR_VIRTIO_STATUS'],
          ...['ok', 'PV_ERR_VIRTIO_NEEDS_RESET', 'ok', 'ok', 'ok', 'ok', 'ok'],
        ],
        'every write the worker made was validated here, in order',
      );
    } finally {
      stop = true;
      await serve;
      await worker.terminate();
    }
  });
});
