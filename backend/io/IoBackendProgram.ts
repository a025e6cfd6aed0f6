/**
 * Driver-domain program serving the generic "io" device for every frontend the toolstack
 * attaches: the xenbus backend side (publish limits, validate the frontend's keys, map the
 * ring, bind the event channel) plus one `RingServer` loop for all rings. Runs until the host
 * writes `control/shutdown` (as `xl shutdown` does), then disconnects everything and returns
 * its counters.
 *
 * Arguments: `spinBudget` (polls before sleeping), `batchLimit` (requests per ring per round),
 * `idleTimeoutMs` (longest sleep before yielding to the event loop).
 */

import { pvError } from '../../protocol/errors.js';
import type { GrantMapping } from '../../protocol/Hypercalls.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { BackRing } from '../../protocol/ring/BackRing.js';
import { IO_SLOT_SIZE } from '../../protocol/ring/IoSlot.js';
import { MAX_RING_ORDER } from '../../protocol/ring/Layout.js';
import { type DomId, type EvtchnPort, evtchnPort, type GrantRef, grantRef } from '../../protocol/Types.js';
import { waitForShutdown } from '../../protocol/xenbus/control.js';
import type { BackendHooks, XenbusKeys } from '../../protocol/xenbus/XenbusDevice.js';
import { RingServer } from '../ring/RingServer.js';
import { BackendDirWatcher } from '../xenbus/BackendDirWatcher.js';
import { IoHandler } from './IoHandler.js';

/** Device class name in the store. */
export const IO_DEVICE_TYPE = 'io';

const UINT = /^(0|[1-9][0-9]{0,9})$/;

/** Parses an untrusted unsigned decimal store value. */
function parseUint(raw: string | undefined, key: string): number {
  if (raw === undefined || !UINT.test(raw)) throw pvError('PV_ERR_BAD_REQUEST', `frontend key ${key} is not a number`);
  const v = Number(raw);
  if (v > 0xffffffff) throw pvError('PV_ERR_BAD_REQUEST', `frontend key ${key} is out of range`);
  return v;
}

/** Reads `ring-ref` (order 0) or `ring-ref0..N` with `ring-page-order` (reference §4.2). */
function parseRingKeys(keys: XenbusKeys): { refs: GrantRef[]; port: EvtchnPort } {
  const order = keys['ring-page-order'] === undefined ? 0 : parseUint(keys['ring-page-order'], 'ring-page-order');
  if (order > MAX_RING_ORDER) throw pvError('PV_ERR_BAD_REQUEST', `ring-page-order ${order} > ${MAX_RING_ORDER}`);
  const refs: GrantRef[] = [];
  if (order === 0 && keys['ring-ref'] !== undefined) refs.push(grantRef(parseUint(keys['ring-ref'], 'ring-ref')));
  else for (let i = 0; i < 1 << order; i++) refs.push(grantRef(parseUint(keys[`ring-ref${i}`], `ring-ref${i}`)));
  return { refs, port: evtchnPort(parseUint(keys['event-channel'], 'event-channel')) };
}

interface Connection {
  ringMap: GrantMapping;
  port: EvtchnPort;
  serverId: number;
  handler: IoHandler;
  /** Its counters are published to the monitor until disconnect. */
  ring: BackRing;
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const args = env.args as { spinBudget?: number; batchLimit?: number; idleTimeoutMs?: number };
  const server = new RingServer(hc.evtchn, {
    spinBudget: args.spinBudget,
    batchLimit: args.batchLimit,
    idleTimeoutMs: args.idleTimeoutMs,
  });
  let connects = 0;
  let handlerErrors = 0;

  const hooks = (front: DomId): BackendHooks => {
    let conn: Connection | undefined;
    return {
      probe: () => ({ 'max-ring-page-order': String(MAX_RING_ORDER), 'feature-persistent': '1' }),
      connect: (_dev, keys) => {
        const { refs, port } = parseRingKeys(keys);
        const ringMap = hc.grant.mapGrants(front, refs, true);
        let local: EvtchnPort | undefined;
        let ring: BackRing | undefined;
        try {
          ring = new BackRing(ringMap.view, IO_SLOT_SIZE);
          ring.counters.publish(hc.monitor, 'io', front, 'back');
          local = hc.evtchn.bindInterdomain(front, port);
          const handler = new IoHandler(hc, front);
          const serverId = server.add(ring, local, handler.handle, (code, message) => {
            env.log(`io backend: ring of dom${front} halted: ${code}: ${message}`);
          });
          conn = { ringMap, port: local, serverId, handler, ring };
          connects++;
          return {};
        } catch (err) {
          ring?.counters.unpublish();
          if (local !== undefined) hc.evtchn.close(local);
          hc.grant.unmapGrant(ringMap.handle);
          throw err;
        }
      },
      disconnect: () => {
        if (!conn) return;
        const c = conn;
        conn = undefined;
        server.remove(c.serverId);
        c.ring.counters.unpublish();
        handlerErrors += c.handler.errors;
        c.handler.release();
        hc.evtchn.close(c.port);
        hc.grant.unmapGrant(c.ringMap.handle);
      },
    };
  };

  const watcher = new BackendDirWatcher(hc.store, hc.domid, IO_DEVICE_TYPE, hooks);
  await watcher.start();
  const stopped = waitForShutdown(hc.store, hc.domid).then(() => server.stop());
  await server.run();
  await stopped;
  await watcher.stop();
  return {
    connects,
    handlerErrors,
    liveMappings: hc.grant.liveMappings(),
    watcherErrors: watcher.errors.map((e) => e.message),
    ...server.stats,
  };
}
