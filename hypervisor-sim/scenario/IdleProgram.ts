/**
 * dom0's program when no guest needs a backend: it does nothing until the toolstack asks it to
 * shut down, so a scenario always has a driver domain with the usual lifecycle.
 */

import type { DomainEnv } from '../../protocol/Program.js';
import { waitForShutdown } from '../../protocol/xenbus/control.js';

export default async function main(env: DomainEnv): Promise<{ idle: true }> {
  await waitForShutdown(env.hypercalls.store, env.hypercalls.domid);
  return { idle: true };
}
