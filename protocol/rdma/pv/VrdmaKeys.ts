/**
 * The xenbus keys of the `vrdma` device and their parsing. Values read from the peer's directory
 * are untrusted text: every number goes through `parseStoreUint` (decimal, no sign, ≤ 2^32 − 1).
 *
 * ```
 * backend dir (published by probe, before InitWait)
 *   port-id              the NIC's port id: the guest's QPs live there, peers put it in ahAttr.dlid
 *   max-qp               QPs this guest may hold
 *   max-cq               CQs this guest may hold
 *   max-mr               MRs this guest may hold
 *   max-pinned-pages     pages of guest memory all its MRs may span together
 *   max-outstanding-wr   sum of the send and receive queue depths of all its QPs
 *   max-cqe              entries of the largest CQ
 *   max-qp-wr            depth of the largest send or receive queue
 *   feature-copy         1: the backend also serves mode=copy
 * frontend dir (published by setup, with Initialised)
 *   ctrl-ring-ref        grant ref of the control ring page (order 0)
 *   data-ring-page-order 3
 *   data-ring-ref0..7    grant refs of the data ring pages
 *   event-channel        one port for both rings
 *   mode                 zero-copy | copy
 * ```
 */

import { pvError } from '../../errors.js';
import type { VrdmaMode } from './PvConstants.js';

/** Key names, so both ends spell them once. */
export const enum VrdmaKey {
  PORT_ID = 'port-id',
  MAX_QP = 'max-qp',
  MAX_CQ = 'max-cq',
  MAX_MR = 'max-mr',
  MAX_PINNED_PAGES = 'max-pinned-pages',
  MAX_OUTSTANDING_WR = 'max-outstanding-wr',
  MAX_CQE = 'max-cqe',
  MAX_QP_WR = 'max-qp-wr',
  FEATURE_COPY = 'feature-copy',
  CTRL_RING_REF = 'ctrl-ring-ref',
  DATA_RING_PAGE_ORDER = 'data-ring-page-order',
  DATA_RING_REF = 'data-ring-ref',
  EVENT_CHANNEL = 'event-channel',
  MODE = 'mode',
}

/** Per-guest limits and identity a backend publishes. */
export interface VrdmaBackendInfo {
  readonly portId: number;
  readonly maxQp: number;
  readonly maxCq: number;
  readonly maxMr: number;
  readonly maxPinnedPages: number;
  readonly maxOutstandingWr: number;
  readonly maxCqe: number;
  readonly maxQpWr: number;
  readonly featureCopy: boolean;
}

const UINT = /^(0|[1-9][0-9]{0,9})$/;

/** Parses an untrusted unsigned decimal store value (≤ 2^32 − 1); PV_ERR_BAD_REQUEST otherwise. */
export function parseStoreUint(raw: string | undefined, key: string): number {
  if (raw === undefined || !UINT.test(raw)) {
    throw pvError('PV_ERR_BAD_REQUEST', `key ${key} is not a decimal number: ${String(raw).slice(0, 32)}`);
  }
  const v = Number(raw);
  if (v > 0xffffffff) throw pvError('PV_ERR_BAD_REQUEST', `key ${key} is out of range: ${raw}`);
  return v;
}

/** The backend's probe keys. */
export function formatBackendInfo(info: VrdmaBackendInfo): Record<string, string> {
  return {
    [VrdmaKey.PORT_ID]: String(info.portId),
    [VrdmaKey.MAX_QP]: String(info.maxQp),
    [VrdmaKey.MAX_CQ]: String(info.maxCq),
    [VrdmaKey.MAX_MR]: String(info.maxMr),
    [VrdmaKey.MAX_PINNED_PAGES]: String(info.maxPinnedPages),
    [VrdmaKey.MAX_OUTSTANDING_WR]: String(info.maxOutstandingWr),
    [VrdmaKey.MAX_CQE]: String(info.maxCqe),
    [VrdmaKey.MAX_QP_WR]: String(info.maxQpWr),
    [VrdmaKey.FEATURE_COPY]: info.featureCopy ? '1' : '0',
  };
}

/** Reads a backend's probe keys (the frontend does not trust them either). */
export function parseBackendInfo(keys: Readonly<Record<string, string>>): VrdmaBackendInfo {
  const u = (k: VrdmaKey): number => parseStoreUint(keys[k], k);
  return {
    portId: u(VrdmaKey.PORT_ID),
    maxQp: u(VrdmaKey.MAX_QP),
    maxCq: u(VrdmaKey.MAX_CQ),
    maxMr: u(VrdmaKey.MAX_MR),
    maxPinnedPages: u(VrdmaKey.MAX_PINNED_PAGES),
    maxOutstandingWr: u(VrdmaKey.MAX_OUTSTANDING_WR),
    maxCqe: u(VrdmaKey.MAX_CQE),
    maxQpWr: u(VrdmaKey.MAX_QP_WR),
    featureCopy: keys[VrdmaKey.FEATURE_COPY] === '1',
  };
}

/** What a frontend publishes to connect. */
export interface VrdmaFrontendKeys {
  readonly ctrlRingRef: number;
  readonly dataRingOrder: number;
  readonly dataRingRefs: readonly number[];
  readonly eventChannel: number;
  readonly mode: VrdmaMode;
}

/** The frontend's setup keys. */
export function formatFrontendKeys(k: VrdmaFrontendKeys): Record<string, string> {
  const out: Record<string, string> = {
    [VrdmaKey.CTRL_RING_REF]: String(k.ctrlRingRef),
    [VrdmaKey.DATA_RING_PAGE_ORDER]: String(k.dataRingOrder),
    [VrdmaKey.EVENT_CHANNEL]: String(k.eventChannel),
    [VrdmaKey.MODE]: k.mode,
  };
  k.dataRingRefs.forEach((ref, i) => {
    out[`${VrdmaKey.DATA_RING_REF}${i}`] = String(ref);
  });
  return out;
}

/**
 * Reads a frontend's keys (hostile): the data ring order must be exactly `dataRingOrder` (the
 * backend sizes nothing from a guest number) and the mode one of the two names.
 */
export function parseFrontendKeys(keys: Readonly<Record<string, string>>, dataRingOrder: number): VrdmaFrontendKeys {
  const order = parseStoreUint(keys[VrdmaKey.DATA_RING_PAGE_ORDER], VrdmaKey.DATA_RING_PAGE_ORDER);
  if (order !== dataRingOrder) {
    throw pvError('PV_ERR_BAD_REQUEST', `${VrdmaKey.DATA_RING_PAGE_ORDER} must be ${dataRingOrder}, got ${order}`);
  }
  const dataRingRefs: number[] = [];
  for (let i = 0; i < 1 << order; i++) {
    const key = `${VrdmaKey.DATA_RING_REF}${i}`;
    dataRingRefs.push(parseStoreUint(keys[key], key));
  }
  const mode = keys[VrdmaKey.MODE];
  if (mode !== 'zero-copy' && mode !== 'copy') {
    throw pvError('PV_ERR_BAD_REQUEST', `${VrdmaKey.MODE} must be zero-copy or copy, got ${String(mode).slice(0, 32)}`);
  }
  return {
    ctrlRingRef: parseStoreUint(keys[VrdmaKey.CTRL_RING_REF], VrdmaKey.CTRL_RING_REF),
    dataRingOrder: order,
    dataRingRefs,
    eventChannel: parseStoreUint(keys[VrdmaKey.EVENT_CHANNEL], VrdmaKey.EVENT_CHANNEL),
    mode,
  };
}
