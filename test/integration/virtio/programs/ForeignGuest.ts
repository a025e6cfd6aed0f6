/**
 * Test program (the guest of ForeignMemory.test.ts): writes a pattern into its own memory,
 * publishes where, then sleeps on a word of that page until the privileged backend writes it
 * through its foreign region; it stays alive (so the backend's device mappings stay valid) until
 * the toolstack writes `data/done`, then returns what it saw, including bytes a device DMA wrote.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';
import { pollKey } from './PollKey.js';

/** Where the pattern is: `PATTERN_OFFSET` into the second page the guest allocates. */
export const PATTERN_OFFSET = 100;
/** Pattern length in bytes. */
export const PATTERN_LEN = 64;
/** Byte `i` of the pattern. */
export function patternByte(i: number): number {
  return (i * 7 + 3) & 0xff;
}
/** The word value the backend stores in word 0 of the pattern's page. */
export const REPLY = 0x600d;
/** Offset, from the pattern, of the bytes a device writes (through a writable device mapping). */
export const DMA_OFFSET = PAGE_SIZE;
/** Bytes the device writes. */
export const DMA_LEN = 16;

/** What the guest returns. */
export interface ForeignGuestResult {
  readonly hasForeign: boolean;
  readonly reply: number;
  readonly dmaBytes: number[];
}

export default async function main(env: DomainEnv): Promise<ForeignGuestResult> {
  const hc = env.hypercalls;
  const base = hc.memory.allocPages(3) + PAGE_SIZE;
  const pattern = hc.memory.view((base + PATTERN_OFFSET) as GuestPhysAddr, PATTERN_LEN);
  for (let i = 0; i < PATTERN_LEN; i++) pattern[i] = patternByte(i);
  const page = hc.memory.view(base as GuestPhysAddr, PAGE_SIZE);
  const word = new Int32Array(page.buffer, page.byteOffset, 1);
  const dir = `/local/domain/${hc.domid}/data`;
  await hc.store.write(`${dir}/gpa`, String(base + PATTERN_OFFSET));
  // Sleep on the word like MWAIT: the backend's Atomics.notify on the same SharedArrayBuffer wakes us.
  const deadline = Date.now() + 30_000;
  // ORDERING: seq-cst load pairs with the backend's Atomics.store through its foreign view.
  while (Atomics.load(word, 0) === 0 && Date.now() < deadline) {
    // ORDERING: sleeps only while the word is still 0; the backend notifies after storing.
    Atomics.wait(word, 0, 0, 100);
  }
  // ORDERING: seq-cst load of the published reply.
  const reply = Atomics.load(word, 0);
  await pollKey(hc.store, `${dir}/done`, 30_000);
  const dma = hc.memory.view((base + PATTERN_OFFSET + DMA_OFFSET) as GuestPhysAddr, DMA_LEN);
  return { hasForeign: hc.foreign !== undefined, reply, dmaBytes: [...dma] };
}
