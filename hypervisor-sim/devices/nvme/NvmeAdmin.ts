/**
 * Admin commands (NVMe 1.4 §5): create/delete I/O completion and submission queues, Identify
 * (controller, namespace, active namespace list) and Set/Get Features (Number of Queues).
 *
 * Queue rules checked here: queue ids 1 … min(maxIoQueues, allocated by Set Features), not in
 * use (Invalid Queue Identifier); sizes 2 … MQES + 1 (Invalid Queue Size); physically
 * contiguous only (PC = 1, else Invalid Field); base page aligned (PRP Offset Invalid) and
 * wholly reachable through the IOMMU (Data Transfer Error); an SQ names an existing I/O CQ
 * (Completion Queue Invalid); a CQ with SQs still posting to it is not deleted (Invalid Queue
 * Deletion). Deleting an SQ drops the commands it still held, as the spec's abort does.
 */

import {
  AdminOpcode,
  Cdw0,
  CQE_BYTES,
  FeatureId,
  IDENTIFY_BYTES,
  IdCtrl,
  IdentifyCns,
  IdNs,
  LBA_SHIFT,
  LBAF_LBADS_SHIFT,
  NVME_NSID,
  NvmeStatus,
  QueueCdw,
  SQE_BYTES,
  SqeWord,
} from '../../../protocol/nvme/NvmeCommand.js';
import {
  CC_ES_MASK,
  CcField,
  CQES_LOG2,
  NVME_PAGE_SIZE,
  NVME_VERSION,
  NvmeReg,
  SQES_LOG2,
} from '../../../protocol/nvme/NvmeRegs.js';
import type { NvmeCtx } from './NvmeContext.js';
import { CqCtx, joinAddr, NvmeDevWord, NvmeMetric, QUEUE_ENTRY_WORDS, queueBase, SqCtx } from './NvmeLayout.js';
import { forEachRun, walkPrp } from './Prp.js';

function ascii(out: Uint8Array, at: number, len: number, text: string): void {
  for (let i = 0; i < len; i++) out[at + i] = i < text.length ? text.charCodeAt(i) & 0x7f : 0x20;
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = (v >>> 16) & 0xff;
  out[at + 3] = (v >>> 24) & 0xff;
}

function putU64(out: Uint8Array, at: number, v: number): void {
  putU32(out, at, v % 0x1_0000_0000);
  putU32(out, at + 4, Math.floor(v / 0x1_0000_0000));
}

/** Builds the Identify data for `cns`; undefined for an unsupported CNS or namespace. */
function identifyData(ctx: NvmeCtx, cns: number, nsid: number): Uint8Array | number {
  const out = new Uint8Array(IDENTIFY_BYTES);
  const s = ctx.sizes;
  if (cns === IdentifyCns.CONTROLLER) {
    out[IdCtrl.VID] = 0x50; // 'P' 'V': a made-up vendor id, pvio is no real vendor
    out[IdCtrl.VID + 1] = 0x56;
    ascii(out, IdCtrl.SN, IdCtrl.SN_LEN, `PVIO-${s.name}`);
    ascii(out, IdCtrl.MN, IdCtrl.MN_LEN, 'pvio file-backed NVMe SSD');
    ascii(out, IdCtrl.FR, IdCtrl.FR_LEN, '1.0');
    out[IdCtrl.MDTS] = s.mdts;
    out[IdCtrl.CNTLID] = 1;
    putU32(out, IdCtrl.VER, NVME_VERSION);
    out[IdCtrl.SQES] = (SQES_LOG2 << 4) | SQES_LOG2;
    out[IdCtrl.CQES] = (CQES_LOG2 << 4) | CQES_LOG2;
    out[IdCtrl.MAXCMD] = s.maxQueueEntries & 0xff;
    out[IdCtrl.MAXCMD + 1] = (s.maxQueueEntries >>> 8) & 0xff;
    putU32(out, IdCtrl.NN, 1);
    out[IdCtrl.VWC] = 1;
    return out;
  }
  if (cns === IdentifyCns.NAMESPACE) {
    if (nsid !== NVME_NSID) return NvmeStatus.INVALID_NAMESPACE;
    putU64(out, IdNs.NSZE, ctx.capacityBlocks);
    putU64(out, IdNs.NCAP, ctx.capacityBlocks);
    putU64(out, IdNs.NUSE, ctx.capacityBlocks);
    out[IdNs.NLBAF] = 0;
    out[IdNs.FLBAS] = 0;
    putU32(out, IdNs.LBAF0, LBA_SHIFT << LBAF_LBADS_SHIFT);
    return out;
  }
  if (cns === IdentifyCns.ACTIVE_NS_LIST) {
    // NSIDs greater than the one given, ascending: only ours.
    if (nsid < NVME_NSID) putU32(out, 0, NVME_NSID);
    return out;
  }
  return NvmeStatus.INVALID_FIELD;
}

function identify(ctx: NvmeCtx): number {
  const c = ctx.sqe;
  const data = identifyData(ctx, c[SqeWord.CDW10] & 0xff, c[SqeWord.NSID] >>> 0);
  if (typeof data === 'number') return data;
  const st = walkPrp(
    ctx,
    c[SqeWord.PRP1_LO],
    c[SqeWord.PRP1_HI],
    c[SqeWord.PRP2_LO],
    c[SqeWord.PRP2_HI],
    IDENTIFY_BYTES,
  );
  if (st !== NvmeStatus.SUCCESS) return st;
  return forEachRun(ctx, true, (ref, len, at) => {
    ref.bytes.set(data.subarray(at, at + len), ref.offset);
    return NvmeStatus.SUCCESS;
  });
}

/** Queue id, size and base of a create command, or a status. */
function queueArgs(ctx: NvmeCtx, limitWord: number, entryBytes: number, es: number, write: boolean): number {
  const c = ctx.sqe;
  const qid = c[SqeWord.CDW10] & QueueCdw.QID_MASK;
  const size = (c[SqeWord.CDW10] >>> QueueCdw.HIGH_SHIFT) + 1;
  if (qid === 0 || qid > ctx.sizes.maxIoQueues || qid > ctx.dev[limitWord]) return -NvmeStatus.INVALID_QUEUE_ID;
  if (size < 2 || size > ctx.sizes.maxQueueEntries) return -NvmeStatus.INVALID_QUEUE_SIZE;
  if ((c[SqeWord.CDW11] & QueueCdw.PC) === 0) return -NvmeStatus.INVALID_FIELD;
  if (((ctx.reg(NvmeReg.CC) >>> es) & CC_ES_MASK) !== (entryBytes === SQE_BYTES ? SQES_LOG2 : CQES_LOG2)) {
    return -NvmeStatus.INVALID_FIELD;
  }
  const base = joinAddr(c[SqeWord.PRP1_LO], c[SqeWord.PRP1_HI]);
  if (base < 0) return -NvmeStatus.DATA_TRANSFER_ERROR;
  if (base % NVME_PAGE_SIZE !== 0) return -NvmeStatus.PRP_OFFSET_INVALID;
  if (!ctx.dma.resolve(base, size * entryBytes, write, ctx.qref)) {
    ctx.count(NvmeMetric.DMA_FAULTS);
    return -NvmeStatus.DATA_TRANSFER_ERROR;
  }
  return qid;
}

function createCq(ctx: NvmeCtx): number {
  const qid = queueArgs(ctx, NvmeDevWord.NCQA, CQE_BYTES, CcField.IOCQES_SHIFT, true);
  if (qid < 0) return -qid;
  const d = ctx.dev;
  const q = queueBase(qid);
  if (d[q + CqCtx.VALID] !== 0) return NvmeStatus.INVALID_QUEUE_ID;
  const c = ctx.sqe;
  d[q + CqCtx.SIZE] = (c[SqeWord.CDW10] >>> QueueCdw.HIGH_SHIFT) + 1;
  d[q + CqCtx.BASE_LO] = c[SqeWord.PRP1_LO];
  d[q + CqCtx.BASE_HI] = c[SqeWord.PRP1_HI];
  d[q + CqCtx.TAIL] = 0;
  d[q + CqCtx.HEAD] = 0;
  d[q + CqCtx.PHASE] = 1;
  d[q + CqCtx.SQ_USERS] = 0;
  d[q + CqCtx.VALID] = 1;
  return NvmeStatus.SUCCESS;
}

function createSq(ctx: NvmeCtx): number {
  const qid = queueArgs(ctx, NvmeDevWord.NSQA, SQE_BYTES, CcField.IOSQES_SHIFT, false);
  if (qid < 0) return -qid;
  const d = ctx.dev;
  const q = queueBase(qid);
  if (d[q + SqCtx.VALID] !== 0) return NvmeStatus.INVALID_QUEUE_ID;
  const c = ctx.sqe;
  const cqid = c[SqeWord.CDW11] >>> QueueCdw.HIGH_SHIFT;
  if (cqid === 0 || cqid > ctx.sizes.maxIoQueues || d[queueBase(cqid) + CqCtx.VALID] === 0) {
    return NvmeStatus.COMPLETION_QUEUE_INVALID;
  }
  d[q + SqCtx.SIZE] = (c[SqeWord.CDW10] >>> QueueCdw.HIGH_SHIFT) + 1;
  d[q + SqCtx.BASE_LO] = c[SqeWord.PRP1_LO];
  d[q + SqCtx.BASE_HI] = c[SqeWord.PRP1_HI];
  d[q + SqCtx.HEAD] = 0;
  d[q + SqCtx.TAIL] = 0;
  d[q + SqCtx.CQID] = cqid;
  d[q + SqCtx.VALID] = 1;
  d[queueBase(cqid) + CqCtx.SQ_USERS]++;
  return NvmeStatus.SUCCESS;
}

function deleteSq(ctx: NvmeCtx): number {
  const qid = ctx.sqe[SqeWord.CDW10] & QueueCdw.QID_MASK;
  const d = ctx.dev;
  if (qid === 0 || qid > ctx.sizes.maxIoQueues || d[queueBase(qid) + SqCtx.VALID] === 0) {
    return NvmeStatus.INVALID_QUEUE_ID;
  }
  const q = queueBase(qid);
  d[queueBase(d[q + SqCtx.CQID]) + CqCtx.SQ_USERS]--;
  d.fill(0, q, q + SqCtx.WORDS);
  return NvmeStatus.SUCCESS;
}

function deleteCq(ctx: NvmeCtx): number {
  const qid = ctx.sqe[SqeWord.CDW10] & QueueCdw.QID_MASK;
  const d = ctx.dev;
  const q = queueBase(qid);
  if (qid === 0 || qid > ctx.sizes.maxIoQueues || d[q + CqCtx.VALID] === 0) return NvmeStatus.INVALID_QUEUE_ID;
  if (d[q + CqCtx.SQ_USERS] > 0) return NvmeStatus.INVALID_QUEUE_DELETION;
  d.fill(0, q + CqCtx.VALID, q + QUEUE_ENTRY_WORDS);
  return NvmeStatus.SUCCESS;
}

function features(ctx: NvmeCtx, set: boolean): number {
  const c = ctx.sqe;
  if ((c[SqeWord.CDW10] & 0xff) !== FeatureId.NUMBER_OF_QUEUES) return NvmeStatus.INVALID_FIELD;
  const d = ctx.dev;
  if (set) {
    const nsqr = (c[SqeWord.CDW11] & 0xffff) + 1;
    const ncqr = (c[SqeWord.CDW11] >>> 16) + 1;
    // 65535 (0-based) is reserved by the spec.
    if (nsqr > 0xffff || ncqr > 0xffff) return NvmeStatus.INVALID_FIELD;
    d[NvmeDevWord.NSQA] = Math.min(nsqr, ctx.sizes.maxIoQueues);
    d[NvmeDevWord.NCQA] = Math.min(ncqr, ctx.sizes.maxIoQueues);
  }
  ctx.dw0 = ((d[NvmeDevWord.NSQA] - 1) & 0xffff) | ((d[NvmeDevWord.NCQA] - 1) << 16);
  return NvmeStatus.SUCCESS;
}

/** Executes the admin command in `ctx.sqe`; returns its status (DW0 in ctx.dw0). */
export function executeAdmin(ctx: NvmeCtx): number {
  const cdw0 = ctx.sqe[SqeWord.CDW0];
  ctx.count(NvmeMetric.ADMIN_COMMANDS);
  if ((cdw0 & (Cdw0.FUSE_BITS | Cdw0.PSDT_BITS)) !== 0) {
    return NvmeStatus.INVALID_FIELD;
  }
  switch (cdw0 & Cdw0.OPC_MASK) {
    case AdminOpcode.CREATE_IO_CQ:
      return createCq(ctx);
    case AdminOpcode.CREATE_IO_SQ:
      return createSq(ctx);
    case AdminOpcode.DELETE_IO_SQ:
      return deleteSq(ctx);
    case AdminOpcode.DELETE_IO_CQ:
      return deleteCq(ctx);
    case AdminOpcode.IDENTIFY:
      return identify(ctx);
    case AdminOpcode.SET_FEATURES:
      return features(ctx, true);
    case AdminOpcode.GET_FEATURES:
      return features(ctx, false);
    default:
      return NvmeStatus.INVALID_OPCODE;
  }
}
