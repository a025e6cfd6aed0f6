/**
 * The pong side of the accelerator ping-pong (PingPong.ts), in its own thread: attaches the lent
 * accelerator from its record, says it is ready, then `total` times waits for the odd value
 * 2i + 1 in its own memory and stores 2i + 2 into the ping side's memory through its DMA path.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { attachLentAccel, type LentAccelData } from '../../hypervisor-sim/cluster/LentAccel.js';
import { storePeer32, waitWord32 } from '../../hypervisor-sim/devices/accel/PeerSignal.js';
import { MemoryDirectory } from '../../hypervisor-sim/memory/MemoryDirectory.js';
import { pvError } from '../../protocol/errors.js';

interface PongData {
  readonly data: LentAccelData;
  /** Device address (on the pong accelerator's lender) of the ping accelerator's BAR 1. */
  readonly back: number;
  readonly total: number;
}

const { data, back, total } = workerData as PongData;
const dev = attachLentAccel(data, new MemoryDirectory()).dev;
parentPort?.postMessage('ready');
for (let i = 0; i < total; i++) {
  waitWord32(dev, 0, 2 * i + 1);
  if (!storePeer32(dev, back, 2 * i + 2)) throw pvError('PV_ERR_OUT_OF_BOUNDS', 'pong store faulted');
}
