/**
 * Generators of control-ring requests (a u32 length word, then a protobuf CtrlRequest):
 * random bytes, valid messages cut short or with bytes flipped, and well-formed commands full
 * of hostile values — handles that do not exist, counts and lengths near 2^32, and grant refs a
 * hostile guest forges (revoked, granted to another domain, read-only where the backend must
 * write, outside the table), written into the indirect page the backend reads the refs from.
 * Well-formed commands also ask for more than the per-guest limits allow.
 */

import type { CtrlCodec } from '../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlCommand } from '../../protocol/rdma/pv/CtrlSchema.js';
import { PV_CTRL_MAX_MESSAGE } from '../../protocol/rdma/pv/PvConstants.js';
import type { Rng } from '../core/FuzzTarget.js';
import type { Adversary } from './Adversary.js';

/** A generated control request: the bytes, and the seq when they are a well-formed request. */
export interface CtrlRequestBytes {
  readonly bytes: Uint8Array;
  /** The seq the response must echo, when the request is well-formed. */
  readonly seq: number | undefined;
  /** The length word to write instead of `bytes.length` (a lying length), if any. */
  readonly lengthWord?: number;
}

function handle(rng: Rng, own: number): number {
  return rng.chance(0.6) ? own : rng.chance(0.5) ? rng.below(70) : rng.edgeU32();
}

function count(rng: Rng, small: number): number {
  return rng.chance(0.6) ? rng.below(small + 1) : rng.edgeU32();
}

/** A command with hostile values; may write the adversary's indirect page. */
export function hostileCommand(rng: Rng, adv: Adversary): CtrlCommand {
  const qp = rng.pick(adv.qps);
  switch (rng.below(10)) {
    case 0:
      return { kind: 'allocPd' };
    case 1:
      return { kind: 'deallocPd', pd: handle(rng, adv.pd.handle) };
    case 2: {
      const npages = rng.chance(0.7) ? 1 + rng.below(4) : rng.edgeU32();
      const refs = Array.from({ length: Math.min(64, rng.chance(0.8) ? Math.min(npages, 64) : rng.below(64)) }, () =>
        adv.forgedRef(rng),
      );
      adv.writeIndirect(refs);
      const ind = rng.chance(0.8)
        ? [adv.indirect.ref]
        : Array.from({ length: rng.below(40) }, () => adv.forgedRef(rng));
      return {
        kind: 'regMr',
        pd: handle(rng, adv.pd.handle),
        addr: rng.chance(0.7) ? rng.below(64) * 4096 + rng.below(4096) : rng.pick([-1, 0, 2 ** 53 - 1, rng.edgeU32()]),
        length: rng.chance(0.7) ? 1 + rng.below(npages * 4096) : rng.edgeU32(),
        access: rng.chance(0.7) ? rng.below(8) : rng.edgeU32(),
        npages,
        indirectRefs: ind,
      };
    }
    case 3:
      return { kind: 'deregMr', mr: handle(rng, rng.pick([adv.mr.handle, adv.roMr.handle])) };
    case 4: {
      const entries = rng.chance(0.6) ? 1 << rng.below(13) : rng.edgeU32();
      const ringRefs = Array.from({ length: rng.chance(0.8) ? 1 + rng.below(3) : rng.below(80) }, () =>
        adv.forgedRef(rng),
      );
      return { kind: 'createCq', entries, ringRefs };
    }
    case 5:
      return { kind: 'destroyCq', cq: handle(rng, adv.cq.handle) };
    case 6:
      return {
        kind: 'createQp',
        pd: handle(rng, adv.pd.handle),
        sendCq: handle(rng, adv.cq.handle),
        recvCq: handle(rng, adv.cq.handle),
        cap: {
          maxSendWr: count(rng, 256),
          maxRecvWr: count(rng, 256),
          maxSendSge: count(rng, 6),
          maxRecvSge: count(rng, 4),
          maxInlineData: count(rng, 128),
        },
        sqSigAll: rng.chance(0.5),
      };
    case 7: {
      const v = (): number => (rng.chance(0.7) ? rng.below(8) : rng.edgeU32());
      return {
        kind: 'modifyQp',
        qp: handle(rng, qp.handle),
        mask: rng.chance(0.5) ? rng.below(1 << 20) : rng.edgeU32(),
        attr: {
          qpState: v(),
          curQpState: v(),
          qpAccessFlags: v(),
          pkeyIndex: v(),
          portNum: v(),
          pathMtu: v(),
          destQpNum: rng.chance(0.5) ? qp.qpNum : v(),
          rqPsn: v(),
          sqPsn: v(),
          maxRdAtomic: v(),
          maxDestRdAtomic: v(),
          minRnrTimer: v(),
          timeout: v(),
          retryCnt: v(),
          rnrRetry: v(),
          dlid: v(),
        },
      };
    }
    case 8:
      return { kind: 'destroyQp', qp: handle(rng, qp.handle) };
    default:
      return { kind: 'queryPort' };
  }
}

/** One hostile control request; see the file comment. */
export function genCtrlRequest(rng: Rng, adv: Adversary, codec: CtrlCodec, seq: number): CtrlRequestBytes {
  const kind = rng.below(8);
  if (kind === 0) {
    const bytes = new Uint8Array(rng.below(PV_CTRL_MAX_MESSAGE + 1));
    rng.fill(bytes);
    return { bytes, seq: undefined };
  }
  let bytes: Uint8Array;
  try {
    bytes = codec.encodeRequest({ seq, cmd: hostileCommand(rng, adv) });
  } catch {
    // Values protobufjs refuses to encode (it validates types): send garbage instead.
    bytes = new Uint8Array(16);
    rng.fill(bytes);
    return { bytes, seq: undefined };
  }
  if (kind === 1 && bytes.length > 0) return { bytes: bytes.slice(0, rng.below(bytes.length)), seq: undefined };
  if (kind === 2 && bytes.length > 0) {
    const b = bytes.slice();
    for (let i = 0; i < 1 + rng.below(4); i++) b[rng.below(b.length)] ^= 1 << rng.below(8);
    return { bytes: b, seq: undefined };
  }
  if (kind === 3) return { bytes, seq: undefined, lengthWord: rng.edgeU32() };
  return { bytes, seq };
}
