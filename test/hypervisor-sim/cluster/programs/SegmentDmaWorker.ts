/**
 * A borrower's thread driving a lent accelerator into a shared memory segment (Segments.test.ts):
 * it attaches the device from the lent-device record it was posted (its segment pools arrived
 * with it, before the segment was exported), DMAs device memory [0, len) to `addr`, then reads
 * the segment's bytes [len, 2·len) back into device memory at `len`, and posts both statuses.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { attachLentAccel, type LentAccelData } from '../../../../hypervisor-sim/cluster/LentAccel.js';
import { MemoryDirectory } from '../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { AccelDmaDir } from '../../../../protocol/accel/AccelRegs.js';

const { data, addr, len } = workerData as { data: LentAccelData; addr: number; len: number };
const drv = new AccelDriver(attachLentAccel(data, new MemoryDirectory()).pci);
const write = drv.dmaRaw(addr, 0, len, AccelDmaDir.FROM_DEVICE);
const read = drv.dmaRaw(addr + len, len, len, AccelDmaDir.TO_DEVICE);
parentPort!.postMessage({ write, read });
