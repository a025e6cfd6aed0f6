/**
 * The guest block API (Block.ts) over an NVMe SSD the program owns — `passthrough` (IOMMU
 * translating the guest's memory) or `native` (IOMMU bypass): the native driver, doorbells
 * straight to the controller, DMA into the program's own pages at `pci.dmaAddr(gpa)`.
 *
 * Asynchronous like blkfront: `read` / `write` / `flush` submit a command and ring the SQ
 * doorbell, and return a promise that `wait` settles by reaping the completion queue (the
 * phase tag tells a new entry). A transfer larger than the driver's max is split; when the
 * queue has entries − 1 commands in flight the rest waits in a private FIFO and goes out as
 * completions free CIDs (queue depth = entries − 1). pvio's controller runs inline in the thread
 * that rings its doorbell, so completions are usually posted before `ring` returns; `wait`
 * still polls and yields rather than assuming it.
 */

import { NvmeDriver } from '../../drivers/nvme/NvmeDriver.js';
import type { NvmeCompletion, NvmeIoOp } from '../../drivers/nvme/Types.js';
import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { PciFunction, Transport } from '../../protocol/Pci.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import type { Block } from './Block.js';

interface Cmd {
  readonly op: NvmeIoOp;
  readonly lba: number;
  readonly blocks: number;
  readonly gpa: GuestPhysAddr;
  readonly done: (err?: Error) => void;
}

const QID = 1;

/** Block over an owned NVMe function (see the file comment). */
export class NvmeBlock implements Block {
  readonly device: string;
  readonly transport: Transport;
  readonly sectorSize: number;
  readonly sectors: number;
  /** The driver (statistics, tests). */
  readonly driver: NvmeDriver;
  private readonly _pci: PciFunction;
  private readonly _mem: GuestMemory;
  private readonly _depth: number;
  private readonly _maxBlocks: number;
  private readonly _inFlight = new Map<number, Cmd>();
  private readonly _queued: Cmd[] = [];
  private _closed = false;

  constructor(pci: PciFunction, mem: GuestMemory, transport: Transport, opts: { queueEntries?: number } = {}) {
    this.driver = new NvmeDriver(pci, mem, { queueEntries: opts.queueEntries ?? 256 });
    const id = this.driver.identity;
    this._pci = pci;
    this._mem = mem;
    this.device = pci.name;
    this.transport = transport;
    this.sectorSize = id.lbaBytes;
    this.sectors = id.capacityBlocks;
    this._depth = id.queueEntries - 1;
    this._maxBlocks = id.maxTransferBytes / id.lbaBytes;
  }

  read(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._io('read', sector, count, gpa);
  }

  write(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._io('write', sector, count, gpa);
  }

  flush(): Promise<void> {
    return this._io('flush', 0, 0, 0 as GuestPhysAddr);
  }

  outstanding(): number {
    return this._inFlight.size + this._queued.length;
  }

  /** Reaps completions (settling their promises) and submits queued commands; returns how many completed. */
  poll(): number {
    const n = this.driver.poll(QID, this._onCqe);
    if (n > 0) this._submitQueued();
    return n;
  }

  async wait<T>(p: Promise<T>, timeoutMs = 30_000): Promise<T> {
    let settled = false;
    const tracked = p.finally(() => {
      settled = true;
    });
    tracked.catch(() => {});
    const deadline = performance.now() + timeoutMs;
    // The promise callbacks run at the awaits below; a completion reaped here settles `p` there.
    while (!settled) {
      if (this.poll() === 0) {
        if (performance.now() > deadline) throw pvError('PV_ERR_TIMEOUT', `no NVMe completion within ${timeoutMs} ms`);
        // Nothing posted yet: yield to the event loop (store messages, timers) before polling again.
        await new Promise((r) => setImmediate(r));
      } else await Promise.resolve();
    }
    return tracked;
  }

  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    for (const c of this._queued.splice(0)) c.done(pvError('PV_ERR_DISCONNECTED', `${this.device} was closed`));
    this.driver.close();
  }

  private readonly _onCqe = (c: NvmeCompletion): void => {
    const cmd = this._inFlight.get(c.cid);
    if (cmd === undefined) return;
    this._inFlight.delete(c.cid);
    try {
      this.driver.check(c, cmd.op.toUpperCase(), cmd.lba, cmd.blocks);
      cmd.done();
    } catch (err) {
      cmd.done(err as Error);
    }
  };

  private _io(op: NvmeIoOp, sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    if (this._closed) return Promise.reject(pvError('PV_ERR_DISCONNECTED', `${this.device} is closed`));
    const parts: Promise<void>[] = [];
    try {
      if (op !== 'flush') {
        if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 1) {
          throw pvError('PV_ERR_INVALID_ARG', `sector ${sector} / count ${count}`);
        }
        if (count > this.sectors || sector > this.sectors - count) {
          throw pvError(
            'PV_ERR_BLK_BAD_SECTOR',
            `sectors [${sector}, +${count}) outside ${this.device} (${this.sectors})`,
          );
        }
        this._mem.checkRange(gpa, count * this.sectorSize);
      }
      const chunks = op === 'flush' ? 1 : Math.ceil(count / this._maxBlocks);
      for (let k = 0; k < chunks; k++) {
        const lba = sector + k * this._maxBlocks;
        const blocks = op === 'flush' ? 0 : Math.min(this._maxBlocks, count - k * this._maxBlocks);
        const at = (gpa + k * this._maxBlocks * this.sectorSize) as GuestPhysAddr;
        parts.push(
          new Promise<void>((resolve, reject) => {
            this._queued.push({ op, lba, blocks, gpa: at, done: (err) => (err ? reject(err) : resolve()) });
          }),
        );
      }
    } catch (err) {
      return Promise.reject(err);
    }
    this._submitQueued();
    return parts.length === 1 ? parts[0] : Promise.all(parts).then(() => undefined);
  }

  /** Submits queued commands while CIDs are free, then rings the doorbell once. */
  private _submitQueued(): void {
    let any = false;
    while (this._queued.length > 0 && this._inFlight.size < this._depth) {
      const c = this._queued.shift() as Cmd;
      let cid: number;
      try {
        const dma = c.op === 'flush' ? this._pci.dmaAddr(0 as GuestPhysAddr) : this._pci.dmaAddr(c.gpa);
        cid = this.driver.submitIo(c.op, c.lba, c.blocks, dma, QID);
      } catch (err) {
        c.done(err as Error);
        continue;
      }
      this._inFlight.set(cid, c);
      any = true;
    }
    if (any) this.driver.ring(QID);
  }
}
