/**
 * Entry point of the dedicated device thread (DESIGN §4 "device engines … on a dedicated device
 * thread"): the host starts ONE such Worker when `deviceEngine` is 'dedicated'. It attaches every
 * NIC of the host — its registers and device memory, its IOMMU context over this thread's
 * MemoryDirectory, one fabric — and runs `runRnicEngine` until the host stops it. Domains then
 * only ring doorbells (`mmio('dedicated')`); all device work happens here.
 *
 * The directory is kept current from the host's domain-added / domain-removed messages, drained
 * synchronously between engine runs (EngineControl.ts explains the handshake).
 */

import { performance } from 'node:perf_hooks';
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { toWireError } from '../../protocol/errors.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import { domId } from '../../protocol/Types.js';
import { threadCpuTime } from '../domain/CpuClock.js';
import type { NicData } from '../domain/HostDevices.js';
import { IommuContext } from '../iommu/IommuContext.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { LocalFabric } from '../pcie/LocalFabric.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import { EngineControl, EngineState, type EngineToHost, EngineWord, type HostToEngine } from './EngineControl.js';
import { RnicDevice } from './rnic/RnicDevice.js';
import { runRnicEngine } from './rnic/RnicEngine.js';
import { RnicFabric, type WireProfile } from './rnic/RnicFabric.js';

/** What the host passes in `workerData`. */
export interface DeviceWorkerData {
  /** Every NIC of the host: state and IOMMU descriptor. */
  readonly nics: readonly NicData[];
  /** The host's fabric lock buffer. */
  readonly fabricLock: SharedArrayBuffer;
  /** Wire model. */
  readonly wire: WireProfile;
  /** PCIe timing of the NICs' local path (pcie/LocalFabric.ts); default ideal. */
  readonly fabric?: FabricProfileName;
  /** Polls before the engine sleeps when idle. */
  readonly spinBudget: number;
  /** The control buffer (EngineControl.ts). */
  readonly control: SharedArrayBuffer;
  /** Port the host posts HostToEngine messages on. */
  readonly port: MessagePort;
  /** Memories of the domains that already exist. */
  readonly peers: ReadonlyArray<{ readonly domid: number; readonly buffer: SharedArrayBuffer }>;
  /** The host's stage window: run the ledger (base DEVICE: this thread IS the device). */
  readonly stageWindow?: SharedArrayBuffer;
}

function apply(directory: MemoryDirectory, msg: HostToEngine): void {
  if (msg.type === 'domain-added') {
    // A reused domid arrives with a new buffer: drop any stale entry first.
    directory.remove(domId(msg.domid));
    directory.add(domId(msg.domid), msg.buffer);
  } else if (msg.type === 'domain-removed') {
    directory.remove(domId(msg.domid));
  }
}

function drain(port: MessagePort, directory: MemoryDirectory): void {
  for (;;) {
    const got = receiveMessageOnPort(port);
    if (got === undefined) return;
    apply(directory, got.message as HostToEngine);
  }
}

function run(): void {
  const data = workerData as DeviceWorkerData;
  const host = parentPort;
  if (!host) return;
  const ctl = new Int32Array(data.control);
  const cpu0 = threadCpuTime();
  // Stage ledger: this thread IS the device, so its default stage is DEVICE (and its
  // event-loop idle, if any, is IDLE).
  if (data.stageWindow !== undefined) {
    stages.enable(Stage.DEVICE, {
      loopIdleMs: () => performance.eventLoopUtilization().idle,
      window: data.stageWindow,
    });
  }
  try {
    const directory = new MemoryDirectory();
    for (const p of data.peers) directory.add(domId(p.domid), p.buffer);
    const fabric = new RnicFabric(data.fabricLock, data.wire);
    const local = new LocalFabric(data.fabric ?? 'ideal');
    const devices = data.nics.map((n) => {
      // The engine thread pays the local PCIe path as inline engines do (DomainDevices.ts).
      const nic = new RnicDevice(n.state, local.wrapResolver(IommuContext.attach(n.iommu, directory)), fabric);
      fabric.add(nic);
      return nic;
    });
    drain(data.port, directory);
    // ORDERING: seq-cst store; diagnostics only.
    Atomics.store(ctl, EngineWord.STATE, EngineState.RUNNING);
    host.postMessage({ type: 'ready' } satisfies EngineToHost);
    const stop = { words: ctl, index: EngineWord.CONTROL };
    for (;;) {
      runRnicEngine(devices, stop, data.spinBudget);
      // ORDERING: seq-cst load of the host's request; pairs with its store/CAS before the wake.
      if (Atomics.load(ctl, EngineWord.CONTROL) === EngineControl.STOP) break;
      // ORDERING: lower the flag BEFORE draining, so a message posted after the drain raises it
      // again and makes the engine return once more (never lost, at worst one empty drain).
      Atomics.compareExchange(ctl, EngineWord.CONTROL, EngineControl.MESSAGES, EngineControl.RUN);
      drain(data.port, directory);
    }
    const stagesNs = stages.enabled ? stages.snapshot() : undefined;
    const cpuNs = threadCpuTime().ns - cpu0.ns;
    host.postMessage({ type: 'stopped', cpuNs, stagesNs } satisfies EngineToHost);
  } catch (err) {
    const wire = toWireError(err);
    host.postMessage({
      type: 'error',
      error: { ...wire, stack: err instanceof Error ? err.stack : undefined },
    } satisfies EngineToHost);
  } finally {
    // ORDERING: seq-cst store; diagnostics only.
    Atomics.store(ctl, EngineWord.STATE, EngineState.STOPPED);
    data.port.close();
  }
}

run();
