/**
 * Memory registration for a guest: RegMr and DeregMr, and the grant mappings behind them.
 *
 * RegMr carries the MR's page refs indirectly (PvConstants.ts): the backend maps the indirect
 * pages READ-ONLY (least privilege, as blkback maps indirect segments), copies the refs out
 * ONCE into a private array, and unmaps them before anything else happens — later decisions
 * never re-read guest memory. Then:
 *  - zero-copy mode (and, in copy mode, MRs a peer may access remotely): the pages are mapped
 *    ONCE for the NIC (`mapGrants(…, { device })`, which inserts IOMMU entries and returns the
 *    device address) and registered with the guest's address as `va` and that device address as
 *    `iova` (QEMU pvrdma's `ibv_reg_mr_iova`), so peers use the guest's addresses and rkey and
 *    data moves with zero copy;
 *  - copy mode, local-only MRs: nothing is mapped for the device; the refs are kept and every
 *    operation grant-copies through them. A probe map (mapped and unmapped at once) still proves
 *    at registration that the guest granted these pages to us with the access it claims.
 * Any grant failure — a ref that is foreign, revoked, read-only for a writable MR, or not
 * contiguous — is PV_ERR_RDMA_BAD_MEMORY: a guest cannot register memory it does not own.
 *
 * A `gpa` session (virtio-rdma) names the MR by its guest-physical range and sends no refs: the
 * range is mapped for the NIC through the privileged foreign map (`mapGuestRange`), which checks
 * it lies inside the guest's memory without adding the two numbers first; a range outside it is
 * PV_ERR_RDMA_BAD_MEMORY too. There is no consent page by page: what a guest may register is its
 * own memory, all of it, as with vhost.
 */

import { type PvError, pvError } from '../../protocol/errors.js';
import type { GrantMapping } from '../../protocol/Hypercalls.js';
import type { CtrlCommand, CtrlResult } from '../../protocol/rdma/pv/CtrlSchema.js';
import { indirectPagesFor, PV_MAX_MR_PAGES, pagesSpanned } from '../../protocol/rdma/pv/PvConstants.js';
import { ACCESS_MASK, Access } from '../../protocol/rdma/Verbs.js';
import { type GrantRef, type GuestPhysAddr, iova, PAGE_SIZE } from '../../protocol/Types.js';
import type { GuestSession, MrRec, PageMapping } from './GuestSession.js';

type RegMrCmd = Extract<CtrlCommand, { kind: 'regMr' }>;

/** Access bits that let a peer reach the MR (it must then be mapped for the NIC). */
const REMOTE_ACCESS = Access.REMOTE_READ | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC;
/** Access bits that need the pages writable. */
const WRITE_ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC;

/** Turns a grant failure the guest caused into the verbs error it means. */
function badMemory(err: unknown, what: string): PvError {
  const why = err instanceof Error ? err.message : String(err);
  return pvError('PV_ERR_RDMA_BAD_MEMORY', `${what}: ${why}`);
}

/** A grant mapping as the session keeps it. */
export function grantPages(s: GuestSession, m: GrantMapping): PageMapping {
  return { release: () => s.hc.grant.unmapGrant(m.handle) };
}

/**
 * Maps guest pages for the session's NIC; returns the mapping and the device address of its
 * first page. PV_ERR_RDMA_BAD_MEMORY if the guest's grants do not allow it.
 */
export function mapForDevice(
  s: GuestSession,
  refs: readonly GrantRef[],
  writable: boolean,
): { mapping: PageMapping; iova: number } {
  let mapping: GrantMapping;
  try {
    mapping = s.hc.grant.mapGrants(s.front, refs, writable, { device: s.nic.name });
  } catch (err) {
    throw badMemory(err, `cannot map ${refs.length} page(s) of dom${s.front} for ${s.nic.name}`);
  }
  if (mapping.deviceAddr === undefined) {
    s.hc.grant.unmapGrant(mapping.handle);
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `the grant map for ${s.nic.name} returned no device address`);
  }
  return { mapping: grantPages(s, mapping), iova: mapping.deviceAddr };
}

/**
 * A `gpa` session: maps `[gpa, gpa + len)` of the guest for the session's NIC through the foreign
 * map; returns the mapping and the device address of `gpa` itself (not of its page).
 * PV_ERR_RDMA_BAD_MEMORY for a range outside the guest's memory.
 */
export function mapGuestRange(
  s: GuestSession,
  gpa: number,
  len: number,
  writable: boolean,
): { mapping: PageMapping; iova: number } {
  const foreign = s.hc.foreign;
  if (foreign === undefined) throw pvError('PV_ERR_CONFIG', 'a gpa session needs the privileged foreign map');
  try {
    const m = foreign.mapForDevice(s.front, gpa as GuestPhysAddr, len, writable, s.nic.name);
    return { mapping: { release: () => foreign.unmapForDevice(m.handle) }, iova: m.deviceAddr };
  } catch (err) {
    throw badMemory(err, `cannot map [${gpa}, +${len}) of dom${s.front} for ${s.nic.name}`);
  }
}

/** Reads `npages` refs from the indirect pages (mapped read-only, copied once, unmapped). */
function readIndirect(s: GuestSession, indirectRefs: readonly number[], npages: number): Uint32Array {
  let m: GrantMapping;
  try {
    m = s.hc.grant.mapGrants(s.front, indirectRefs as readonly GrantRef[], false);
  } catch (err) {
    throw badMemory(err, 'cannot map the indirect ref pages');
  }
  try {
    // INVARIANT: npages ≤ indirectRefs.length · 1024, checked by the caller, so the view holds them.
    return new Uint32Array(m.view.buffer, m.view.byteOffset, npages).slice();
  } finally {
    s.hc.grant.unmapGrant(m.handle);
  }
}

/** RegMr; see the file comment. */
export function regMr(s: GuestSession, c: RegMrCmd): CtrlResult {
  const pd = s.pds.require(c.pd);
  const access = c.access;
  if ((access & ~ACCESS_MASK) !== 0) throw pvError('PV_ERR_RDMA_BAD_ACCESS', `access flags ${access} unknown`);
  if ((access & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) !== 0 && (access & Access.LOCAL_WRITE) === 0) {
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', 'REMOTE_WRITE and REMOTE_ATOMIC need LOCAL_WRITE (ibv_reg_mr.3)');
  }
  if (c.length === 0) throw pvError('PV_ERR_BAD_LENGTH', 'an MR needs at least one byte');
  // INVARIANT: addr is a safe integer or -1 (codec), length a u32: the sum below is exact.
  if (c.addr < 0 || !Number.isSafeInteger(c.addr + c.length)) {
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `MR address ${c.addr} is not valid`);
  }
  const npages = pagesSpanned(c.addr, c.length);
  if (npages > PV_MAX_MR_PAGES)
    throw pvError('PV_ERR_BAD_LENGTH', `MR spans ${npages} pages (at most ${PV_MAX_MR_PAGES})`);
  if (c.npages !== npages) throw pvError('PV_ERR_BAD_REQUEST', `MR spans ${npages} pages, request says ${c.npages}`);
  const byGpa = s.addressing === 'gpa';
  const wantIndirect = byGpa ? 0 : indirectPagesFor(npages);
  if (c.indirectRefs.length !== wantIndirect) {
    throw pvError(
      'PV_ERR_BAD_REQUEST',
      byGpa
        ? 'virtio-rdma registers an MR by its address: no refs'
        : `${npages} refs need ${wantIndirect} indirect page(s)`,
    );
  }
  if (s.pinnedPages + npages > s.limits.maxPinnedPages) {
    throw pvError('PV_ERR_LIMIT', `MR of ${npages} pages: the guest may pin ${s.limits.maxPinnedPages} pages`);
  }
  if (s.mrs.size >= s.mrs.capacity) throw pvError('PV_ERR_LIMIT', `a guest may hold at most ${s.mrs.capacity} MRs`);

  const refs = byGpa ? new Uint32Array(0) : readIndirect(s, c.indirectRefs, npages);
  const refList = Array.from(refs) as GrantRef[];
  const writable = (access & WRITE_ACCESS) !== 0;
  let mapping: PageMapping | undefined;
  let dev: MrRec['dev'];
  if (s.mode === 'zero-copy' || (access & REMOTE_ACCESS) !== 0) {
    // INVARIANT: a gpa session is zero-copy (VirtioRdmaBackend), so it always takes this branch.
    // The grant map's device address is its first page's; the foreign map's is the byte's.
    const m = byGpa ? mapGuestRange(s, c.addr, c.length, writable) : mapForDevice(s, refList, writable);
    const va = byGpa ? m.iova : m.iova + (c.addr % PAGE_SIZE);
    mapping = m.mapping;
    try {
      dev = s.driver.regMr(pd.pdn, c.addr, c.length, access, iova(va));
    } catch (err) {
      mapping.release();
      throw err;
    }
  } else {
    // Copy mode, local only: prove the grants now, copy through them later.
    let probe: GrantMapping;
    try {
      probe = s.hc.grant.mapGrants(s.front, refList, writable);
    } catch (err) {
      throw badMemory(err, `cannot map ${npages} page(s) of dom${s.front}`);
    }
    s.hc.grant.unmapGrant(probe.handle);
  }
  const lkey = s.mode === 'copy' ? s.newLocalKey() : (dev as NonNullable<typeof dev>).lkey;
  const rec: MrRec = {
    pd,
    addr: c.addr,
    length: c.length,
    access,
    npages,
    refs,
    mapping,
    dev,
    lkey,
    rkey: dev ? dev.rkey : 0,
  };
  // INVARIANT: capacity was checked above and nothing since added an MR (single thread).
  const handle = s.mrs.add(rec);
  if (s.mode === 'copy') s.mrByLkey.set(lkey, rec);
  pd.users++;
  s.pinnedPages += npages;
  return { kind: 'mr', mr: handle, lkey, rkey: rec.rkey };
}

/** DeregMr: DESTROY_MR on the NIC first, then the pages are unmapped. */
export function deregMr(s: GuestSession, handle: number): void {
  const mr = s.mrs.require(handle);
  if (mr.dev) s.driver.deregMr(mr.dev.lkey);
  mr.mapping?.release();
  s.mrs.delete(handle);
  s.mrByLkey.delete(mr.lkey);
  mr.pd.users--;
  s.pinnedPages -= mr.npages;
}
