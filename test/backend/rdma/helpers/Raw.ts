/**
 * A hostile frontend's tools: write whatever it likes into the control and data rings of a real,
 * connected frontend (its PvChannel), run the backend's round, and read the response back. The
 * backend sees exactly what a guest that ignores the protocol would put there.
 */

import protobuf from 'protobufjs';
import type { ParavirtProvider } from '../../../../frontend/verbs/paravirt/ParavirtProvider.js';
import { CtrlCodec, writeCtrlSlot } from '../../../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlCommand, CtrlResponse } from '../../../../protocol/rdma/pv/CtrlSchema.js';
import {
  decodeDataResponse,
  emptyDataResponse,
  PV_DATA_HDR_WORDS,
  type PvDataResponse,
} from '../../../../protocol/rdma/pv/DataSlot.js';
import { PV_DATA_SLOT_WORDS } from '../../../../protocol/rdma/pv/PvConstants.js';
import { type GrantRef, type GuestPhysAddr, gfnOf, PAGE_SIZE } from '../../../../protocol/Types.js';
import type { Dom, PvWorld } from './PvWorld.js';

/** The codec a test uses to speak the control protocol itself. */
export const codec = new CtrlCodec(protobuf);

let seq = 1000;

/** Writes a control slot with `write`, publishes it, serves the backend, decodes the response. */
export function rawCtrl(
  world: PvWorld,
  p: ParavirtProvider,
  write: (words: Int32Array, w: number) => void,
): CtrlResponse {
  const ring = p.channel.ctrl;
  const w = ring.nextRequestSlot();
  write(ring.words, w);
  ring.commitRequest();
  ring.pushRequests();
  for (let i = 0; i < 10 && ring.unconsumedResponses() === 0; i++) world.serve();
  if (ring.unconsumedResponses() === 0) throw new Error('the backend did not answer the control request');
  const words = ring.words;
  const at = ring.responseSlot();
  const bytes = new Uint8Array(words.buffer, words.byteOffset + (at + 1) * 4, words[at]).slice();
  ring.consumeResponse();
  return codec.decodeResponse(bytes);
}

/** Sends raw protobuf bytes as a control request. */
export function rawBytes(world: PvWorld, p: ParavirtProvider, bytes: Uint8Array): CtrlResponse {
  return rawCtrl(world, p, (words, w) => writeCtrlSlot(words, w, bytes));
}

/** Sends a well-formed command (with whatever values it holds) and returns the response. */
export function rawCmd(world: PvWorld, p: ParavirtProvider, cmd: CtrlCommand): CtrlResponse {
  return rawBytes(world, p, codec.encodeRequest({ seq: seq++, cmd }));
}

/**
 * Writes `refs` into fresh indirect pages of `dom`, grants them to dom0 read-only and returns
 * their refs (what a RegMr names).
 */
export function indirect(dom: Dom, refs: readonly number[]): GrantRef[] {
  const pages = Math.max(1, Math.ceil(refs.length / 1024));
  const addr = dom.mem.allocPages(pages);
  const v = dom.mem.view(addr, pages * PAGE_SIZE);
  new Uint32Array(v.buffer, v.byteOffset, refs.length).set(refs);
  const out: GrantRef[] = [];
  for (let i = 0; i < pages; i++) out.push(dom.grant.grantAccess(0 as never, (gfnOf(addr) + i) as never, true));
  return out;
}

/** Grants `pages` pages from `addr` of `dom` to `to` (dom0 by default). */
export function grantPages(dom: Dom, addr: GuestPhysAddr, pages: number, readonly: boolean, to = 0): GrantRef[] {
  const out: GrantRef[] = [];
  for (let i = 0; i < pages; i++) out.push(dom.grant.grantAccess(to as never, (gfnOf(addr) + i) as never, readonly));
  return out;
}

/**
 * Writes one data request (header words + `wqe` words, the rest zero), publishes it, serves the
 * backend and returns the response taken off the ring.
 */
export function rawData(
  world: PvWorld,
  p: ParavirtProvider,
  header: readonly number[],
  wqe: readonly number[],
): PvDataResponse {
  const ring = p.channel.data;
  // Take the provider's own pending responses first so the one we read is ours.
  p.channel.drainData();
  const w = ring.nextRequestSlot();
  for (let i = 0; i < PV_DATA_SLOT_WORDS; i++) ring.words[w + i] = 0;
  header.forEach((v, i) => {
    ring.words[w + i] = v;
  });
  wqe.forEach((v, i) => {
    ring.words[w + PV_DATA_HDR_WORDS + i] = v;
  });
  ring.commitRequest();
  ring.pushRequests();
  for (let i = 0; i < 10 && ring.unconsumedResponses() === 0; i++) world.serve();
  if (ring.unconsumedResponses() === 0) throw new Error('the backend did not answer the data request');
  const r = decodeDataResponse(ring.words, ring.responseSlot(), emptyDataResponse());
  const out = { ...r };
  ring.consumeResponse();
  return out;
}
