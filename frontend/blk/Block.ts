/**
 * One small block API for guest programs, whatever path reaches the SSD — as
 * frontend/verbs `openDevice` is for RDMA:
 *
 *   const blk = await openBlock(env);              // the first nvme attachment
 *   const buf = env.hypercalls.memory.allocPages(1);
 *   await blk.wait(blk.write(0, 8, buf));          // device sectors, guest-physical buffer
 *   await blk.wait(blk.flush());
 *   await blk.close();
 *
 * `paravirt`: the vbd the toolstack plugged (blkfront ↔ dom0's blkback over the ring, which
 * serves it from the SSD); `passthrough` / `native`: the program owns the NVMe function and runs
 * the native driver (NvmeBlock.ts). Sectors are the DEVICE's (`sectorSize` bytes each); I/O is
 * asynchronous (promises), several requests may be in flight, and `wait(p)` drives the
 * transport until `p` settles (ring + event channel, or the NVMe completion queue).
 */

import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';
import type { DomainEnv } from '../../protocol/Program.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { type BlkDevice, openBlkfront } from './BlkConnect.js';
import { NvmeBlock } from './NvmeBlock.js';

/** A block device as a guest program sees it. */
export interface Block {
  /** Device name in the scenario (`nvme0`). */
  readonly device: string;
  readonly transport: Transport;
  /** Bytes per device sector (the unit of `read` / `write`). */
  readonly sectorSize: number;
  /** Size in device sectors. */
  readonly sectors: number;
  /** Reads `count` sectors at `sector` into this domain's memory at `gpa`. */
  read(sector: number, count: number, gpa: GuestPhysAddr): Promise<void>;
  /** Writes `count` sectors at `sector` from `gpa`. */
  write(sector: number, count: number, gpa: GuestPhysAddr): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** Requests submitted and not yet completed. */
  outstanding(): number;
  /** Drives completions until `p` settles; PV_ERR_TIMEOUT after `timeoutMs`. */
  wait<T>(p: Promise<T>, timeoutMs?: number): Promise<T>;
  /** Orderly close (disconnect the vbd, or shut the controller down). */
  close(): Promise<void>;
}

/** Options of `openBlock`. */
export interface OpenBlockOptions {
  /** blkfront ring of 2^order pages (paravirt; default 0: 32 requests in flight). */
  readonly ringOrder?: number;
  /** Polls before sleeping (paravirt). */
  readonly spinBudget?: number;
  /** NVMe I/O queue entries (passthrough/native; default 256). */
  readonly queueEntries?: number;
}

/** Block over a connected vbd; converts device sectors to blkif's 512-byte units. */
class PvBlock implements Block {
  readonly transport: Transport = 'paravirt';
  readonly sectorSize: number;
  readonly sectors: number;
  private readonly _ratio: number;

  constructor(
    readonly device: string,
    private readonly _vbd: BlkDevice,
  ) {
    this.sectorSize = _vbd.info.sectorSize;
    this._ratio = this.sectorSize / 512;
    this.sectors = Math.floor(_vbd.info.sectors / this._ratio);
  }

  read(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._vbd.front.read(sector * this._ratio, count * this._ratio, gpa);
  }

  write(sector: number, count: number, gpa: GuestPhysAddr): Promise<void> {
    return this._vbd.front.write(sector * this._ratio, count * this._ratio, gpa);
  }

  flush(): Promise<void> {
    return this._vbd.front.flush();
  }

  outstanding(): number {
    return this._vbd.front.outstanding();
  }

  wait<T>(p: Promise<T>, timeoutMs?: number): Promise<T> {
    return this._vbd.front.wait(p, timeoutMs);
  }

  close(): Promise<void> {
    return this._vbd.close();
  }
}

/**
 * Opens the block device `name` of this domain (default: the first `nvme` attachment) over
 * its transport. No such device, or a transport blocks do not use → PV_ERR_CONFIG.
 */
export async function openBlock(env: DomainEnv, name?: string, opts: OpenBlockOptions = {}): Promise<Block> {
  const att =
    name === undefined ? env.devices.find((d) => d.kind === 'nvme') : env.devices.find((d) => d.device === name);
  if (att === undefined) {
    const what = name === undefined ? 'no nvme device' : `no device named '${name}'`;
    throw pvError('PV_ERR_CONFIG', `${what} attached to domain ${env.domid} (${env.name})`);
  }
  if (att.kind !== 'nvme') throw pvError('PV_ERR_CONFIG', `device '${att.device}' is a ${att.kind}, not an nvme`);
  if (att.transport === 'paravirt') {
    const vbd = await openBlkfront(env.hypercalls, {
      backend: att.backendDomid ?? 0,
      devid: att.devid ?? 0,
      order: opts.ringOrder,
      spinBudget: opts.spinBudget,
    });
    return new PvBlock(att.device, vbd);
  }
  if ((att.transport === 'passthrough' || att.transport === 'native') && att.pci !== undefined) {
    return new NvmeBlock(att.pci, env.hypercalls.memory, att.transport, { queueEntries: opts.queueEntries });
  }
  throw pvError('PV_ERR_CONFIG', `device '${att.device}': transport '${att.transport}' has no block path`);
}
