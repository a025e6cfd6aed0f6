/**
 * Peer-to-peer between devices one host borrowed (P2pWindows.ts): the DMA engine of a borrowed
 * accelerator, or the controller of a borrowed NVMe SSD (P2pNvme.ts), reaches BAR 1 (device
 * memory) of a borrowed accelerator — through the lender's own switch, or through NTB windows
 * between two lenders — once the pair is allowed in the initiator's permission table. The
 * Cluster keeps the leases; this layer keeps the mappings and opens their windows.
 */

import { pvError } from '../../protocol/errors.js';
import type { PcieCluster } from '../pcie/PcieCluster.js';
import type { Active } from './ClusterTypes.js';
import { ntbNode } from './FabricPlan.js';
import { p2pInitiatorKind } from './P2pNvme.js';
import { mapP2pWindows, type OpenedWindow, type P2pMapping, type P2pRecord, unmapP2pWindows } from './P2pWindows.js';

/** Places and opens one window on `host`'s side of `ntb` (the Cluster's aperture placement); returns its base. */
export type OpenWindow = (
  host: string,
  ntb: string,
  node: string,
  size: number,
  peerBase: number,
  slots: Active['slots'],
) => number;

/** The live P2P mappings of a cluster. */
export class ClusterP2p {
  private readonly _records = new Set<P2pRecord>();

  constructor(
    private readonly _fabric: PcieCluster,
    /** Every accelerator's device memory, by `host/endpoint` (the order of permission tables). */
    private readonly _peers: readonly { readonly key: string }[],
    private readonly _open: OpenWindow,
  ) {}

  /**
   * Lets `a` reach BAR 1 of `t`, both held by the same borrower: opens the NTB windows on the
   * way and allows the pair. The mapping's `addr` is what the initiator's driver passes as the
   * host address of a DMA (`AccelDriver.dma`) or the data address of an NVMe command.
   */
  map(a: Active, t: Active): P2pMapping {
    if (!p2pInitiatorKind(a.kind) || t.kind !== 'accel' || a.peerAllow === undefined) {
      throw pvError(
        'PV_ERR_CONFIG',
        `P2P joins an accelerator or NVMe SSD to an accelerator, not a ${a.kind} to a ${t.kind}`,
      );
    }
    if (a === t) throw pvError('PV_ERR_CONFIG', `${a.name}: a device cannot be its own peer`);
    if (a.borrower !== t.borrower) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${a.borrower} holds ${a.name} but not ${t.name} (${t.borrower} does)`);
    }
    const ep = this._fabric.host(t.lender).node(t.device);
    // INVARIANT: planFabric gave every accelerator endpoint BAR 0 and BAR 1, enumerated.
    const bar1 = ep?.kind === 'endpoint' ? ep.bars[1] : { base: 0, size: 0 };
    const rec = mapP2pWindows(
      this._fabric,
      {
        initiator: { host: a.lender, node: a.device },
        target: { host: t.lender, node: t.device },
        initiatorId: a.name,
        targetId: t.name,
        barBase: bar1.base!,
        barBytes: bar1.size,
        allow: a.peerAllow,
        peerKeys: this._peers.map((p) => p.key),
      },
      (host, peer, size, peerBase, out) => this.openWindow(host, peer, size, peerBase, out),
    );
    this._records.add(rec);
    return rec.mapping;
  }

  /** Ends a mapping made by `map`; false if already gone. */
  unmap(mapping: P2pMapping): boolean {
    for (const r of this._records) {
      if (r.mapping !== mapping) continue;
      unmapP2pWindows(this._fabric, r);
      this._records.delete(r);
      return true;
    }
    return false;
  }

  /** Ends every mapping from or into borrow `name` (its lease ended), closing their windows. */
  dropLease(name: string): void {
    for (const r of this._records) {
      if (r.initiatorId !== name && r.targetId !== name) continue;
      unmapP2pWindows(this._fabric, r);
      this._records.delete(r);
    }
  }

  /** Opens a window on `host`'s NTB side towards `peer` (P2pWindows.OpenWindow; segments use it too). */
  openWindow(host: string, peer: string, size: number, peerBase: number, out: OpenedWindow[]): number {
    const port = this._fabric.ports(host).find((p) => p.peerHost === peer);
    if (port === undefined) throw pvError('PV_ERR_PCIE_UNROUTABLE', `no NTB links ${host} and ${peer}`);
    const slots: Active['slots'] = [];
    const base = this._open(host, port.ntb, ntbNode(peer), size, peerBase, slots);
    const s = slots[0];
    out.push({ host, slot: s.slot, free: () => s.space.free(s.p) });
    return base;
  }
}
