/**
 * The adversarial guest of the rdma target. It connects with the real frontend (so the backend
 * really serves it: rings mapped, session built), creates real verbs objects to aim structured
 * requests at (a PD, a CQ, two QPs connected to each other, a writable MR and a read-only MR),
 * then writes whatever it likes into its own control and data rings. It also keeps the grant
 * refs a hostile guest would forge: revoked ones, ones granted to another domain, read-only
 * ones, and refs outside the table; and canary pages it never grants.
 *
 * A protocol violation may legitimately end its rings (Xen semantics); the target then throws
 * this guest away (`close`) and connects a fresh one (`Adversary.open`).
 */

import * as ibv from '../../frontend/verbs/index.js';
import type { ParavirtProvider } from '../../frontend/verbs/paravirt/ParavirtProvider.js';
import type { Transport } from '../../protocol/Pci.js';
import { Access } from '../../protocol/rdma/Verbs.js';
import { RingWord } from '../../protocol/ring/Layout.js';
import { DOM0, type DomId, type GrantRef, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../protocol/Types.js';
import { CanaryPages } from '../core/Canary.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import type { WordRange } from '../core/Mutator.js';
import { ALL_ACCESS, contextOf } from './Honest.js';
import { type Dom, type PvWorld, settle } from './PvWorld.js';

/** Pages of the adversary's writable MR. */
const MR_PAGES = 16;

/** Refs a hostile guest forges. */
export interface ForgedRefs {
  /** Granted to dom0 and then ended. */
  readonly revoked: readonly number[];
  /** Granted to another guest, not to dom0. */
  readonly foreign: readonly number[];
  /** Granted to dom0 read-only (the read-only canary's pages). */
  readonly readonly: readonly number[];
  /** Granted to dom0 writable (a scratch page the backend may map). */
  readonly valid: readonly number[];
}

/** The adversary; see the file comment. */
export class Adversary {
  /** Times the backend legitimately ended this guest's ring. */
  halts = 0;

  private constructor(
    readonly dom: Dom,
    readonly provider: ParavirtProvider,
    readonly ctx: ibv.Context,
    readonly transport: Transport,
    readonly pd: ibv.Pd,
    readonly cq: ibv.Cq,
    readonly qps: readonly ibv.Qp[],
    readonly buf: GuestPhysAddr,
    readonly mr: ibv.Mr,
    /** Registered without write access over pages granted read-only: must never change. */
    readonly roMr: ibv.Mr,
    readonly roCanary: CanaryPages,
    /** Never granted: must never change. */
    readonly canary: CanaryPages,
    readonly refs: ForgedRefs,
    /** A page granted read-only to dom0 whose content the generators rewrite (indirect refs). */
    readonly indirect: { readonly addr: GuestPhysAddr; readonly ref: number },
    private readonly _cleanup: () => void,
  ) {}

  /** Connects a fresh adversary in `dom` (`other` is a domain whose refs count as foreign). */
  static async open(
    world: PvWorld,
    dom: Dom,
    other: DomId,
    transport: Transport,
    seed: number,
    serve: () => void,
  ): Promise<Adversary> {
    const canary = new CanaryPages(dom.mem, 2, seed, `adversary dom${dom.domid}`);
    const roCanary = new CanaryPages(dom.mem, 2, seed ^ 0x5a5a, `adversary dom${dom.domid} read-only MR`);
    // Short control timeouts: a halted control ring must not stall the run for seconds.
    const provider = await world.open(dom, transport, 0, serve, 'nic0', 20);
    const ctx = contextOf(dom, provider, transport);
    const pd = ibv.allocPd(ctx);
    const cq = ibv.createCq(ctx, 256);
    const cap = { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 3, maxRecvSge: 3, maxInlineData: 64 };
    const qps = [ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap }), ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap })];
    const opts = { minRnrTimer: 1, rnrRetry: 1 };
    ibv.connectRcQp(qps[0], { destQpNum: qps[1].qpNum, dlid: ctx.portId }, ALL_ACCESS, opts);
    ibv.connectRcQp(qps[1], { destQpNum: qps[0].qpNum, dlid: ctx.portId }, ALL_ACCESS, opts);
    const buf = ctx.allocBuffer(MR_PAGES * PAGE_SIZE);
    const mr = ibv.regMr(pd, buf, MR_PAGES * PAGE_SIZE, ALL_ACCESS);
    // No write access: the frontend grants the pages read-only; remote READ only.
    const roMr = ibv.regMr(pd, roCanary.addr, roCanary.pages * PAGE_SIZE, Access.REMOTE_READ);
    const g = dom.grant;
    const scratch = dom.mem.allocPages(4);
    const indirectAddr = dom.mem.allocPages(1);
    const valid = [
      g.grantAccess(DOM0, gfnOf(scratch), false),
      g.grantAccess(DOM0, (gfnOf(scratch) + 1) as never, false),
    ];
    const revoked = [g.grantAccess(DOM0, (gfnOf(scratch) + 2) as never, false)];
    g.endAccess(revoked[0]);
    const foreign = [g.grantAccess(other, (gfnOf(scratch) + 3) as never, false)];
    const readonly = [0, 1].map((i) => g.grantAccess(DOM0, (gfnOf(roCanary.addr) + i) as never, true));
    const indirectRef = g.grantAccess(DOM0, gfnOf(indirectAddr), true);
    const cleanup = (): void => {
      for (const r of [...valid, ...foreign, ...readonly, indirectRef]) {
        try {
          g.endAccess(r as GrantRef);
        } catch {
          // Still mapped by a backend that kept it: the teardown check reports live mappings.
        }
      }
      dom.mem.freePages(scratch, 4);
      dom.mem.freePages(indirectAddr, 1);
      canary.free();
      roCanary.free();
    };
    return new Adversary(
      dom,
      provider,
      ctx,
      transport,
      pd,
      cq,
      qps,
      buf,
      mr,
      roMr,
      roCanary,
      canary,
      { revoked, foreign, readonly, valid },
      { addr: indirectAddr, ref: indirectRef },
      cleanup,
    );
  }

  /** The data ring's words (header + slots). */
  get data(): Int32Array {
    return this.provider.channel.data.words;
  }

  /** The data ring's slot area, as a mutator range over the guest's memory buffer. */
  dataSlotRange(): WordRange {
    const w = this.data;
    return { word: (w.byteOffset >> 2) + RingWord.SLOTS, words: w.length - RingWord.SLOTS };
  }

  /** The writable MR's pages (what copy mode grant-copies from), as a mutator range. */
  bufRange(): WordRange {
    return { word: this.buf >> 2, words: this.mr.length >> 2 };
  }

  /** The indirect page, as a mutator range. */
  indirectRange(): WordRange {
    return { word: this.indirect.addr >> 2, words: PAGE_SIZE >> 2 };
  }

  /** A ref for a forged grant list: valid, revoked, foreign, read-only, out of range or random. */
  forgedRef(rng: Rng): number {
    const r = this.refs;
    switch (rng.below(7)) {
      case 0:
        return rng.pick(r.valid);
      case 1:
        return rng.pick(r.revoked);
      case 2:
        return rng.pick(r.foreign);
      case 3:
        return rng.pick(r.readonly);
      case 4:
        return this.indirect.ref;
      case 5:
        return rng.edgeU32();
      default:
        return rng.below(16384);
    }
  }

  /** Writes `refs` into the indirect page (the rest zero). */
  writeIndirect(refs: readonly number[]): void {
    const v = this.dom.mem.view(this.indirect.addr, PAGE_SIZE);
    const u = new Uint32Array(v.buffer, v.byteOffset, PAGE_SIZE / 4);
    u.fill(0);
    u.set(refs.slice(0, PAGE_SIZE / 4));
  }

  /** Takes completions off the adversary's CQ (so it does not overflow); the values do not matter. */
  drainCq(): void {
    const wcs = Array.from({ length: 32 }, ibv.emptyWc);
    try {
      while (ibv.pollCq(this.cq, 32, wcs) === 32) {}
    } catch {
      // A disconnected device: the next reconnect replaces it.
    }
  }

  /** Both canaries. */
  checkCanaries(): Violation[] {
    const out: Violation[] = [];
    const c = this.canary.check('rdma/memory:canary-changed');
    if (c) out.push(c);
    const ro = this.roCanary.check('rdma/memory:read-only-page-written');
    if (ro) out.push(ro);
    return out;
  }

  /** Closes the device (the backend destroys what is left) and frees what the adversary kept. */
  async close(): Promise<void> {
    await ibv.closeDevice(this.ctx);
    this._cleanup();
  }

  /**
   * The guest dies without cleaning up (XSA-331/350/371): the toolstack removes its device,
   * so the backend must destroy everything the guest still had (QPs, CQs, MRs, PDs, bounce
   * space) and unmap every grant by itself. Then the dead guest's leftovers are released.
   */
  async kill(world: PvWorld, serve: () => void): Promise<void> {
    await world.unplug(this.dom);
    for (let i = 0; i < 50 && world.backend.session(this.dom.domid, 0) !== undefined; i++) {
      serve();
      await settle(1);
    }
    await this.close();
  }
}
