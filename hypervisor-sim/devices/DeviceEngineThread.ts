/**
 * The host's handle on the dedicated device thread (DeviceWorker.ts): starts it, forwards the
 * domain-added / domain-removed news its MemoryDirectory needs, and stops it at shutdown — the
 * stop word and a wake-up first, `terminate()` only if it does not leave within a bound.
 */

import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { fromWireError } from '../../protocol/errors.js';
import type { NicData } from '../domain/HostDevices.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import type { DeviceWorkerData } from './DeviceWorker.js';
import { EngineControl, type EngineToHost, EngineWord, type HostToEngine } from './EngineControl.js';
import { DevWord } from './rnic/DevLayout.js';
import { FabricWord, type WireProfile } from './rnic/RnicFabric.js';

/** How long `stop` waits for the thread to leave before terminating it. */
const STOP_GRACE_MS = 2000;

/** What the thread attaches. */
export interface DeviceEngineOptions {
  /** Every NIC of the host. */
  readonly nics: readonly NicData[];
  /** The host's fabric lock buffer. */
  readonly fabricLock: SharedArrayBuffer;
  /** Wire model. */
  readonly wire: WireProfile;
  /** PCIe timing of the NICs' local path (pcie/LocalFabric.ts); default ideal. */
  readonly fabric?: FabricProfileName;
  /** Polls before the idle engine sleeps. */
  readonly spinBudget: number;
  /** The host's stage window: run the thread's stage ledger (a separate, instrumented run). */
  readonly stageWindow?: SharedArrayBuffer;
}

/** What the thread spent, reported when it stops cleanly. */
export interface DeviceThreadReport {
  /** CPU time of the thread, ns. */
  readonly cpuNs: number;
  /** Its stage ledger (ns per stage; base DEVICE) when stages are instrumented. */
  readonly stagesNs?: readonly number[];
}

/** The dedicated device thread, as the host sees it. */
export class DeviceEngineThread {
  /** Set when the thread failed (its engine threw); the NICs then stop making progress. */
  error: Error | undefined;
  /** CPU time and stage ledger, once the thread stopped cleanly (not if it was terminated). */
  report: DeviceThreadReport | undefined;
  private readonly _worker: Worker;
  private readonly _port: MessagePort;
  private readonly _ctl: Int32Array;
  private readonly _wakeWords: Int32Array[];
  private readonly _fabric: Int32Array;
  private readonly _exited: Promise<void>;
  private readonly _ready: Promise<void>;

  constructor(opts: DeviceEngineOptions) {
    const control = new SharedArrayBuffer(EngineWord.WORDS * 4);
    const channel = new MessageChannel();
    this._port = channel.port1;
    this._ctl = new Int32Array(control);
    this._fabric = new Int32Array(opts.fabricLock);
    this._wakeWords = opts.nics.map((n) => new Int32Array(n.state.dev));
    const data: DeviceWorkerData = { ...opts, control, port: channel.port2, peers: [] };
    this._worker = new Worker(new URL('./DeviceWorker.js', import.meta.url), {
      workerData: data,
      transferList: [channel.port2],
    });
    // The device thread never keeps the process alive on its own: domains do.
    this._worker.unref();
    let ready!: () => void;
    this._ready = new Promise<void>((resolve) => {
      ready = resolve;
    });
    this._worker.on('message', (msg: EngineToHost) => {
      if (msg.type === 'ready') ready();
      else if (msg.type === 'stopped') this.report = { cpuNs: msg.cpuNs, stagesNs: msg.stagesNs };
      else if (msg.type === 'error') this.error = fromWireError(msg.error);
    });
    this._worker.on('error', (err) => {
      this.error = err;
    });
    this._exited = new Promise<void>((resolve) => {
      this._worker.once('exit', () => {
        ready();
        resolve();
      });
    });
  }

  /** Resolves once the thread has attached every NIC and runs the engine (or has exited). */
  whenReady(): Promise<void> {
    return this._ready;
  }

  /** A domain's memory exists: the thread attaches it. */
  domainAdded(domid: number, buffer: SharedArrayBuffer): void {
    this._send({ type: 'domain-added', domid, buffer });
  }

  /** A domain is gone: the thread forgets its memory. */
  domainRemoved(domid: number): void {
    this._send({ type: 'domain-removed', domid });
  }

  /**
   * Stops the engine (stop word + wake), then terminates the thread if it does not leave within
   * a bound. Says which of the two ended it.
   */
  async stop(): Promise<'stopped' | 'terminated'> {
    // ORDERING: seq-cst store; the engine loop loads CONTROL after every wake-up.
    Atomics.store(this._ctl, EngineWord.CONTROL, EngineControl.STOP);
    this._wake();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), STOP_GRACE_MS);
    });
    const how = await Promise.race([this._exited.then(() => 'exited' as const), grace]);
    clearTimeout(timer);
    if (how === 'late') await this._worker.terminate();
    await this._exited;
    this._port.close();
    return how === 'late' ? 'terminated' : 'stopped';
  }

  private _send(msg: HostToEngine): void {
    this._port.postMessage(msg);
    // ORDERING: the message is queued before CONTROL rises; the thread lowers CONTROL before it
    // drains, so it sees this message now or returns again for it. CAS: never overwrite STOP.
    Atomics.compareExchange(this._ctl, EngineWord.CONTROL, EngineControl.RUN, EngineControl.MESSAGES);
    this._wake();
  }

  /**
   * Wakes the engine wherever it sleeps (RnicEngine.ts): on its one device's doorbell word, or
   * on the fabric's WAKE_SEQ when it serves several; as `stopRnicEngine` does.
   */
  private _wake(): void {
    // ORDERING: bump before notify; the engine's Atomics.wait compares against a snapshot taken
    // before it re-checked CONTROL, so it either sees the bump or is woken by the notify.
    Atomics.add(this._fabric, FabricWord.WAKE_SEQ, 1);
    // ORDERING: pairs with the engine's wait on WAKE_SEQ (several devices).
    Atomics.notify(this._fabric, FabricWord.WAKE_SEQ);
    for (const w of this._wakeWords) {
      // ORDERING: bump before notify, as above, for an engine asleep on one device's DB_SEQ.
      Atomics.add(w, DevWord.DB_SEQ, 1);
      // ORDERING: pairs with the engine's wait on DB_SEQ (one device).
      Atomics.notify(w, DevWord.DB_SEQ);
    }
  }
}
