/**
 * The foundation's proof across threads: a guest domain grants pages, sets up a ring through the
 * xenbus handshake in the store, and streams requests with payload checksums to the "io"
 * backend in dom0, which maps the grants and answers. Indices start near 2^32 so they wrap.
 */

import assert from 'node:assert/strict';
import { Host } from '../../hypervisor-sim/domain/Host.js';

const BACKEND = new URL('../../backend/io/IoBackendProgram.js', import.meta.url);
const FRONTEND = new URL('../../frontend/io/IoFrontendProgram.js', import.meta.url);

interface StreamResult {
  completed: number;
  mismatches: number;
  firstMismatch: string[];
  startIndex: number;
  endIndex: number;
  wrapped: boolean;
  lostWakeups: number;
  leakedGrants: number;
  counters: { requests: number; notifies: number; suppressed: number };
}

describe('integration: guest ↔ dom0 over a granted ring, real Workers', function () {
  this.timeout(240_000);

  it('streams 1,000,000 requests: every response matches its request, indices wrap past 2^32', async () => {
    const host = new Host({ name: 'it-host' });
    try {
      const dom0 = host.createDomain({ name: 'dom0', program: BACKEND });
      const guest = host.createDomain({
        name: 'guest1',
        program: FRONTEND,
        args: { mode: 'stream', count: 1_000_000, startIndex: 2 ** 32 - 300_000, payload: 256 },
      });
      await host.addDevice({ type: 'io', devid: 0, frontDomid: guest.domid, backDomid: dom0.domid });
      const r = (await guest.result).value as StreamResult;
      assert.equal(r.completed, 1_000_000);
      assert.equal(r.mismatches, 0, r.firstMismatch.join('; '));
      assert.ok(r.startIndex > 2 ** 32 - 300_001 && r.wrapped, `indices must wrap (${r.startIndex} → ${r.endIndex})`);
      assert.equal(r.lostWakeups, 0, 'a sleep timed out with requests outstanding');
      assert.equal(r.leakedGrants, 0);
      assert.ok(r.counters.notifies < r.counters.requests, 'notification suppression must skip some notifies');
      const b = (await host.shutdownDomain(dom0.domid)).value as { connects: number; liveMappings: number };
      assert.equal(b.connects, 1);
      assert.equal(b.liveMappings, 0, 'the backend must unmap every grant on disconnect');
    } finally {
      await host.shutdown();
    }
  });
});
