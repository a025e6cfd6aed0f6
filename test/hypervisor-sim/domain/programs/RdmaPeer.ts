/**
 * Test program: one side of an RC connection over the NIC this domain owns, driven by the real
 * native driver (drivers/rdma-nic) through the PciFunction the host gave it. Both sides create a
 * PD, an MR over `args.bytes` of their own memory, a CQ and a QP, publish {qpn, port, addr,
 * rkey} in the store, read the peer's, and bring their QP to RTS. Then:
 *  - role 'initiator' waits for the target's `rts`, fills its buffer with a pattern, posts one
 *    signaled RDMA WRITE into the peer's MR, polls its CQ for the completion and sets `done`
 *    in the TARGET's directory (its own entries vanish when it returns);
 *  - role 'target' waits for `done` and reports what its buffer holds.
 */

import { RdmaNicDriver } from '../../../../drivers/rdma-nic/RdmaNicDriver.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Access, emptyWc, QpAttrMask, QpState, SendFlags, WrOpcode } from '../../../../protocol/rdma/Verbs.js';

/** Byte `i` of the pattern the initiator writes. */
export function patternByte(i: number): number {
  return (i * 7 + 3) & 0xff;
}

interface Endpoint {
  qpn: number;
  port: number;
  addr: number;
  rkey: number;
}

async function until<T>(read: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 10_000; i++) {
    const v = await read();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const hc = env.hypercalls;
  const role = env.args.role as 'initiator' | 'target';
  const peer = env.args.peer as number;
  const bytes = env.args.bytes as number;
  const att = env.devices.find((d) => d.pci !== undefined);
  if (att?.pci === undefined) throw new Error('no owned device');
  const drv = new RdmaNicDriver(att.pci, hc.memory);
  const pd = drv.allocPd();
  const buf = drv.allocBuffer(bytes);
  const mr = drv.regMr(pd, buf.addr, bytes, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
  const cq = drv.createCq(16);
  const cap = { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
  const qp = drv.createQp({ pd, sendCq: cq.cqn, recvCq: cq.cqn, cap, sqSigAll: false });

  const dir = `/local/domain/${env.domid}/data`;
  await hc.store.mkdir(dir);
  await hc.store.setPerms(dir, [
    { domid: env.domid, read: true, write: true },
    { domid: peer as never, read: true, write: false },
  ]);
  if (role === 'target') {
    // The initiator reports into OUR tree: its own entries vanish as soon as it returns.
    await hc.store.write(`${dir}/done`, '0');
    await hc.store.setPerms(`${dir}/done`, [
      { domid: env.domid, read: true, write: true },
      { domid: peer as never, read: true, write: true },
    ]);
  }
  const me: Endpoint = { qpn: qp.qpn, port: drv.portId, addr: buf.addr, rkey: mr.rkey };
  await hc.store.write(`${dir}/endpoint`, JSON.stringify(me));
  const remote = JSON.parse(
    await until(() => hc.store.tryRead(`/local/domain/${peer}/data/endpoint`), 'the peer endpoint'),
  ) as Endpoint;

  drv.modifyQp(
    qp.qpn,
    { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: Access.REMOTE_WRITE },
    QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
  );
  drv.modifyQp(
    qp.qpn,
    {
      qpState: QpState.RTR,
      ahAttr: { dlid: remote.port },
      pathMtu: 5,
      destQpNum: remote.qpn,
      rqPsn: 0,
      maxDestRdAtomic: 1,
      minRnrTimer: 1,
    },
    QpAttrMask.STATE |
      QpAttrMask.AV |
      QpAttrMask.PATH_MTU |
      QpAttrMask.DEST_QPN |
      QpAttrMask.RQ_PSN |
      QpAttrMask.MAX_DEST_RD_ATOMIC |
      QpAttrMask.MIN_RNR_TIMER,
  );
  drv.modifyQp(
    qp.qpn,
    { qpState: QpState.RTS, sqPsn: 0, maxRdAtomic: 1, retryCnt: 7, rnrRetry: 7, timeout: 14 },
    QpAttrMask.STATE |
      QpAttrMask.SQ_PSN |
      QpAttrMask.MAX_QP_RD_ATOMIC |
      QpAttrMask.RETRY_CNT |
      QpAttrMask.RNR_RETRY |
      QpAttrMask.TIMEOUT,
  );
  await hc.store.write(`${dir}/rts`, '1');

  const view = hc.memory.view(buf.addr, bytes);
  if (role === 'target') {
    await until(async () => ((await hc.store.read(`${dir}/done`)) === '1' ? true : undefined), 'the initiator');
    let mismatches = 0;
    for (let i = 0; i < bytes; i++) if (view[i] !== patternByte(i)) mismatches++;
    return { role, portId: drv.portId, mismatches, head: Array.from(view.subarray(0, 4)) };
  }
  await until(() => hc.store.tryRead(`/local/domain/${peer}/data/rts`), 'the target at RTS');
  for (let i = 0; i < bytes; i++) view[i] = patternByte(i);
  drv.postSend(qp.qpn, {
    wrId: 42,
    opcode: WrOpcode.RDMA_WRITE,
    sendFlags: SendFlags.SIGNALED,
    sgList: [{ addr: buf.addr, length: bytes, lkey: mr.lkey }],
    remoteAddr: remote.addr,
    rkey: remote.rkey,
  });
  drv.flush();
  const wc = [emptyWc()];
  try {
    await until(async () => (drv.pollCq(cq.cqn, 1, wc) === 1 ? true : undefined), 'the completion');
  } catch (err) {
    // Say where the WRITE stood, so a failure names the stage that stalled.
    (err as Error).message += `: QP ${JSON.stringify(drv.queryQp(qp.qpn))}, doorbells ${drv.doorbells}`;
    throw err;
  }
  await hc.store.write(`/local/domain/${peer}/data/done`, '1');
  return { role, portId: drv.portId, wrId: wc[0].wrId, status: wc[0].status, byteLen: wc[0].byteLen };
}
