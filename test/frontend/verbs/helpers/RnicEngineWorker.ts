/**
 * A dedicated NIC device thread for tests: attaches the NICs whose state it is given (the same
 * SharedArrayBuffers the test thread's drivers use) and runs the real `runRnicEngine` until the
 * stop word is set. Posts `{ ready }` once attached and `{ done }` when it returns.
 *
 * workerData: { lock, stop, nics: [{ state, domid, memory }] }.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { RnicDevice, type RnicState } from '../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { runRnicEngine } from '../../../../hypervisor-sim/devices/rnic/RnicEngine.js';
import { RnicFabric } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { SharedArrayGuestMemory } from '../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { domId } from '../../../../protocol/Types.js';
import { IdentityDma } from '../../../drivers/rdma-nic/helpers/TwoNics.js';

interface Data {
  readonly lock: SharedArrayBuffer;
  readonly stop: SharedArrayBuffer;
  readonly nics: ReadonlyArray<{ state: RnicState; domid: number; memory: SharedArrayBuffer }>;
}

const d = workerData as Data;
const fabric = new RnicFabric(d.lock);
const devices = d.nics.map(
  (n) => new RnicDevice(n.state, new IdentityDma(new SharedArrayGuestMemory(domId(n.domid), n.memory)), fabric),
);
parentPort?.postMessage({ ready: true });
runRnicEngine(devices, { words: new Int32Array(d.stop), index: 0 }, 1000);
parentPort?.postMessage({ done: true });
