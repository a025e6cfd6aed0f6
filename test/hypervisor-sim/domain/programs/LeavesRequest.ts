/**
 * Test program: returns while a store request it never awaits is still outstanding. The domain
 * thread closes the store port after posting the result, so that request rejects after the
 * program is done — which must not turn the finished domain's result into a failure.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';

export default async function main(env: DomainEnv): Promise<string> {
  void env.hypercalls.store.write(`/local/domain/${env.domid}/late`, 'x');
  void env.hypercalls.store.read(`/local/domain/${env.domid}/never-written`);
  return 'done';
}
