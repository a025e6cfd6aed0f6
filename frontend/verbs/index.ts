/**
 * The verbs API in one import for guest programs and benchmarks:
 * `import * as ibv from '…/frontend/verbs/index.js'` gives `ibv.openDevice`, `ibv.postSend`, …
 * Enums and work-request shapes come from protocol/rdma/Verbs.ts (re-exported as types here;
 * `Access`, `WrOpcode`, … are const enums, inlined at compile time from that module).
 */

export type {
  AhAttr,
  QpAttr,
  QpCap,
  RecvWr,
  SendWr,
  Sge,
  Wc,
} from '../../protocol/rdma/Verbs.js';
export { emptyWc, wcStatusName, wcStatusStr } from '../../protocol/rdma/Verbs.js';
export type { ConnectOptions, ConnInfo, ExchangeOptions, RcRemote, RdmaConnInfo } from './Connect.js';
export { connectRcQp, connInfoDir, exchangeConnInfo, inboxDir } from './Connect.js';
export type { WaitCqOptions } from './CqPoll.js';
export { DEFAULT_SPIN_BUDGET, pollCq, waitCq } from './CqPoll.js';
export { Context, Cq, Mr, Pd, Qp } from './Objects.js';
export type { VerbsProvider } from './Provider.js';
export type { QpInitAttr } from './Verbs.js';
export {
  allocPd,
  closeDevice,
  createCq,
  createQp,
  deallocPd,
  deregMr,
  destroyCq,
  destroyQp,
  modifyQp,
  openDevice,
  postRecv,
  postSend,
  regMr,
} from './Verbs.js';
