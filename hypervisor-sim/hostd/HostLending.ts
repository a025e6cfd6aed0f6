/**
 * Device Lending between host processes: the etcd registry says who holds what; the host links
 * carry the NTB traffic (hypervisor-sim/ntb/: MMIO to the lent BAR, DMA through the window).
 *
 * Lender (`--lend nvme0`): registers `<host>/nvme0` under its etcd lease. A borrower's
 * `lend-open` is honoured only if the registry says that host holds that lease generation now
 * (etcd decided the borrow, atomically); the controller then runs in a service thread here
 * (LentRemote) and every `mmio` for the lease goes to it. The lease ends — the controller is
 * reset for the next borrower — when the borrower returns it (`lend-close`), when the registry
 * says it was returned or revoked (a crashed borrower's etcd lease expired), or when the
 * borrower's link closes.
 *
 * Borrower: control op `borrow {device}` takes the lease in etcd (a transaction that fails if
 * anyone holds the device), asks the owner to open it, and makes it usable by a native program
 * of this host (the unchanged NvmeDriver over a RemoteBar, bench/cluster/BlkCheck.ts): its DMA
 * lands in this host's memory (IOMMU off: bus address = physical address). If the lender dies,
 * its link closes: the lease is revoked here, and every outstanding and new access fails with
 * PV_ERR_LEND_REVOKED instead of waiting.
 */

import { pvError } from '../../protocol/errors.js';
import type {
  DmaReqMsg,
  LendCloseMsg,
  LendOpenMsg,
  LendOpenRspMsg,
  MmioReqMsg,
} from '../../protocol/link/LinkSchema.js';
import { nvmeBarSize } from '../../protocol/nvme/NvmeRegs.js';
import { BufferDma } from '../devices/rnic/RemoteWire.js';
import { Host } from '../domain/Host.js';
import type { Lease } from '../lending/Types.js';
import type { LinkConn } from '../link/LinkConn.js';
import type { MailboxServer } from '../link/Mailbox.js';
import { BorrowedRemote } from '../ntb/BorrowedRemote.js';
import { LentRemote } from '../ntb/LentRemote.js';
import { createBarMailbox, serveBarMailbox } from '../ntb/RemoteBar.js';
import type { HostDaemon } from './HostDaemon.js';

/** Memory this host gives a borrowed device's native driver (queues and buffers). */
const BORROWER_MEMORY = 32 << 20;
const NVME_BDF = '0000:05:00.0';

/** A borrowed device, as a native program of this host uses it. */
export interface BorrowedDevice {
  readonly device: string;
  readonly lender: string;
  readonly lease: Lease;
  readonly barSize: number;
  readonly bdf: string;
  /** The program's memory (bus address = offset: IOMMU off). */
  readonly memory: SharedArrayBuffer;
  /** The BAR mailbox the program's RemoteBar calls through. */
  readonly barMailbox: SharedArrayBuffer;
  /** Set once the lease ended (returned, lender gone). */
  revoked: string | undefined;
}

export interface HostLendingOptions {
  readonly nvmeBytes: number;
  /** Register and lend nvme0. */
  readonly lend: boolean;
}

export interface HostLending {
  /** A device this host holds now (undefined if none). */
  borrowed(device: string): BorrowedDevice | undefined;
  /** Why the last lease of `device` held here ended (lender gone, returned), if it did. */
  ended(device: string): string | undefined;
  close(): Promise<void>;
}

export async function installLending(daemon: HostDaemon, o: HostLendingOptions): Promise<HostLending> {
  const machine = o.lend
    ? new Host({ name: daemon.name, nvmes: [{ name: 'nvme0', sizeBytes: o.nvmeBytes }] })
    : undefined;
  const deviceId = `${daemon.name}/nvme0`;
  const lent = new Map<string, { remote: LentRemote; conn: LinkConn }>();
  const borrowed = new Map<string, BorrowedDevice & { remote: BorrowedRemote; bar: MailboxServer; conn: LinkConn }>();

  const endLent = (lease: string, why: string) => {
    const l = lent.get(lease);
    if (l === undefined) return;
    lent.delete(lease);
    console.log(`pvio host ${daemon.name}: ${deviceId} lease ${lease} ends (${why}); controller reset`);
    void l.remote.close(why);
  };
  const ended = new Map<string, string>();
  const endBorrowed = (device: string, why: string) => {
    const b = borrowed.get(device);
    if (b === undefined) return;
    borrowed.delete(device);
    ended.set(device, why);
    b.revoked = why;
    b.remote.revoke(why);
    void b.bar.stop();
    console.log(`pvio host ${daemon.name}: borrowed ${device} is gone: ${why}`);
  };

  daemon.registry.watch((e) => {
    if ((e.type === 'returned' || e.type === 'revoked') && e.lease.id === deviceId) {
      endLent(String(e.lease.generation), `registry: lease ${e.type}`);
    }
    if ((e.type === 'returned' || e.type === 'revoked') && e.lease.holder === daemon.name) {
      const b = borrowed.get(e.lease.id);
      if (b !== undefined && b.lease.generation === e.lease.generation)
        endBorrowed(e.lease.id, `registry: lease ${e.type}`);
    }
  });

  // The registry is the truth: a lease it no longer shows (etcd lost its data, or an event was
  // missed across a reconnect) ends here too, on both sides, within a second.
  let reconciling = false;
  const reconcile = async () => {
    if (reconciling) return;
    reconciling = true;
    try {
      const entries = await daemon.registry.list();
      const held = new Map<string, number>();
      for (const e of entries) if (e.state.kind === 'exclusive') held.set(e.device.id, e.state.generation);
      for (const [device, b] of [...borrowed.entries()]) {
        if (held.get(device) !== b.lease.generation) endBorrowed(device, 'the registry no longer shows this lease');
      }
      for (const lease of [...lent.keys()]) {
        if (String(held.get(deviceId)) !== lease) endLent(lease, 'the registry no longer shows this lease');
      }
    } catch {
      // etcd unreachable: keep what we have until it answers again.
    } finally {
      reconciling = false;
    }
  };
  const reconcileTimer = setInterval(() => void reconcile(), 1000);
  reconcileTimer.unref();

  daemon.onLink((conn) => {
    conn.onRequest('lend-open', async (msg: LendOpenMsg) => {
      if (machine === undefined || msg.device !== deviceId) {
        throw pvError('PV_ERR_LEND_NOT_FOUND', `host ${daemon.name} does not lend ${msg.device}`);
      }
      if (conn.peer?.host !== msg.borrower)
        throw pvError('PV_ERR_LEND_NOT_HOLDER', 'a host opens leases for itself only');
      const held = (await daemon.registry.list({ holder: msg.borrower })).find((d) => d.device.id === deviceId);
      const gen = held?.state.kind === 'exclusive' ? String(held.state.generation) : undefined;
      if (gen !== msg.lease) {
        throw pvError(
          'PV_ERR_LEND_NOT_HOLDER',
          `the registry does not show ${msg.borrower} holding ${deviceId} lease ${msg.lease}`,
        );
      }
      for (const old of [...lent.keys()]) endLent(old, 'superseded by a newer lease');
      const remote = new LentRemote({
        state: machine.devices.nvmeData('nvme0').state,
        lease: msg.lease,
        borrower: msg.borrower,
        dma: async (req: DmaReqMsg, bulk?: Uint8Array) => ({ bulk: (await conn.request('dma', req, bulk)).bulk }),
      });
      await remote.start();
      lent.set(msg.lease, { remote, conn });
      void conn.closed.then(() => endLent(msg.lease, `borrower ${msg.borrower}'s link closed`));
      console.log(`pvio host ${daemon.name}: lent ${deviceId} to ${msg.borrower} (lease ${msg.lease})`);
      const st = machine.devices.nvmeData('nvme0').state;
      const rsp: LendOpenRspMsg = {
        kind: 'nvme',
        barSize: nvmeBarSize(st.sizes.maxIoQueues, st.sizes.dstrd),
        bdf: NVME_BDF,
      };
      return { body: rsp };
    });
    conn.onRequest('mmio', async (req: MmioReqMsg) => {
      const l = lent.get(req.lease);
      if (l === undefined || l.conn !== conn)
        throw pvError('PV_ERR_LEND_REVOKED', `lease ${req.lease} is not open here`);
      return { body: await l.remote.mmio(req) };
    });
    conn.onRequest('lend-close', async (msg: LendCloseMsg) => {
      if (lent.get(msg.lease)?.conn === conn) endLent(msg.lease, `returned by the borrower: ${msg.reason}`);
      return { body: {} };
    });
    conn.onRequest('dma', async (req: DmaReqMsg, bulk) => {
      for (const b of borrowed.values()) {
        if (String(b.lease.generation) === req.lease && b.conn === conn)
          return { body: {}, bulk: (await b.remote.dma(req, bulk)).bulk };
      }
      throw pvError('PV_ERR_LEND_REVOKED', `no borrowed device under lease ${req.lease}`);
    });
  });

  daemon.registerControl('borrow', async (args) => {
    const device = String(args.device);
    if (borrowed.has(device)) throw pvError('PV_ERR_LEND_BUSY', `${daemon.name} already holds ${device}`);
    const lease = await daemon.registry.borrow(device, daemon.name, { mode: 'exclusive' });
    const owner = device.split('/')[0];
    try {
      const conn = await daemon.linkTo(owner);
      const open: LendOpenMsg = { device, lease: String(lease.generation), borrower: daemon.name };
      const rsp = (await conn.request<LendOpenRspMsg>('lend-open', open)).body;
      const memory = new SharedArrayBuffer(BORROWER_MEMORY);
      const barMailbox = createBarMailbox();
      const leaseText = String(lease.generation);
      const b = {
        device,
        lender: owner,
        lease,
        barSize: rsp.barSize,
        bdf: rsp.bdf,
        memory,
        barMailbox,
        revoked: undefined,
        // IOMMU off on the borrower: a bus address is an offset in the borrower memory.
        remote: new BorrowedRemote({
          lease: leaseText,
          resolver: new BufferDma(new Uint8Array(memory), true),
          lender: owner,
        }),
        bar: serveBarMailbox(barMailbox, leaseText, async (req) => (await conn.request('mmio', req)).body),
        conn,
      };
      borrowed.set(device, b);
      ended.delete(device);
      void conn.closed.then((why) => endBorrowed(device, `lender ${owner}'s link closed (${why.reason})`));
      console.log(`pvio host ${daemon.name}: borrowed ${device} from ${owner} (lease ${leaseText})`);
      return { lease, bdf: rsp.bdf, barSize: rsp.barSize };
    } catch (err) {
      await daemon.registry.return(lease, { force: true }).catch(() => undefined);
      throw err;
    }
  });

  daemon.registerControl('return', async (args) => {
    const device = String(args.device);
    const b = borrowed.get(device);
    if (b === undefined) throw pvError('PV_ERR_LEND_NOT_HOLDER', `${daemon.name} does not hold ${device}`);
    endBorrowed(device, 'returned');
    await b.conn
      .request('lend-close', { lease: String(b.lease.generation), reason: 'returned' })
      .catch(() => undefined);
    await daemon.registry.return(b.lease, { force: true });
    return { returned: device };
  });

  daemon.registerControl('lending', async () => ({
    lends: machine ? deviceId : null,
    lent: [...lent.entries()].map(([lease, l]) => ({ lease, borrower: l.conn.peer?.host })),
    borrowed: [...borrowed.values()].map((b) => ({ device: b.device, lease: b.lease.generation, lender: b.lender })),
    registry: await daemon.registry.list(),
  }));

  if (machine !== undefined) {
    await daemon.registry.register({
      id: deviceId,
      owner: daemon.name,
      kind: 'nvme',
      bdf: NVME_BDF,
      shareable: false,
      queues: 1,
    });
  }
  return {
    borrowed: (device) => borrowed.get(device),
    ended: (device) => ended.get(device),
    async close() {
      clearInterval(reconcileTimer);
      for (const lease of [...lent.keys()]) endLent(lease, 'host stopping');
      for (const d of [...borrowed.keys()]) endBorrowed(d, 'host stopping');
      await machine?.shutdown();
    },
  };
}
