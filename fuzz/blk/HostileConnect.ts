/**
 * The adversary's control plane: a vbd handshake whose frontend keys (or fresh ring) are hostile
 * (protocol.md §6: the backend parses every key strictly and validates the ring it maps).
 *
 * attack          what the frontend publishes                               backend must
 * protocol        `protocol` other than x86_64-abi                          refuse
 * order           ring-page-order > 4 or not a canonical number             refuse
 * missing         a ring-ref key absent                                     refuse
 * badRef          ring-ref revoked, foreign, read-only, past the table, junk refuse
 * noncontiguous   a 2-page ring whose second page is elsewhere              refuse
 * evtchn          event-channel closed, junk, or unbound to another domain  refuse
 * indices         req_prod − rsp_prod > ring size in the fresh ring (XSA-39) refuse
 * dataRing        ring-ref naming an ordinary data page                     either
 *
 * Refusing = the backend goes Closing/Closed with nothing mapped or bound; accepting a vbd it
 * must refuse is `blk/connect:accepted-bad-keys`; no verdict at all is `blk/connect:no-verdict`.
 * Whatever happens, the machine is closed and the vbd unplugged; the case checks then find
 * every mapping and port of the attempt gone.
 */

import { BlkFrontendKey } from '../../protocol/blkif/BlkifConstants.js';
import { RingWord } from '../../protocol/ring/Layout.js';
import { DOM0, type DomId, type EvtchnPort } from '../../protocol/Types.js';
import { XenbusState } from '../../protocol/xenbus/XenbusState.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import { AdvConnection, closeDevice } from './AdvConnection.js';
import type { AdvGuest } from './AdvGuest.js';
import type { BlkWorld } from './BlkWorld.js';

type Keys = Record<string, string>;

interface Attack {
  readonly name: string;
  readonly mustRefuse: boolean;
  apply(keys: Keys, conn: AdvConnection): void;
}

/** The key that carries ring page 0 (ring-ref for order 0, ring-ref0 otherwise). */
function ref0(keys: Keys): string {
  return keys[BlkFrontendKey.RING_REF] !== undefined ? BlkFrontendKey.RING_REF : 'ring-ref0';
}

function attacks(rng: Rng, adv: AdvGuest, honest: DomId, extraPorts: EvtchnPort[]): Attack[] {
  return [
    {
      name: 'protocol',
      mustRefuse: true,
      apply: (k) => {
        k[BlkFrontendKey.PROTOCOL] = rng.pick(['x86_32-abi', 'arm-abi', '', 'X86_64-ABI', 'x86_64-abi ']);
      },
    },
    {
      name: 'order',
      mustRefuse: true,
      apply: (k) => {
        k[BlkFrontendKey.RING_PAGE_ORDER] = rng.pick(['5', '31', '4294967295', '99999999999', '-1', '1.5', '0x1', '']);
      },
    },
    {
      name: 'missing',
      mustRefuse: true,
      apply: (k) => {
        delete k[ref0(k)];
      },
    },
    {
      name: 'badRef',
      mustRefuse: true,
      apply: (k) => {
        const bad = [adv.revokedRefs[0], adv.foreignRefs[0], adv.roRefs[0], adv.indRefs[0], 5000, 4294967295];
        k[ref0(k)] = rng.pick([...bad.map(String), 'abc', '-1', '', '4294967296']);
      },
    },
    {
      name: 'noncontiguous',
      mustRefuse: true,
      apply: (k) => {
        k[BlkFrontendKey.RING_PAGE_ORDER] = '1';
        k['ring-ref0'] = k[ref0(k)];
        k['ring-ref1'] = String(rng.pick(adv.rwRefs));
        delete k[BlkFrontendKey.RING_REF];
      },
    },
    {
      name: 'evtchn',
      mustRefuse: true,
      apply: (k) => {
        const elsewhere = adv.dom.evtchn.allocUnbound(honest);
        extraPorts.push(elsewhere);
        k[BlkFrontendKey.EVENT_CHANNEL] = rng.pick(['0', '64', '99999', 'abc', '-1', String(elsewhere)]);
      },
    },
    {
      name: 'indices',
      mustRefuse: true,
      apply: (_k, conn) => {
        // ORDERING: our own fresh ring, not yet advertised; a plain snapshot of the index.
        const rsp = Atomics.load(conn.words, RingWord.RSP_PROD) >>> 0;
        // ORDERING: the ring is not advertised yet; the store publishes it with the keys.
        Atomics.store(conn.words, RingWord.REQ_PROD, (rsp + conn.size + 1 + rng.below(1 << 30)) | 0);
      },
    },
    {
      name: 'dataRing',
      mustRefuse: false,
      apply: (k) => {
        k[ref0(k)] = String(rng.pick(adv.rwRefs));
        delete k[BlkFrontendKey.RING_PAGE_ORDER];
        if (k['ring-ref0'] !== undefined) k[BlkFrontendKey.RING_REF] = k['ring-ref0'];
        for (let i = 0; i < 16; i++) delete k[`ring-ref${i}`];
      },
    },
  ];
}

/** The backend's state for the adversary's vbd `devid` once it is past the handshake, or undefined. */
async function verdict(world: BlkWorld, adv: DomId, devid: number, timeoutMs: number): Promise<number | undefined> {
  const path = `/local/domain/${DOM0}/backend/vbd/${adv}/${devid}/state`;
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const raw = await world.toolstack.tryRead(path);
    const st = raw === undefined ? undefined : Number(raw);
    if (st === XenbusState.Connected || st === XenbusState.Closing || st === XenbusState.Closed) return st;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return undefined;
}

/** One hostile handshake on vbd `devid`; see the file comment. */
export async function hostileConnect(
  world: BlkWorld,
  adv: AdvGuest,
  honest: DomId,
  devid: number,
  rng: Rng,
): Promise<{ attack: string; accepted: boolean; violations: Violation[] }> {
  const extraPorts: EvtchnPort[] = [];
  const attack = rng.pick(attacks(rng, adv, honest, extraPorts));
  const spec = { order: rng.pick([0, 0, 1, 2]), start: rng.u32() };
  const violations: Violation[] = [];
  await world.plug(adv.dom.domid, devid);
  const attempt = await AdvConnection.start(adv.dom.hc, devid, spec, (keys, conn) => attack.apply(keys, conn));
  const st = await verdict(world, adv.dom.domid, devid, 3000);
  if (st === undefined) {
    violations.push({ signature: 'blk/connect:no-verdict', detail: `attack ${attack.name}: backend never answered` });
  } else if (st === XenbusState.Connected && attack.mustRefuse) {
    violations.push({
      signature: 'blk/connect:accepted-bad-keys',
      detail: `attack ${attack.name}: the backend connected a vbd it must refuse`,
    });
  }
  // A data page taken as a ring is served like any ring: let the backend look at it.
  if (st === XenbusState.Connected) world.serve(2);
  await closeDevice(attempt.device, 2000);
  await world.unplug(adv.dom.domid, devid);
  for (const p of extraPorts) adv.dom.evtchn.close(p);
  return { attack: attack.name, accepted: st === XenbusState.Connected, violations };
}
