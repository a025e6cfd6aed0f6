/**
 * The host's handle on one domain: its worker, memory, console lines and result.
 */

import type { Worker } from 'node:worker_threads';
import { fromWireError, pvError } from '../../protocol/errors.js';
import type { DeviceAttachment } from '../../protocol/Pci.js';
import type { ThreadReport } from '../../protocol/stage/ThreadReports.js';
import type { DomId } from '../../protocol/Types.js';
import type { SharedArrayGuestMemory } from '../memory/SharedArrayGuestMemory.js';
import type { DomainToHost, HostToDomain } from './DomainWorker.js';
import type { PciAssignment } from './HostDevices.js';

/** How to start a domain. */
export interface DomainSpec {
  /** Human-readable name (shown in logs, results and `pvio top`). */
  readonly name: string;
  /** The program: a URL or absolute path of a compiled ES module whose default export is `main(env)`. */
  readonly program: string | URL;
  /** Arguments handed to the program (structured-cloned). */
  readonly args?: Record<string, unknown>;
  /** Guest memory in bytes (rounded up to whole pages). */
  readonly memoryBytes?: number;
  /** A fixed domain id; by default the lowest free one. */
  readonly domid?: number;
  /**
   * Devices this domain OWNS (VFIO-style assignment): dom0 for backends, a guest for
   * passthrough (`translate`), a native program (`bypass`). Each arrives in `env.devices` with
   * its `PciFunction`. A device has at most one live owner.
   */
  readonly pci?: readonly PciAssignment[];
  /** Paravirt / tcp attachments, handed to the program untouched (no `pci` field). */
  readonly attachments?: readonly DeviceAttachment[];
}

/** What a finished domain returns. */
export interface DomainResult {
  /** The program's resolved value. */
  readonly value: unknown;
  /** CPU time of the domain thread in ns (from /proc/thread-self/schedstat). */
  readonly cpuNs: number;
  /** Where the CPU figure came from. */
  readonly cpuSource: string;
  /** ns per stage (protocol/stage/StageLedger.ts order) when the host instruments stages. */
  readonly stagesNs?: readonly number[];
  /** Helper threads the program started (the tcp provider's NIC thread), with their CPU time. */
  readonly threads?: readonly ThreadReport[];
}

/** Lifecycle states. */
export type DomainState = 'running' | 'finished' | 'failed' | 'crashed' | 'destroyed';

export class Domain {
  readonly domid: DomId;
  readonly name: string;
  readonly memory: SharedArrayGuestMemory;
  /** Console lines written by the program, in order. */
  readonly console: string[] = [];
  /** Settles when the program returns (resolve) or throws, crashes or is destroyed (reject). */
  readonly result: Promise<DomainResult>;
  private _state: DomainState = 'running';
  private readonly _worker: Worker;
  private readonly _exited: Promise<void>;
  private _settle!: { resolve: (r: DomainResult) => void; reject: (e: Error) => void };

  constructor(
    domid: DomId,
    name: string,
    memory: SharedArrayGuestMemory,
    worker: Worker,
    echo: boolean,
    onExit: () => void,
  ) {
    this.domid = domid;
    this.name = name;
    this.memory = memory;
    this._worker = worker;
    this.result = new Promise<DomainResult>((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    // A result nobody awaits must not become an unhandled rejection.
    this.result.catch(() => {});
    worker.on('message', (msg: DomainToHost) => {
      if (msg.type === 'log') {
        this.console.push(msg.line);
        if (echo) process.stdout.write(`[${name}] ${msg.line}\n`);
      } else if (msg.type === 'result') {
        this._finish('finished');
        this._settle.resolve({
          value: msg.value,
          cpuNs: msg.cpuNs,
          cpuSource: msg.cpuSource,
          stagesNs: msg.stagesNs,
          threads: msg.threads,
        });
      } else if (msg.type === 'error') {
        this._finish('failed');
        const err = fromWireError(msg.error);
        if (msg.error.stack) err.stack = msg.error.stack;
        this._settle.reject(err);
      }
    });
    // An uncaught error can reach us BEFORE a result message the program posted just earlier
    // (the two travel on different ports), so it only settles the result at exit, after every
    // message the thread posted has been delivered.
    let uncaught: Error | undefined;
    worker.on('error', (err) => {
      uncaught ??= err;
    });
    this._exited = new Promise<void>((resolve) => {
      worker.once('exit', () => {
        if (this._state === 'running') {
          this._state = 'failed';
          this._settle.reject(uncaught ?? pvError('PV_ERR_DOMAIN_CRASHED', `domain ${name} exited without a result`));
        }
        onExit();
        resolve();
      });
    });
  }

  /** Current lifecycle state. */
  get state(): DomainState {
    return this._state;
  }

  /** Resolves once the worker has exited and the host has cleaned up after it. */
  whenExited(): Promise<void> {
    return this._exited;
  }

  /** Sends a control message to the domain thread. */
  post(msg: HostToDomain): void {
    this._worker.postMessage(msg);
  }

  /** Terminates the worker; the result rejects with PV_ERR_DOMAIN_CRASHED unless it already settled. */
  async kill(how: 'crashed' | 'destroyed'): Promise<void> {
    if (this._state === 'running') {
      this._state = how;
      this._settle.reject(pvError('PV_ERR_DOMAIN_CRASHED', `domain ${this.name} was ${how}`));
    }
    await this._worker.terminate();
    await this._exited;
  }

  private _finish(state: DomainState): void {
    if (this._state === 'running') this._state = state;
  }
}
