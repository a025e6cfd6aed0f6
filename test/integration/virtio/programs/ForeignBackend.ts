/**
 * Test program (the privileged dom0 of ForeignMemory.test.ts): waits for the guest to publish a
 * GPA, reads the guest's pattern through a GuestMemoryMap built from `hc.foreign` (no grant),
 * answers by storing a word in the guest's page and notifying it, maps two guest ranges for its
 * NIC (read-only pattern, writable DMA target) and publishes their device addresses, then unmaps
 * them when the toolstack writes `data/unmap` and reports back.
 */

import { foreignMemoryMap } from '../../../../backend/virtio/ForeignMap.js';
import { newTranslation } from '../../../../backend/virtio/GuestMemoryMap.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { type DomId, domId, type GuestPhysAddr } from '../../../../protocol/Types.js';
import { DMA_LEN, DMA_OFFSET, PATTERN_LEN, PATTERN_OFFSET, REPLY } from './ForeignGuest.js';
import { pollKey } from './PollKey.js';

/** Device addresses dom0 publishes under `data/dma` (JSON). */
export interface ForeignDmaAddrs {
  readonly readOnly: number;
  readonly writable: number;
}

/** What dom0 returns. */
export interface ForeignBackendResult {
  readonly hasForeign: boolean;
  readonly pattern: number[];
  readonly refusals: Record<string, string>;
  readonly liveAfterUnmap: number;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return 'no error';
}

export default async function main(env: DomainEnv): Promise<ForeignBackendResult> {
  const hc = env.hypercalls;
  const foreign = hc.foreign;
  const guest: DomId = domId(env.args.guest as number);
  const gpa = Number(await pollKey(hc.store, `/local/domain/${guest}/data/gpa`, 30_000));
  const map = foreignMemoryMap(foreign, guest);
  const t = newTranslation();
  map.translate(gpa, PATTERN_LEN, false, t);
  const pattern = [...t.bytes.subarray(t.offset, t.offset + PATTERN_LEN)];
  // The reply goes to word 0 of the pattern's page (4-aligned: a page start).
  map.translate(gpa - PATTERN_OFFSET, 4, true, t);
  const words = new Int32Array(t.bytes.buffer);
  // INVARIANT: translate resolved a page-aligned GPA inside a region at a page-aligned offset.
  const index = t.offset >> 2;
  // ORDERING: seq-cst store publishes the reply before the notify wakes the guest's Atomics.wait.
  Atomics.store(words, index, REPLY);
  // ORDERING: after the store; wakes the guest sleeping on that word.
  Atomics.notify(words, index);

  const refusals: Record<string, string> = {};
  refusals.self = codeOf(() => foreign?.regions(hc.domid));
  refusals.unknown = codeOf(() => foreign?.regions(domId(29)));
  refusals.notOwned = codeOf(() => foreign?.mapForDevice(guest, gpa as GuestPhysAddr, 8, false, 'nic9'));
  const size = map.region(0).size;
  refusals.beyond = codeOf(() => foreign?.mapForDevice(guest, (size - 1) as GuestPhysAddr, 2, false, 'nic0'));

  if (foreign === undefined) throw new Error('dom0 has no foreign ops');
  const ro = foreign.mapForDevice(guest, gpa as GuestPhysAddr, PATTERN_LEN, false, 'nic0');
  const rw = foreign.mapForDevice(guest, (gpa + DMA_OFFSET) as GuestPhysAddr, DMA_LEN, true, 'nic0');
  const addrs: ForeignDmaAddrs = { readOnly: ro.deviceAddr, writable: rw.deviceAddr };
  const dir = `/local/domain/${hc.domid}/data`;
  await hc.store.write(`${dir}/dma`, JSON.stringify(addrs));
  await pollKey(hc.store, `${dir}/unmap`, 30_000);
  foreign.unmapForDevice(ro.handle);
  foreign.unmapForDevice(rw.handle);
  const liveAfterUnmap = foreign.liveDeviceMappings();
  await hc.store.write(`${dir}/unmapped`, '1');
  // Stay alive until told: the test checks the IOVAs fault while the NIC is still ours.
  await pollKey(hc.store, `${dir}/exit`, 30_000);
  return { hasForeign: true, pattern, refusals, liveAfterUnmap };
}
