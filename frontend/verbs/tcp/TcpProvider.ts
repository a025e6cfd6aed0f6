/**
 * The `tcp` transport: a software RDMA provider over real loopback TCP sockets (the seed paper's
 * TCP baseline, built like siw/rxe). To a guest program it is one more `VerbsProvider`.
 *
 * Verbs are synchronous (a guest may busy-poll `pollCq` forever) while node:net is not, so the
 * socket work runs in a helper Worker started here — the software NIC thread (TcpHelperWorker.ts,
 * SoftNic.ts) — which reads and writes the guest's memory directly, as a kernel TCP stack copies
 * from and to user buffers. This thread and the helper share a control block (Layout.ts): the
 * command mailbox (answered synchronously), the bell, and per-QP doorbells. Send and receive
 * queues are rings of Wqe.ts WQEs and CQs rings of Cq.ts CQEs, all in guest memory allocated here,
 * so `pollCq`/`waitCq` of the verbs layer work unchanged.
 *
 * Choices, and why:
 *  - the command channel is a mailbox of depth one (as PVRDMA's single command slot): verbs
 *    control calls are synchronous and one guest thread issues them, so a deeper ring would never
 *    hold more than one command;
 *  - the NIC thread sleeps on ONE bell word for all QPs, and the per-QP doorbell words carry the
 *    producer indices (like the NIC's SQ_DB/RQ_DB registers): a waitAsync per QP would cost a
 *    promise per QP per wake, and a wake serves every QP anyway;
 *  - one TCP connection per pair of NIC threads, multiplexing all their QPs (SoftNic.ts).
 *
 * Loaded by the verbs layer through `import('./tcp/TcpProvider.js')` → `createProvider`.
 */

import { Worker } from 'node:worker_threads';
import { pvError } from '../../../protocol/errors.js';
import type { GuestMemory } from '../../../protocol/Hypercalls.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import type { DomainEnv } from '../../../protocol/Program.js';
import { NicCmd } from '../../../protocol/rdma/NicRegs.js';
import type { QpAttr, QpState, RecvWr, SendWr } from '../../../protocol/rdma/Verbs.js';
import { hi32, lo32 } from '../../../protocol/rdma/Wqe.js';
import { stages } from '../../../protocol/stage/StageLedger.js';
import { fileThreadReport } from '../../../protocol/stage/ThreadReports.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import type { ProviderCq, ProviderMr, ProviderQp, ProviderQpInit, VerbsProvider } from '../Provider.js';
import { ControlClient } from './ControlClient.js';
import { GuestQueues } from './GuestQueues.js';
import { CTRL_MAGIC, CtrlWord, ctrlBytes, TCP_LIMITS } from './Layout.js';
import type { TcpHelperData, TcpHelperMessage } from './TcpHelperWorker.js';

/** Tuning of a tcp provider. */
export interface TcpProviderOptions {
  /** Polls before sleeping while waiting for a command's answer. */
  readonly spinBudget?: number;
  /** Longest wait for one command, default 10 s (a dead NIC thread becomes PV_ERR_TIMEOUT). */
  readonly commandTimeoutMs?: number;
  /** Transmit slab per connection, bytes. */
  readonly slabBytes?: number;
  /** Name in log lines. */
  readonly name?: string;
  /** Where the NIC thread's log lines go. */
  readonly log?: (line: string) => void;
}

/** What QUERY_QP reports (tcp-specific, for tests and monitors). */
export interface TcpQpInfo {
  readonly state: QpState;
  readonly destQpNum: number;
  readonly destPort: number;
  /** Send WQEs completed, receive WQEs consumed (free-running). */
  readonly sqCons: number;
  readonly rqCons: number;
}

/**
 * The guest memory's SharedArrayBuffer. The tcp transport needs the whole memory as one shared
 * buffer (its NIC thread reads and writes it); `GuestMemory.view(0, size)` of a
 * SharedArrayGuestMemory is exactly that buffer, so it is reached without knowing the class.
 */
export function guestMemoryBuffer(memory: GuestMemory): SharedArrayBuffer {
  const v = memory.view(0 as GuestPhysAddr, memory.size);
  if (!(v.buffer instanceof SharedArrayBuffer) || v.byteOffset !== 0 || v.buffer.byteLength !== memory.size) {
    throw pvError('PV_ERR_CONFIG', 'the tcp transport needs guest memory backed by one SharedArrayBuffer');
  }
  return v.buffer;
}

/** Entry point the verbs layer loads: a tcp provider for `attachment` in this domain. */
export async function createProvider(env: DomainEnv, attachment: DeviceAttachment): Promise<VerbsProvider> {
  if (attachment.transport !== 'tcp') {
    throw pvError('PV_ERR_CONFIG', `the tcp provider cannot serve a '${attachment.transport}' attachment`);
  }
  const spin = env.args.spinBudget;
  return TcpProvider.create(env.hypercalls.memory, {
    name: `${env.name}/${attachment.device}`,
    log: (line) => env.log(line),
    spinBudget: typeof spin === 'number' ? spin : undefined,
  });
}

/** See the file comment. */
export class TcpProvider implements VerbsProvider {
  readonly transport = 'tcp';
  readonly portId: number;
  private readonly _client: ControlClient;
  private readonly _queues: GuestQueues;
  private readonly _worker: Worker;
  /** Resolves when the NIC thread has exited (for whatever reason). */
  private readonly _exited: Promise<void>;
  private readonly _mrKeys = new Map<number, number>();
  private readonly _pds = new Set<number>();
  private _closed = false;

  private constructor(memory: GuestMemory, client: ControlClient, worker: Worker, port: number, exited: Promise<void>) {
    this._client = client;
    this._worker = worker;
    this._exited = exited;
    this.portId = port;
    this._queues = new GuestQueues(memory, guestMemoryBuffer(memory), client);
  }

  /** Starts the NIC thread and waits until it listens. */
  static async create(memory: GuestMemory, opts: TcpProviderOptions = {}): Promise<TcpProvider> {
    const sab = guestMemoryBuffer(memory);
    const ctrl = new SharedArrayBuffer(ctrlBytes(TCP_LIMITS.MAX_QP));
    new Int32Array(ctrl)[CtrlWord.MAGIC] = CTRL_MAGIC;
    const log = opts.log ?? ((line: string) => console.error(line));
    const data: TcpHelperData = {
      memory: sab,
      ctrl,
      slabBytes: opts.slabBytes ?? 2 * 1024 * 1024,
      name: opts.name ?? 'tcp',
      // The NIC thread is instrumented exactly when this (guest) thread is, in the same window.
      instrumentStages: stages.enabled,
      stageWindow: stages.window,
    };
    const worker = new Worker(new URL('./TcpHelperWorker.js', import.meta.url), { workerData: data });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const port = await new Promise<number>((resolve, reject) => {
      const onExit = (code: number): void => reject(pvError('PV_ERR_CONFIG', `tcp NIC thread exited (${code})`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.on('message', (m: TcpHelperMessage) => {
        if (m.type === 'ready') {
          worker.off('exit', onExit);
          worker.off('error', reject);
          resolve(m.port);
        } else if (m.type === 'log') log(m.line);
      });
    });
    worker.on('error', (err) => log(`tcp NIC thread failed: ${err.stack ?? err.message}`));
    // What the NIC thread spent reaches the scenario through the domain's result (ThreadReports).
    const name = `tcp-nic ${data.name}`;
    worker.on('message', (m: TcpHelperMessage) => {
      if (m.type === 'closed') fileThreadReport({ name, cpuNs: m.cpuNs, stagesNs: m.stagesNs });
    });
    // A program that never calls close() must still be able to end its domain.
    worker.unref();
    const client = new ControlClient(ctrl, opts.spinBudget ?? 1000, opts.commandTimeoutMs ?? 10_000);
    return new TcpProvider(memory, client, worker, port, exited);
  }

  /** See VerbsProvider. */
  allocPd(): number {
    this._client.begin();
    const pd = this._client.call(NicCmd.CREATE_PD)[0];
    this._pds.add(pd);
    return pd;
  }

  /** See VerbsProvider. */
  deallocPd(pd: number): void {
    this._client.begin()[0] = pd;
    this._client.call(NicCmd.DESTROY_PD);
    this._pds.delete(pd);
  }

  /** See VerbsProvider. Keys are `index << 8 | key byte`; lkey = rkey. */
  regMr(pd: number, addr: GuestPhysAddr, length: number, access: number): ProviderMr {
    if (!Number.isSafeInteger(length) || length < 0 || length > 0xffff_ffff) {
      throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR length ${length} is not a u32`);
    }
    const a = this._client.begin();
    a[0] = pd;
    a[1] = lo32(addr) | 0;
    a[2] = hi32(addr) | 0;
    a[3] = length | 0;
    a[4] = access;
    const out = this._client.call(NicCmd.CREATE_MR);
    const mr: ProviderMr = { handle: out[0], lkey: out[1] >>> 0, rkey: out[2] >>> 0 };
    this._mrKeys.set(mr.handle, mr.lkey);
    return mr;
  }

  /** See VerbsProvider. */
  deregMr(mr: number): void {
    const lkey = this._mrKeys.get(mr);
    if (lkey === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown MR ${mr}`);
    this._client.begin()[0] = lkey | 0;
    this._client.call(NicCmd.DESTROY_MR);
    this._mrKeys.delete(mr);
  }

  /** See VerbsProvider. */
  createCq(entries: number): ProviderCq {
    return this._queues.createCq(entries);
  }

  /** See VerbsProvider. */
  destroyCq(cq: number): void {
    this._queues.destroyCq(cq);
  }

  /** See VerbsProvider. */
  createQp(init: ProviderQpInit): ProviderQp {
    return this._queues.createQp(init);
  }

  /** See VerbsProvider. */
  modifyQp(qp: number, attr: QpAttr, mask: number): void {
    this._queues.modifyQp(qp, attr, mask);
  }

  /** See VerbsProvider. */
  destroyQp(qp: number): void {
    this._queues.destroyQp(qp);
  }

  /** See VerbsProvider. */
  postSend(qp: number, wr: SendWr): void {
    this._queues.postSend(qp, wr);
  }

  /** See VerbsProvider. */
  postRecv(qp: number, wr: RecvWr): void {
    this._queues.postRecv(qp, wr);
  }

  /** See VerbsProvider: publishes the doorbells of every QP posted to, then rings the bell once. */
  flush(): void {
    this._queues.flush();
  }

  /** See VerbsProvider: nothing to do, the NIC thread moves completions on its own. */
  progress(): void {}

  /** QP state and progress as the NIC sees them (QUERY_QP). */
  queryQp(qp: number): TcpQpInfo {
    this._client.begin()[0] = qp;
    const out = this._client.call(NicCmd.QUERY_QP);
    return { state: out[0], destQpNum: out[1], destPort: out[2], sqCons: out[3] >>> 0, rqCons: out[4] >>> 0 };
  }

  /** The NIC thread's counters (Layout.ts TcpStat order). */
  stats(): number[] {
    return this._client.stats();
  }

  /** See VerbsProvider: destroys what is left (QPs, CQs, MRs, PDs), then stops the NIC thread. */
  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    try {
      this._queues.destroyAll();
      for (const mr of [...this._mrKeys.keys()]) this.deregMr(mr);
      for (const pd of [...this._pds]) this.deallocPd(pd);
    } finally {
      // Ask the NIC thread to close its sockets and end; a thread that does not end in time (or
      // is already gone) is terminated / simply awaited.
      this._worker.ref();
      this._worker.postMessage({ type: 'close' });
      const timer = setTimeout(() => void this._worker.terminate(), 5000);
      await this._exited;
      clearTimeout(timer);
    }
  }
}
