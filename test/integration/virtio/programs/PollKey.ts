/** Test helper for domain programs: waits for a store key to exist (polling, bounded). */

import { pvError } from '../../../../protocol/errors.js';
import type { StoreOps } from '../../../../protocol/Hypercalls.js';

/** The value of `path` once it exists; `PV_ERR_TIMEOUT` after `timeoutMs`. */
export async function pollKey(store: StoreOps, path: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await store.tryRead(path);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw pvError('PV_ERR_TIMEOUT', `${path} did not appear in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
