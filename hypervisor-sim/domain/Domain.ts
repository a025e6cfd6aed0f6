/**
 * The host's handle on one domain: its worker, memory, console and result.
 *
 * Console: the guest writes to its console page (protocol/console/ConsoleRing.ts); the domain's
 * ConsoleTerminal reads it into an xterm screen and into `console` lines. The guest writes its
 * console before it posts its result, so draining when the result (or error) message arrives
 * makes `console` complete before `result` settles; the terminal is closed at exit.
 */

import type { Worker } from 'node:worker_threads';
import { fromWireError, pvError } from '../../protocol/errors.js';
import type { DeviceAttachment } from '../../protocol/Pci.js';
import type { ThreadReport } from '../../protocol/stage/ThreadReports.js';
import type { DomId } from '../../protocol/Types.js';
import { ConsoleTerminal } from '../console/ConsoleTerminal.js';
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
  /** Console lines written by the program, in order (env.log lines and console.log output). */
  readonly console: string[];
  /** Settles when the program returns (resolve) or throws, crashes or is destroyed (reject). */
  readonly result: Promise<DomainResult>;
  private _state: DomainState = 'running';
  private readonly _worker: Worker;
  private readonly _exited: Promise<void>;
  private _settle!: { resolve: (r: DomainResult) => void; reject: (e: Error) => void };
  private readonly _terminal: ConsoleTerminal;

  constructor(
    domid: DomId,
    name: string,
    memory: SharedArrayGuestMemory,
    worker: Worker,
    echo: boolean,
    onExit: () => void,
    consolePage: SharedArrayBuffer,
  ) {
    this.domid = domid;
    this.name = name;
    this.memory = memory;
    this._worker = worker;
    this._terminal = new ConsoleTerminal(consolePage, {
      onLine: echo ? (line) => process.stdout.write(`[${name}] ${line}\n`) : undefined,
    });
    this.console = this._terminal.lines;
    this._terminal.start();
    this.result = new Promise<DomainResult>((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    // A result nobody awaits must not become an unhandled rejection.
    this.result.catch(() => {});
    worker.on('message', (msg: DomainToHost) => {
      // Everything the program wrote before it finished is in the ring now.
      this._terminal.drain();
      if (msg.type === 'result') {
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
        // The final screen stays readable through screen(); the xterm is freed.
        void this._terminal.close();
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

  /** The console screen as a person would see it now (the final one once the domain exited). */
  screen(): Promise<string[]> {
    return this._terminal.screen();
  }

  /** All console text so far, one line per entry (a partial last line included). */
  consoleText(): string[] {
    return this._terminal.text;
  }

  /** Bytes the guest dropped from its console because the host did not read them in time. */
  get consoleDropped(): number {
    return this._terminal.dropped;
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
