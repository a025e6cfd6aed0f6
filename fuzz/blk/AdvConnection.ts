/**
 * The adversarial guest's vbd connection: the blkfront xenbus handshake done by hand (as
 * `openBlkfront` does), so the fuzzer chooses what a hostile frontend can choose — the ring order
 * (1 … 16 pages) and the ring's starting index (near 2^32, so producer indices wrap during the
 * run, XSA-39) — and then drives the ring itself through raw words: `AdvConnection` keeps its own
 * producer and consumer instead of a FrontRing, because it publishes what no honest front would
 * (producer jumps, stale slots) and a FrontRing would refuse the responses that follow.
 */

import { endAccessDeferred } from '../../frontend/grant/endAccessDeferred.js';
import { BLKIF_PROTOCOL_X86_64, BlkFrontendKey, VBD_DEVICE_TYPE } from '../../protocol/blkif/BlkifConstants.js';
import { BLKIF_SLOT_SIZE, BLKIF_SLOT_WORDS } from '../../protocol/blkif/BlkifSlot.js';
import { pvError } from '../../protocol/errors.js';
import type { Hypercalls } from '../../protocol/Hypercalls.js';
import { initSharedRing, RingWord, ringBytes, ringSlots } from '../../protocol/ring/Layout.js';
import { DOM0, type EvtchnPort, type Gfn, type GrantRef, type GuestPhysAddr, gfnOf } from '../../protocol/Types.js';
import { XenbusDevice } from '../../protocol/xenbus/XenbusDevice.js';
import type { Rng } from '../core/FuzzTarget.js';

/** A handshake started by `AdvConnection.start`. */
export interface AdvAttempt {
  readonly device: XenbusDevice;
  /** The connection, once the setup hook ran. */
  conn(): AdvConnection | undefined;
}

/**
 * Orderly close: Closing, the backend unmaps, the ring grants end and its pages are freed. A
 * machine that does not reach Closed within `timeoutMs` (a backend that refused hostile keys
 * may never answer) is destroyed instead, which releases the same way.
 */
export async function closeDevice(device: XenbusDevice, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs);
  });
  try {
    if ((await Promise.race([device.close().then(() => 'closed' as const), late])) === 'late') await device.destroy();
  } finally {
    clearTimeout(timer);
  }
}

/** How the adversary's ring is laid out. */
export interface AdvRingSpec {
  /** Ring of 2^order pages. */
  readonly order: number;
  /** Initial producer/consumer index (u32). */
  readonly start: number;
}

/** A connected adversarial vbd; see the file comment. */
export class AdvConnection {
  readonly words: Int32Array;
  readonly size: number;
  readonly port: EvtchnPort;
  readonly ringRefs: readonly GrantRef[];
  /** Guest frames of the ring pages (a READ into them clobbers the ring: the checks relax). */
  readonly ringFrames: readonly number[];
  /** Guest-physical address of the ring (the mutator addresses slots from it). */
  readonly ringAddr: GuestPhysAddr;
  /** Next request index to fill (private until published). */
  reqProd: number;
  /** Next response index to read. */
  rspCons: number;
  private readonly _mask: number;

  private constructor(
    private readonly _hc: Hypercalls,
    readonly devid: number,
    readonly spec: AdvRingSpec,
    private readonly _dev: { device: XenbusDevice | undefined },
  ) {
    const pages = 1 << spec.order;
    this.ringAddr = _hc.memory.allocPages(pages);
    const view = _hc.memory.view(this.ringAddr, ringBytes(spec.order));
    initSharedRing(view, spec.start);
    this.words = new Int32Array(view.buffer, view.byteOffset, view.byteLength / 4);
    this.size = ringSlots(view.byteLength, BLKIF_SLOT_SIZE);
    this._mask = this.size - 1;
    this.reqProd = spec.start >>> 0;
    this.rspCons = spec.start >>> 0;
    const first = gfnOf(this.ringAddr);
    const refs: GrantRef[] = [];
    const frames: number[] = [];
    for (let i = 0; i < pages; i++) {
      refs.push(_hc.grant.grantAccess(DOM0, (first + i) as Gfn, false));
      frames.push(first + i);
    }
    this.ringRefs = refs;
    this.ringFrames = frames;
    this.port = _hc.evtchn.allocUnbound(DOM0);
  }

  /**
   * Starts the frontend machine of vbd `devid` (already plugged by the toolstack) with a ring
   * laid out as `spec`; `hostile` may tamper with the keys (and the fresh ring) before they are
   * published. Resolves once the machine runs; the handshake goes on on store watches.
   */
  static async start(
    hc: Hypercalls,
    devid: number,
    spec: AdvRingSpec,
    hostile?: (keys: Record<string, string>, conn: AdvConnection) => void,
  ): Promise<AdvAttempt> {
    let conn: AdvConnection | undefined;
    const holder: { device: XenbusDevice | undefined } = { device: undefined };
    const device = new XenbusDevice({
      role: 'frontend',
      store: hc.store,
      domid: hc.domid,
      type: VBD_DEVICE_TYPE,
      devid,
      hooks: {
        setup: () => {
          if (conn !== undefined) throw pvError('PV_ERR_DISCONNECTED', 'the adversary connects once per vbd');
          conn = new AdvConnection(hc, devid, spec, holder);
          const keys: Record<string, string> = {
            [BlkFrontendKey.EVENT_CHANNEL]: String(conn.port),
            [BlkFrontendKey.PROTOCOL]: BLKIF_PROTOCOL_X86_64,
          };
          if (spec.order === 0) keys[BlkFrontendKey.RING_REF] = String(conn.ringRefs[0]);
          else {
            keys[BlkFrontendKey.RING_PAGE_ORDER] = String(spec.order);
            conn.ringRefs.forEach((ref, i) => {
              keys[`ring-ref${i}`] = String(ref);
            });
          }
          hostile?.(keys, conn);
          return keys;
        },
        connected: () => {},
        disconnected: async () => {
          await conn?._release();
        },
      },
    });
    holder.device = device;
    await device.start();
    return { device, conn: () => conn };
  }

  /** A random layout: mostly one page, up to 16; half the time a start index just below 2^32 (wraps). */
  static randomSpec(rng: Rng): AdvRingSpec {
    return {
      order: rng.pick([0, 0, 0, 1, 2, 4]),
      start: rng.chance(0.5) ? (0x100000000 - 1 - rng.below(600)) >>> 0 : rng.u32(),
    };
  }

  /** Runs the handshake with honest keys; resolves once Connected, PV_ERR_TIMEOUT after `timeoutMs`. */
  static async connect(hc: Hypercalls, devid: number, spec: AdvRingSpec, timeoutMs = 5000): Promise<AdvConnection> {
    const attempt = await AdvConnection.start(hc, devid, spec);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        attempt.device.whenConnected(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(pvError('PV_ERR_TIMEOUT', `vbd ${devid} handshake`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      await attempt.device.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return attempt.conn() as AdvConnection;
  }

  /** Word offset (in `words`) of slot `index` (any u32 index; masked). */
  slot(index: number): number {
    return RingWord.SLOTS + (index & this._mask) * BLKIF_SLOT_WORDS;
  }

  /** The shared producer the backend published. */
  rspProd(): number {
    // ORDERING: seq-cst load before the response slots are read.
    return Atomics.load(this.words, RingWord.RSP_PROD) >>> 0;
  }

  /** Requests published and not yet answered, as this side counts them. */
  outstanding(): number {
    return (this.reqProd - this.rspCons) >>> 0;
  }

  /** Publishes `req_prod = value` (any u32: an honest front only ever publishes `reqProd`). */
  publish(value: number): void {
    // ORDERING: the slots were written with plain stores; this seq-cst store publishes them.
    Atomics.store(this.words, RingWord.REQ_PROD, value | 0);
  }

  /** Orderly close (see `closeDevice`). */
  async close(timeoutMs = 5000): Promise<void> {
    const device = this._dev.device;
    if (device !== undefined) await closeDevice(device, timeoutMs);
  }

  private _released = false;

  private async _release(): Promise<void> {
    if (this._released) return;
    this._released = true;
    try {
      this._hc.evtchn.close(this.port);
    } catch {
      // Already closed by the peer's teardown: nothing to release.
    }
    const left = await endAccessDeferred(this._hc.grant, this.ringRefs);
    // A ring grant the backend never unmapped keeps its pages (XSA-396); the teardown reports it.
    if (left.length === 0) this._hc.memory.freePages(this.ringAddr, 1 << this.spec.order);
  }
}
