/**
 * Decodes the Identify Controller and Identify Namespace data structures (NVMe 1.4 §5.15.2)
 * into the driver's `NvmeIdentity`. The data comes from the device: every field is checked
 * before the driver sizes anything by it.
 */

import { pvError } from '../../protocol/errors.js';
import { IdCtrl, IdNs, LBAF_LBADS_SHIFT } from '../../protocol/nvme/NvmeCommand.js';
import { PAGE_SIZE } from '../../protocol/Types.js';
import type { NvmeIdentity } from './Types.js';

function text(b: Uint8Array, at: number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(b[at + i]);
  return s.trim();
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

function u64(b: Uint8Array, at: number): number {
  return u32(b, at + 4) * 0x1_0000_0000 + u32(b, at);
}

/**
 * Builds the identity. `wantMax` is the driver's own cap on a transfer (rounded down to pages,
 * then capped by MDTS, where 0 means "no limit"). PV_ERR_NOT_SUPPORTED for an LBA size outside
 * 512 B … 4 KiB or an empty namespace.
 */
export function parseIdentity(
  ctrl: Uint8Array,
  ns: Uint8Array,
  version: number,
  wantMax: number,
  ioQueues: number,
  queueEntries: number,
): NvmeIdentity {
  const flbas = ns[IdNs.FLBAS] & 0xf;
  const lbads = (u32(ns, IdNs.LBAF0 + 4 * flbas) >>> LBAF_LBADS_SHIFT) & 0xff;
  if (lbads < 9 || lbads > 12) throw pvError('PV_ERR_NOT_SUPPORTED', `NVMe LBA size 2^${lbads} is not supported`);
  const capacityBlocks = u64(ns, IdNs.NSZE);
  if (capacityBlocks <= 0 || !Number.isSafeInteger(capacityBlocks)) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `NVMe namespace size ${capacityBlocks} is not usable`);
  }
  const mdts = ctrl[IdCtrl.MDTS];
  let max = Math.max(PAGE_SIZE, Math.floor(wantMax / PAGE_SIZE) * PAGE_SIZE);
  if (mdts !== 0) max = Math.min(max, PAGE_SIZE * 2 ** mdts);
  // NLB is a 16-bit field: one command moves at most 65 536 blocks.
  max = Math.min(max, 0x10000 * 2 ** lbads);
  return {
    model: text(ctrl, IdCtrl.MN, IdCtrl.MN_LEN),
    serial: text(ctrl, IdCtrl.SN, IdCtrl.SN_LEN),
    firmware: text(ctrl, IdCtrl.FR, IdCtrl.FR_LEN),
    version,
    lbaBytes: 2 ** lbads,
    capacityBlocks,
    maxTransferBytes: max,
    ioQueues,
    queueEntries,
    volatileWriteCache: (ctrl[IdCtrl.VWC] & 1) !== 0,
  };
}
