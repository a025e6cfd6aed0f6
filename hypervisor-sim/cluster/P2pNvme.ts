/**
 * Which borrowed devices may be the initiator of a P2P mapping (Cluster.mapP2p, P2pWindows.ts):
 * an accelerator (its DMA engine) or an NVMe SSD (its controller's data transfers) — issue 5's
 * "NVMe → accelerator without bouncing through host RAM, also across hosts through NTBs".
 *
 * An NVMe initiator needs nothing the accelerator path does not already have: its lease gets the
 * same permission table (NtbDmaResolver `peerAllow`, one Int32 per accelerator of the cluster)
 * and the same peer list, so a PRP entry that points at the address `mapP2p` returned routes
 * from the SSD on its lender, through the P2P windows of the NTB chain, to the target's BAR 1 and
 * resolves into its device memory. A READ then writes the media bytes straight into the
 * accelerator; the borrower's RAM only holds the queues (SQ, CQ, PRP lists):
 *
 * ```
 *  P2P:     nvme0@A ─► sw ─► ntb-C ═══ P2P window ═══► ntb-A ─► sw ─► accel0@C BAR 1
 *  bounce:  nvme0@A ═══ DMA window ═══► B RAM ◄═══ DMA window ═══ accel0@C (DMA engine reads)
 * ```
 * With a direct A–C link that is one NTB crossing per access instead of two; with both devices
 * on one lender it is none instead of two. The mapping is a lease-scoped grant: `unmapP2p`, or
 * either lease ending (forced or not), clears the permission and closes the windows, so the
 * controller's next transfer there faults and the command completes with Data Transfer Error.
 *
 * A NIC is not an initiator here: RDMA peers of a lent NIC are NICs of the borrower (see
 * Cluster.ts), and its DMA path never ends at a BAR.
 */

/** The lease kinds that may initiate P2P into an accelerator's BAR 1. */
export const P2P_INITIATOR_KINDS: readonly string[] = ['accel', 'nvme'];

/** True if a borrowed device of `kind` may be a P2P initiator (and so gets a permission table). */
export function p2pInitiatorKind(kind: string): boolean {
  return P2P_INITIATOR_KINDS.includes(kind);
}
