/**
 * Out-of-band connection setup, as perftest does it over a TCP socket before any verbs traffic
 * (reference §1): each side publishes its QP number, PSN, rkey, buffer address and port id (LID),
 * reads the peer's, and walks its QP RESET → INIT → RTR → RTS. pvio exchanges through the store:
 * each side leaves its record in the other's inbox (see `exchangeConnInfo`), readable by that
 * peer only.
 *
 * The peer is untrusted: its record is parsed once, must carry exactly the keys we publish as
 * non-negative safe integers, and is returned as a fresh object.
 */

import { pvError } from '../../protocol/errors.js';
import { type StoreOps, type Unwatch, withTransaction } from '../../protocol/Hypercalls.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { QpAttrMask, QpState } from '../../protocol/rdma/Verbs.js';
import { domId } from '../../protocol/Types.js';
import type { Qp } from './Objects.js';
import { modifyQp } from './Verbs.js';

/** A connection record: named numbers (values are non-negative safe integers). */
export type ConnInfo = Readonly<Record<string, number>>;

/** What perftest exchanges (`pingpong_dest`): port id, QP number, PSN, rkey and buffer address. */
export type RdmaConnInfo = {
  readonly lid: number;
  readonly qpn: number;
  readonly psn: number;
  readonly rkey: number;
  readonly addr: number;
};

/** Options of `exchangeConnInfo`. */
export interface ExchangeOptions<T extends ConnInfo> {
  /** The domain we connect to. */
  readonly peerDomid: number;
  /** Connection name, the same on both sides (a store path component). */
  readonly name: string;
  /** Our record. */
  readonly info: T;
  /** Give up waiting for the peer's record (PV_ERR_TIMEOUT); default 30 s. */
  readonly timeoutMs?: number;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Store directory of a domain's connection records. */
export function connInfoDir(domid: number): string {
  return `/local/domain/${domid}/rdma-cm`;
}

function checkInfo(info: ConnInfo, whose: string): void {
  if (info === null || typeof info !== 'object')
    throw pvError('PV_ERR_BAD_REQUEST', `${whose} record is not an object`);
  for (const [k, v] of Object.entries(info)) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw pvError('PV_ERR_BAD_REQUEST', `${whose} record: ${k} = ${String(v)} is not a safe integer ≥ 0`);
    }
  }
}

/** Parses the peer's record against the keys of ours (PV_ERR_BAD_REQUEST when malformed). */
export function parsePeerInfo<T extends ConnInfo>(raw: string, template: T): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw pvError('PV_ERR_BAD_REQUEST', 'peer connection record is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw pvError('PV_ERR_BAD_REQUEST', 'peer connection record is not an object');
  }
  const rec = parsed as Record<string, unknown>;
  const keys = Object.keys(template);
  if (Object.keys(rec).length !== keys.length) {
    throw pvError('PV_ERR_BAD_REQUEST', `peer connection record must have exactly the keys ${keys.join(', ')}`);
  }
  const out: Record<string, number> = {};
  for (const k of keys) {
    if (!Object.hasOwn(rec, k)) throw pvError('PV_ERR_BAD_REQUEST', `peer connection record lacks ${k}`);
    out[k] = rec[k] as number;
  }
  checkInfo(out, 'peer');
  return out as T;
}

/** The directory where `from` leaves records for `owner` (owned by `owner`, writable by `from`). */
export function inboxDir(owner: number, from: number): string {
  return `${connInfoDir(owner)}/from-${from}`;
}

/**
 * Trades records with `peerDomid` through the store, like perftest's socket exchange. Each side
 * keeps an inbox for the other in its OWN subtree (`/local/domain/<me>/rdma-cm/from-<peer>`,
 * writable by the peer) and leaves its record in the PEER's inbox, readable (and removable) by
 * the peer only. The record we read therefore lives in our subtree: it survives the peer's exit —
 * the last exchange before a program returns cannot be lost when the toolstack removes the
 * finished domain's subtree. Waiting is by store watch, bounded by `timeoutMs`. Names are
 * one-shot: use a fresh name per exchange.
 */
export async function exchangeConnInfo<T extends ConnInfo>(env: DomainEnv, opts: ExchangeOptions<T>): Promise<T> {
  const store = env.hypercalls.store;
  const me = env.domid;
  const peer = domId(opts.peerDomid);
  if (typeof opts.name !== 'string' || !NAME.test(opts.name)) {
    throw pvError('PV_ERR_INVALID_ARG', `connection name ${String(opts.name)} must match ${NAME}`);
  }
  checkInfo(opts.info, 'our');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const inbox = inboxDir(me, peer);
  const outbox = inboxDir(peer, me);
  await withTransaction(store, async (tx) => {
    if ((await store.tryRead(inbox, tx)) !== undefined) return;
    await store.mkdir(connInfoDir(me), tx);
    await store.mkdir(inbox, tx);
    await store.setPerms(
      inbox,
      [
        { domid: me, read: false, write: false },
        { domid: peer, read: true, write: true },
      ],
      tx,
    );
  });
  const incoming = watchValue(store, `${inbox}/${opts.name}`, timeoutMs).then((raw) => {
    const rec = parsePeerInfo(raw, opts.info);
    // Read once: the record has done its job (and counts against the peer's store quota).
    store.rm(`${inbox}/${opts.name}`).catch(() => {});
    return rec;
  });
  const outgoing = watchValue(store, outbox, timeoutMs).then(() =>
    withTransaction(store, async (tx) => {
      const path = `${outbox}/${opts.name}`;
      await store.write(path, JSON.stringify(opts.info), tx);
      // A new node copies its parent's permissions with us as owner: name the peer explicitly.
      await store.setPerms(
        path,
        [
          { domid: me, read: false, write: false },
          { domid: peer, read: true, write: true },
        ],
        tx,
      );
    }),
  );
  // Both must finish: the peer needs our record as much as we need theirs.
  outgoing.catch(() => {});
  const [rec] = await Promise.all([incoming, outgoing]);
  return rec;
}

/** Resolves with the value of `path` once it exists and we may read it (store watch, bounded). */
function watchValue(store: StoreOps, path: string, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let done = false;
    let unwatch: Unwatch | undefined;
    const finish = (err: unknown, value?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (unwatch) void unwatch().catch(() => {});
      if (err !== undefined) reject(err);
      else resolve(value as string);
    };
    const timer = setTimeout(
      () => finish(pvError('PV_ERR_TIMEOUT', `nothing at ${path} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const check = async (): Promise<void> => {
      let raw: string | undefined;
      try {
        raw = await store.tryRead(path);
      } catch (err) {
        // Created but not yet readable by us (permissions set a step later): wait for the next event.
        if ((err as { code?: unknown }).code === 'PV_ERR_STORE_PERM') return;
        finish(err);
        return;
      }
      if (raw !== undefined) finish(undefined, raw);
    };
    store
      .watch(path, () => void check())
      .then(
        (u) => {
          if (done) void u().catch(() => {});
          else unwatch = u;
        },
        (err) => finish(err),
      );
  });
}

/** The peer side of an RC connection, as exchanged. */
export interface RcRemote {
  readonly destQpNum: number;
  /** The peer's port id. */
  readonly dlid: number;
  /** The peer's first PSN (our rqPsn); default 0. */
  readonly psn?: number;
}

/** Overrides of perftest's defaults for `connectRcQp`. */
export interface ConnectOptions {
  /** Our first PSN (sqPsn); default 0. */
  readonly psn?: number;
  /** `ibv_mtu` enum; default 5 (4096). */
  readonly pathMtu?: number;
  /** Outstanding RDMA READs each way; default 16. */
  readonly maxRdAtomic?: number;
  readonly timeout?: number;
  readonly retryCnt?: number;
  readonly rnrRetry?: number;
  readonly minRnrTimer?: number;
}

/**
 * Walks an RC QP RESET → INIT → RTR → RTS toward `remote` with perftest's defaults (mtu 4096,
 * rnr_retry 7, retry 7, timeout 14, min_rnr_timer 12, psn 0). A QP not in RESET is reset first.
 */
export function connectRcQp(qp: Qp, remote: RcRemote, access: number, opts: ConnectOptions = {}): void {
  if (qp.state !== QpState.RESET) modifyQp(qp, { qpState: QpState.RESET }, QpAttrMask.STATE);
  modifyQp(
    qp,
    { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: access },
    QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
  );
  const rd = opts.maxRdAtomic ?? 16;
  modifyQp(
    qp,
    {
      qpState: QpState.RTR,
      pathMtu: opts.pathMtu ?? 5,
      destQpNum: remote.destQpNum,
      rqPsn: remote.psn ?? 0,
      maxDestRdAtomic: rd,
      minRnrTimer: opts.minRnrTimer ?? 12,
      ahAttr: { dlid: remote.dlid },
    },
    QpAttrMask.STATE |
      QpAttrMask.AV |
      QpAttrMask.PATH_MTU |
      QpAttrMask.DEST_QPN |
      QpAttrMask.RQ_PSN |
      QpAttrMask.MAX_DEST_RD_ATOMIC |
      QpAttrMask.MIN_RNR_TIMER,
  );
  modifyQp(
    qp,
    {
      qpState: QpState.RTS,
      sqPsn: opts.psn ?? 0,
      timeout: opts.timeout ?? 14,
      retryCnt: opts.retryCnt ?? 7,
      rnrRetry: opts.rnrRetry ?? 7,
      maxRdAtomic: rd,
    },
    QpAttrMask.STATE |
      QpAttrMask.SQ_PSN |
      QpAttrMask.TIMEOUT |
      QpAttrMask.RETRY_CNT |
      QpAttrMask.RNR_RETRY |
      QpAttrMask.MAX_QP_RD_ATOMIC,
  );
}
