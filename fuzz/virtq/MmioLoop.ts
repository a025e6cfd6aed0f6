/**
 * One virtio-mmio device under the `mmio` adversary of the virtq target (MmioCases.ts plans the
 * cases): `step()` posts raw writes to its register block as a guest would (mailbox format of
 * MmioTransport.ts / DeviceStatus.ts, no MmioDriver), then runs one round of the device side's
 * loop — `service()`, `kicked()`, an echo server (EchoServer.ts) on each queue it reports, one
 * honest chain — and checks after it, against MmioModel (signatures `virtq/mmio:*`):
 *  - service() and kicked() never throw (`service-threw`, `kicked-threw`); a serve throws only
 *    VirtioError (`device-threw`) and a refusal breaks the queue (`refusal-not-fatal`);
 *  - every posted write is acknowledged (`unanswered`) with the verdict the model predicts
 *    (`wrong-verdict`), a refusal with a catalogue status of PV_ERR_VIRTQ_* / PV_ERR_VIRTIO_*, or
 *    PV_ERR_INVALID_ARG for a register the driver may not write or an unknown InterruptACK bit
 *    (`bad-refusal-code`). A burst posted without waiting leaves one write per mailbox: the
 *    device handles the last Status write, then the last register write, and so does the model;
 *  - Status is legal (§3.1.1, `illegal-status`) and the model's (`status-mismatch`): after a
 *    refused chain, DEVICE_NEEDS_RESET at the next service(), before the writes it handles;
 *  - a queue is attached exactly when its config passed every check (`attached-unchecked`,
 *    `ready-lost`), and the register window mirrors the selected queue and InterruptStatus
 *    (`window-mismatch`);
 *  - kicked() reports nothing unless live (`served-not-live`), only ready queues
 *    (`served-unready`), and every ready queue kicked since it last looked (`kick-lost`).
 */

import type { MmioDevice } from '../../backend/virtio/MmioDevice.js';
import type { SplitDevice } from '../../backend/virtio/SplitDevice.js';
import { codeFromStatus, type ErrorCode, VirtioError } from '../../protocol/errors.js';
import { StatusWord, writeFeatures } from '../../protocol/virtio/DeviceStatus.js';
import { MmioReg, MmioWord, mmioWords, regWord } from '../../protocol/virtio/MmioTransport.js';
import type { Violation } from '../core/FuzzTarget.js';
import { EchoServer } from './EchoServer.js';
import type { GuestRam } from './GuestRam.js';
import { ADDR_REGS, legalStatus, type MmioModel } from './MmioModel.js';
import type { Post } from './MmioOps.js';

const U64 = (1n << 64n) - 1n;

/** See the file comment. */
export class MmioLoop {
  readonly violations: Violation[] = [];
  /** One echo server per SplitDevice the device attached and reported. */
  readonly servers = new Map<SplitDevice, EchoServer>();
  /** The error that ended a queue's serving, per SplitDevice. */
  readonly errs = new Map<SplitDevice, unknown>();
  /** Actions posted. */
  posted = 0;
  private readonly _w: Int32Array;
  private _wanted = 0n;
  private readonly _pendingKicks = new Set<number>();
  /** Queues whose serve was refused since the last service(): the device must then report NEEDS_RESET. */
  private readonly _broke = new Set<SplitDevice>();

  constructor(
    readonly dev: MmioDevice,
    readonly model: MmioModel,
    private readonly _ram: GuestRam,
    private readonly _stats: Record<string, number>,
    /** Serves one honest chain beside the device loop. */
    private readonly _honest: () => void,
  ) {
    this._w = mmioWords(dev.regs);
  }

  /** Posts `posts` back to back, runs one device-loop round, checks every invariant. */
  step(posts: readonly Post[]): void {
    const w = this._w;
    const m = this.model;
    const dev = this.dev;
    const before = m.status;
    let statusV: number | undefined;
    let regW: { reg: number; v: number } | undefined;
    for (const p of posts) {
      this.posted++;
      if (p.kind === 'features') {
        this._wanted = p.wanted & U64;
        writeFeatures(w, StatusWord.DRIVER_FEAT_LO, StatusWord.DRIVER_FEAT_HI, this._wanted);
        continue;
      }
      if (p.kind === 'kick') {
        // ORDERING: seq-cst RMW of the kick counter after the driver published avail.idx.
        Atomics.add(w, MmioWord.KICK + p.q, 1);
        this._pendingKicks.add(p.q);
      } else if (p.kind === 'status') {
        statusV = p.v | 0;
        // ORDERING: the value, then the sequence bump the device loads first.
        Atomics.store(w, StatusWord.STATUS_WRITE, statusV);
        Atomics.add(w, StatusWord.WRITE_SEQ, 1);
      } else {
        regW = { reg: p.reg, v: p.v >>> 0 };
        // ORDERING: register and value, then the sequence bump the device loads first.
        Atomics.store(w, MmioWord.WRITE_REG, p.reg);
        Atomics.store(w, MmioWord.WRITE_VALUE, p.v | 0);
        Atomics.add(w, MmioWord.WRITE_SEQ, 1);
      }
      // ORDERING: the doorbell after the write it announces.
      Atomics.add(w, MmioWord.DOORBELL, 1);
    }
    // A queue that broke in the last round and is still attached: the device marks
    // DEVICE_NEEDS_RESET before it handles the writes posted since (MmioDevice.service), so the
    // model breaks first too and the verdicts below are those of a device needing a reset.
    if ([...this._broke].some((sd) => [...Array(m.numQueues).keys()].some((q) => dev.queue(q) === sd))) {
      m.broke();
      this._bump('mmioNeedsReset');
    }
    this._broke.clear();
    try {
      dev.service();
    } catch (err) {
      this.violations.push({ signature: 'virtq/mmio:service-threw', detail: String(err) });
    }
    // What a correct device does with the same mailbox: the Status write, then the register write.
    if (statusV !== undefined)
      this._verdict(
        `status (0x${before.toString(16)})`,
        statusV,
        StatusWord.ACK_SEQ,
        StatusWord.WRITE_SEQ,
        StatusWord.WRITE_ERROR,
        m.statusWrite(statusV, this._wanted),
      );
    if (statusV === 0) this._pendingKicks.clear();
    if (regW) {
      const kicks = new Set<number>();
      const code = m.reg(regW.reg, regW.v, kicks);
      for (const k of kicks) this._pendingKicks.add(k);
      this._verdict(
        `reg 0x${regW.reg.toString(16)} (status 0x${m.status.toString(16)})`,
        regW.v,
        MmioWord.ACK_SEQ,
        MmioWord.WRITE_SEQ,
        MmioWord.WRITE_ERROR,
        code,
      );
    }
    this._stateChecks();
    this._loop();
  }

  /** The ack of one posted write, its code against the model's verdict. */
  private _verdict(
    what: string,
    v: number,
    ack: number,
    seq: number,
    errWord: number,
    want: ErrorCode | undefined,
  ): void {
    const w = this._w;
    // ORDERING: ack_seq, then write_error, which the device stored before it.
    if (Atomics.load(w, ack) !== Atomics.load(w, seq)) {
      this.violations.push({
        signature: 'virtq/mmio:unanswered',
        detail: `${what} = 0x${v.toString(16)} was never acknowledged`,
      });
      return;
    }
    const st = Atomics.load(w, errWord);
    const got = st === 0 ? undefined : codeFromStatus(st);
    if (st !== 0) {
      this._bump('mmioRefused');
      this._bump(`mmio:${got ?? st}`);
      if (want !== undefined) {
        this._bump(`mmio-why:${this.model.why}`);
      }
      const ok =
        got !== undefined && (/^PV_ERR_VIRT(Q|IO)_/.test(got) || (got === 'PV_ERR_INVALID_ARG' && want === got));
      if (!ok)
        this.violations.push({
          signature: 'virtq/mmio:bad-refusal-code',
          detail: `${what} = 0x${v.toString(16)}: status ${st}`,
        });
    }
    if (got !== want) {
      this.violations.push({
        signature: 'virtq/mmio:wrong-verdict',
        detail: `${what} = 0x${(v >>> 0).toString(16)}: device ${got ?? 'applied'}, expected ${want ?? 'applied'}`,
      });
    }
  }

  /** Status, attached queues and the register window against the model. */
  private _stateChecks(): void {
    const m = this.model;
    const dev = this.dev;
    const w = this._w;
    const s = dev.status;
    if (!legalStatus(s))
      this.violations.push({ signature: 'virtq/mmio:illegal-status', detail: `status 0x${s.toString(16)}` });
    if (s !== m.status) {
      this.violations.push({
        signature: 'virtq/mmio:status-mismatch',
        detail: `status 0x${s.toString(16)}, expected 0x${m.status.toString(16)}`,
      });
      m.status = s;
    }
    for (let q = 0; q < 8; q++) {
      const attached = dev.queue(q) !== undefined;
      const ready = m.queues[q]?.ready ?? false;
      if (attached && !ready)
        this.violations.push({
          signature: 'virtq/mmio:attached-unchecked',
          detail: `queue ${q} attached; its config did not pass`,
        });
      if (!attached && ready)
        this.violations.push({
          signature: 'virtq/mmio:ready-lost',
          detail: `queue ${q} passed every check but is not attached`,
        });
      if (m.queues[q]) m.queues[q].ready = attached;
    }
    const mq = m.queues[m.sel];
    // ORDERING: seq-cst loads of registers the device stored before its last ack.
    const win = [MmioReg.QUEUE_SEL, MmioReg.QUEUE_NUM, MmioReg.QUEUE_READY, MmioReg.INTERRUPT_STATUS].map(
      (r) => Atomics.load(w, regWord(r)) >>> 0,
    );
    const want = [m.sel, mq.num, mq.ready ? 1 : 0, m.irq];
    ADDR_REGS.forEach(([lo, hi], a) => {
      win.push(Atomics.load(w, regWord(lo)) >>> 0, Atomics.load(w, regWord(hi)) >>> 0);
      want.push(mq.addr[2 * a], mq.addr[2 * a + 1]);
    });
    if (win.some((x, i) => x !== want[i])) {
      this.violations.push({
        signature: 'virtq/mmio:window-mismatch',
        detail: `window [${win.join(',')}], expected [${want.join(',')}]`,
      });
    }
  }

  /** kicked() and an echo server on each queue it reports. */
  private _loop(): void {
    const m = this.model;
    const dev = this.dev;
    let kicked: number[] = [];
    try {
      kicked = dev.kicked();
    } catch (err) {
      this.violations.push({ signature: 'virtq/mmio:kicked-threw', detail: String(err) });
    }
    const want = m.live ? [...this._pendingKicks].filter((q) => m.queues[q]?.ready).sort((a, b) => a - b) : [];
    if (m.live) this._pendingKicks.clear();
    for (const q of kicked) {
      if (!m.live)
        this.violations.push({
          signature: 'virtq/mmio:served-not-live',
          detail: `queue ${q} reported at status 0x${m.status.toString(16)}`,
        });
      else if (!m.queues[q]?.ready)
        this.violations.push({ signature: 'virtq/mmio:served-unready', detail: `queue ${q} reported, not ready` });
    }
    if (m.live && kicked.join() !== want.join()) {
      this.violations.push({
        signature: 'virtq/mmio:kick-lost',
        detail: `kicked() gave [${kicked}], expected [${want}]`,
      });
    }
    for (const q of kicked) {
      const sd = dev.queue(q);
      if (!sd) continue;
      let server = this.servers.get(sd);
      if (!server) {
        server = new EchoServer(sd, this._ram);
        this.servers.set(sd, server);
      }
      this._serve(server);
    }
    try {
      this._honest();
    } catch (err) {
      this.violations.push({ signature: 'virtq/honest:device-threw', detail: String(err) });
    }
  }

  private _serve(server: EchoServer): void {
    for (let i = 0; i < 2 * server.dev.size + 16; i++) {
      try {
        if (server.serveOne() < 0) return;
        this._bump('mmioServed');
      } catch (err) {
        this.errs.set(server.dev, err);
        if (!(err instanceof VirtioError)) {
          this.violations.push({
            signature: 'virtq/mmio:device-threw',
            detail: err instanceof Error ? (err.stack ?? err.message) : String(err),
          });
        } else if (!server.dev.broken) {
          this.violations.push({
            signature: 'virtq/mmio:refusal-not-fatal',
            detail: `${err.code} left the queue serving`,
          });
        } else {
          this._bump(`mmio-chain:${err.code}`);
          this._broke.add(server.dev);
        }
        return;
      }
    }
  }

  private _bump(counter: string): void {
    this._stats[counter] = (this._stats[counter] ?? 0) + 1;
  }
}
