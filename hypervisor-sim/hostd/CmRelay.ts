/**
 * perftest's out-of-band exchange between guests on two host processes. Inside one host, two
 * guests trade connection records through the store (frontend/verbs/Connect.ts: each leaves its
 * record in the other's inbox `/local/domain/<peer>/rdma-cm/from-<me>/<name>`). Across hosts
 * the stores are separate, so each host shows its guest a PROXY domain id for the remote peer,
 * and this relay carries records between the two stores over the host link — the toolstack
 * doing for a remote peer what the shared store does for a local one:
 *
 * ```
 *  host A store                                  host B store
 *  guest a writes /local/domain/Pb/rdma-cm/from-a/<n>          (Pb = proxy of b on A)
 *      relay(A) watches, forwards `cm-record` ──────► relay(B) writes
 *                                                  /local/domain/b/rdma-cm/from-Pa/<n>
 *                                                  (Pa = proxy of a on B) — b's watch fires
 * ```
 * The proxy's inbox is created with the peer's permissions (the local guest may read and write
 * it, as it could a real peer's), and records are forwarded once, then removed. Records that
 * arrive before this host's cell has started are kept until it does.
 */

import { pvError } from '../../protocol/errors.js';
import type { StoreOps, Unwatch } from '../../protocol/Hypercalls.js';
import type { CmRecordMsg } from '../../protocol/link/LinkSchema.js';
import { domId } from '../../protocol/Types.js';

/** Domain ids 0x7000 + hostId stand for the guests of remote hosts. */
export const PROXY_DOMID_BASE = 0x7000;

/** The proxy id by which hosts show a guest of host `hostId`. */
export function proxyDomid(hostId: number): number {
  return PROXY_DOMID_BASE + hostId;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** Largest record forwarded (a perftest record is ~100 bytes). */
const MAX_RECORD = 4096;

/** One cell's relay: `local` guest ⇄ `remote` guest (domid there) on host `remoteHostId`. */
export interface RelayEnds {
  readonly localDomid: number;
  readonly remoteHostId: number;
  readonly remoteDomid: number;
  /** This host's id (its guests appear as proxyDomid(myHostId) on the remote host). */
  readonly myHostId: number;
}

export class CmRelay {
  private _unwatch: Unwatch | undefined;
  private readonly _sent = new Set<string>();
  private _closed = false;

  private constructor(
    private readonly _store: StoreOps,
    private readonly _ends: RelayEnds,
    private readonly _send: (msg: CmRecordMsg) => Promise<void>,
  ) {}

  /** Creates the proxy's inbox for the local guest and starts forwarding what it writes there. */
  static async start(store: StoreOps, ends: RelayEnds, send: (msg: CmRecordMsg) => Promise<void>): Promise<CmRelay> {
    const r = new CmRelay(store, ends, send);
    const proxy = proxyDomid(ends.remoteHostId);
    const inbox = `/local/domain/${proxy}/rdma-cm/from-${ends.localDomid}`;
    await store.mkdir(`/local/domain/${proxy}/rdma-cm`);
    await store.mkdir(inbox);
    await store.setPerms(inbox, [
      { domid: domId(proxy), read: false, write: false },
      { domid: domId(ends.localDomid), read: true, write: true },
    ]);
    r._unwatch = await store.watch(inbox, () => {
      r._scan(inbox).catch((err) => console.error(`pvio host: cm relay: ${(err as Error).message}`));
    });
    return r;
  }

  /** Writes a record that came over the link into the local guest's inbox. */
  static async deliver(store: StoreOps, msg: CmRecordMsg): Promise<void> {
    if (!NAME.test(msg.name)) throw pvError('PV_ERR_BAD_REQUEST', `cm-record name ${JSON.stringify(msg.name)}`);
    if (msg.record.length > MAX_RECORD) throw pvError('PV_ERR_BAD_LENGTH', 'cm-record longer than 4 KiB');
    if (msg.fromDomid < PROXY_DOMID_BASE) throw pvError('PV_ERR_BAD_REQUEST', 'cm-record from a non-proxy domain');
    const inbox = `/local/domain/${msg.toDomid}/rdma-cm/from-${msg.fromDomid}`;
    if ((await store.tryRead(inbox)) === undefined) {
      await store.mkdir(`/local/domain/${msg.toDomid}/rdma-cm`);
      await store.mkdir(inbox);
      await store.setPerms(inbox, [
        { domid: domId(msg.toDomid), read: false, write: false },
        { domid: domId(msg.fromDomid), read: true, write: true },
      ]);
    }
    await store.write(`${inbox}/${msg.name}`, msg.record);
  }

  async close(): Promise<void> {
    this._closed = true;
    await this._unwatch?.().catch(() => undefined);
  }

  private async _scan(inbox: string): Promise<void> {
    if (this._closed) return;
    const names = await this._store.directory(inbox).catch(() => [] as string[]);
    for (const name of names) {
      const key = `${inbox}/${name}`;
      if (this._sent.has(key) || !NAME.test(name)) continue;
      const record = await this._store.tryRead(key);
      if (record === undefined || record.length > MAX_RECORD) continue;
      this._sent.add(key);
      const e = this._ends;
      await this._send({ toDomid: e.remoteDomid, fromDomid: proxyDomid(e.myHostId), name, record });
      await this._store.rm(key).catch(() => undefined);
    }
  }
}
