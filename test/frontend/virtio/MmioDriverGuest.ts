/**
 * The guest half of MmioDriver.test.ts, run in a Worker (the driver's calls block on
 * `Atomics.wait` while the device, in the test's thread, serves them): probe, negotiate, one
 * refused QueueNum, two queues, DRIVER_OK, a kick of each queue, one interrupt.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { MmioDriver } from '../../../frontend/virtio/MmioDriver.js';
import { MmioReg } from '../../../protocol/virtio/MmioTransport.js';

/** What the test posts to the guest. */
export interface DriverGuestData {
  readonly regs: SharedArrayBuffer;
  readonly mem: SharedArrayBuffer;
  readonly wanted: bigint;
}

/** What the guest reports. */
export interface DriverGuestResult {
  readonly negotiated: bigint;
  readonly badNum: string | undefined;
  readonly irq: number;
  readonly sizes: number[];
}

const d = workerData as DriverGuestData;
const drv = new MmioDriver(d.regs, d.mem, 10_000);
drv.probe();
const negotiated = drv.negotiate(d.wanted);
const q0 = drv.setupQueue<number>(0, 16, 0);
drv.writeReg(MmioReg.QUEUE_SEL, 1);
const badNum = drv.writeReg(MmioReg.QUEUE_NUM, 3);
const q1 = drv.setupQueue<number>(1, 32, 0x1000);
drv.driverOk();
drv.notify(1);
drv.notify(0);
const irq = drv.waitInterrupt(10_000);
drv.ackInterrupt(irq);
const result: DriverGuestResult = { negotiated, badNum, irq, sizes: [q0.size, q1.size] };
parentPort?.postMessage(result);
