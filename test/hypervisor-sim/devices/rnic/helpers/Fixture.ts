/**
 * Test fixtures: NICs on one host fabric, each owned by a fake domain (its own memory and a
 * FlatDma IOMMU context), and connected RC QP pairs with a registered buffer on each side.
 */

import { type RnicConfig, RnicDevice, type RnicState } from '../../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { RnicFabric, WIRE_IDEAL, type WireProfile } from '../../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { Access } from '../../../../../protocol/rdma/Verbs.js';
import { FlatDma } from './FlatDma.js';
import { type ConnectOpts, type HCq, type HQp, NicHarness, type QpOpts } from './NicHarness.js';

/** One NIC and the domain that owns it. */
export interface Nic {
  readonly state: RnicState;
  readonly memory: SharedArrayBuffer;
  readonly dma: FlatDma;
  readonly dev: RnicDevice;
  readonly drv: NicHarness;
}

/** Options of `makeNics`. */
export interface NicOpts {
  count?: number;
  memBytes?: number;
  wire?: WireProfile;
  mode?: 'inline' | 'dedicated';
  config?: Partial<RnicConfig>;
}

/** Host of `count` NICs (ports 1 … count) on one fabric, in this thread. */
export function makeNics(o: NicOpts = {}): { fabric: RnicFabric; lock: SharedArrayBuffer; nics: Nic[] } {
  const lock = RnicFabric.createLock();
  const fabric = new RnicFabric(lock, o.wire ?? WIRE_IDEAL);
  const nics: Nic[] = [];
  for (let i = 0; i < (o.count ?? 2); i++) {
    const state = RnicDevice.create({ name: `nic${i}`, portId: i + 1, ...o.config });
    const memory = new SharedArrayBuffer(o.memBytes ?? 4 << 20);
    const dma = new FlatDma(memory, i + 1);
    const dev = new RnicDevice(state, dma, fabric);
    nics.push({ state, memory, dma, dev, drv: new NicHarness(dev.mmio(o.mode ?? 'inline'), memory) });
  }
  return { fabric, lock, nics };
}

/** One side of a connected pair. */
export interface End {
  readonly nic: Nic;
  readonly drv: NicHarness;
  readonly pd: number;
  readonly scq: HCq;
  readonly rcq: HCq;
  readonly qp: HQp;
  /** Registered buffer. */
  readonly buf: number;
  readonly bufLen: number;
  readonly lkey: number;
  readonly rkey: number;
}

/** Options of `makePair`. */
export interface PairOpts extends NicOpts, QpOpts, ConnectOpts {
  bufLen?: number;
  /** MR access flags (default all). */
  mrAccess?: number;
  cqEntries?: number;
}

/** Builds an end: PD, CQs, QP and a registered buffer on `nic`. */
export function makeEnd(nic: Nic, o: PairOpts = {}): End {
  const drv = nic.drv;
  const pd = drv.createPd();
  const scq = drv.createCq(o.cqEntries ?? 256);
  const rcq = drv.createCq(o.cqEntries ?? 256);
  const qp = drv.createQp(pd, scq, rcq, o);
  const bufLen = o.bufLen ?? 1 << 16;
  const buf = drv.alloc(bufLen);
  const all = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
  const mr = drv.regMr(pd, buf, bufLen, o.mrAccess ?? all);
  return { nic, drv, pd, scq, rcq, qp, buf, bufLen, lkey: mr.lkey, rkey: mr.rkey };
}

/** Two NICs with one connected QP pair (a on port 1, b on port 2). */
export function makePair(o: PairOpts = {}): {
  a: End;
  b: End;
  fabric: RnicFabric;
  lock: SharedArrayBuffer;
  nics: Nic[];
} {
  const host = makeNics(o);
  const a = makeEnd(host.nics[0], o);
  const b = makeEnd(host.nics[1], o);
  a.drv.connect(a.qp, 2, b.qp.qpn, o);
  b.drv.connect(b.qp, 1, a.qp.qpn, o);
  return { a, b, ...host };
}

/** Fills `[addr, addr + len)` with a pseudo-random pattern from `seed`. */
export function fillPattern(bytes: Uint8Array, addr: number, len: number, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[addr + i] = x & 0xff;
  }
}

/** True when the two ranges hold the same bytes. */
export function sameBytes(a: Uint8Array, aAddr: number, b: Uint8Array, bAddr: number, len: number): boolean {
  return Buffer.compare(Buffer.from(a.buffer, aAddr, len), Buffer.from(b.buffer, bAddr, len)) === 0;
}
