/**
 * Doorbell batching for every NIC the backend serves: posts of a serving round only write WQEs;
 * at the end of the round the receive-queue doorbells of every QP that got a receive are rung
 * FIRST — on every NIC — and only then the drivers' `flush` rings the send queues. Each driver
 * already orders RQ before SQ within one QP; ordering across QPs and NICs matters here because
 * the guests a backend serves are often each other's peers (perftest between two VMs): a SEND
 * rung before its peer's RECV of the same round would find no receive and fall into RNR retries,
 * and an inline device engine runs those inside our doorbell write, where the RECV cannot come.
 * Allocation-free: per NIC, a fixed list of QP numbers with a membership flag each.
 */

import type { RdmaNicDriver } from '../../drivers/rdma-nic/RdmaNicDriver.js';

/** Receive doorbells owed on one NIC. */
class RecvList {
  readonly qpns: Int32Array;
  readonly listed: Uint8Array;
  count = 0;

  constructor(readonly driver: RdmaNicDriver) {
    this.qpns = new Int32Array(driver.caps.maxQp);
    this.listed = new Uint8Array(driver.caps.maxQp);
  }
}

/** The backend's owed doorbells; see the file comment. */
export class Doorbells {
  private readonly _nics: RecvList[];

  constructor(drivers: readonly RdmaNicDriver[]) {
    this._nics = drivers.map((d) => new RecvList(d));
  }

  /** Notes that `qpn` of NIC number `nic` got a receive WQE this round. */
  markRecv(nic: number, qpn: number): void {
    const l = this._nics[nic];
    // INVARIANT: qpn came from that driver's createQp (1 … maxQp − 1).
    if (l.listed[qpn] !== 0) return;
    l.listed[qpn] = 1;
    l.qpns[l.count++] = qpn;
  }

  /** Rings every owed receive doorbell on every NIC, then every other doorbell the drivers owe. */
  flush(): void {
    const nics = this._nics;
    for (let k = 0; k < nics.length; k++) {
      const l = nics[k];
      const n = l.count;
      l.count = 0;
      for (let i = 0; i < n; i++) {
        const qpn = l.qpns[i];
        l.listed[qpn] = 0;
        try {
          l.driver.ringRq(qpn);
        } catch {
          // The QP was destroyed after its receive was posted: nothing to ring.
        }
      }
    }
    for (let k = 0; k < nics.length; k++) nics[k].driver.flush();
  }
}
