/**
 * The blk target's checks can fail: a broken piece injected beside the real blkback — a device
 * that writes one sector past the page it was given, a device that fails writes, a response
 * corrupted after the backend wrote it, a grant mapping kept after its response — is reported
 * under its signature. A checker that never fires proves nothing.
 */

import assert from 'node:assert/strict';
import { batch } from '../../../fuzz/blk/BlkActions.js';
import { BlkTarget, type BlkTargetOptions } from '../../../fuzz/blk/BlkTarget.js';
import type { Violation } from '../../../fuzz/core/FuzzTarget.js';
import { caseSeed, XorShiftRng } from '../../../fuzz/core/Rng.js';
import type { BlockDevice } from '../../../protocol/blkif/BlockDevice.js';
import { pvError } from '../../../protocol/errors.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import type { GrantRef } from '../../../protocol/Types.js';

/** Runs up to `cases` batch cases (no mutator) on a fresh target, stopping once `until` was seen; returns every signature. */
async function signatures(
  opts: BlkTargetOptions,
  cases: number,
  tamper?: (t: BlkTarget) => void,
  until?: string,
): Promise<Map<string, Violation>> {
  const t = new BlkTarget({ mutator: false, ...opts });
  await t.setup(7);
  tamper?.(t);
  const seen = new Map<string, Violation>();
  try {
    for (let i = 0; i < cases; i++) {
      const s = caseSeed(7, i);
      const r = await t.runAction(new XorShiftRng(s), s, (a) => batch(a, false));
      for (const v of r.violations) if (!seen.has(v.signature)) seen.set(v.signature, v);
      if (until !== undefined && seen.has(until)) break;
    }
  } finally {
    for (const v of await t.teardown()) if (!seen.has(v.signature)) seen.set(v.signature, v);
  }
  return seen;
}

/** A device whose reads also write the 512 bytes after the caller's buffer (an off-by-one sector). */
function overrunning(d: BlockDevice): BlockDevice {
  return {
    sectors: d.sectors,
    sectorSize: d.sectorSize,
    readOnly: d.readOnly,
    read: (s, c, into) => {
      d.read(s, c, into);
      const end = into.byteOffset + into.byteLength;
      if (end + 512 <= into.buffer.byteLength) new Uint8Array(into.buffer, end, 512).fill(0xa5);
    },
    write: (s, c, from) => d.write(s, c, from),
    flush: () => d.flush(),
  };
}

describe('blk fuzz target: every check can fire', function () {
  this.timeout(60_000);

  it('a device writing past the granted page is caught by the read-only page and canary checks', async () => {
    const seen = await signatures(
      { wrapDevice: (d, who) => (who === 'adversary' ? overrunning(d) : d) },
      1000,
      undefined,
      'blk/mem:readonly-page-changed',
    );
    assert.ok(seen.has('blk/mem:readonly-page-changed'), [...seen.keys()].join(', '));
  });

  it('a device failing valid writes is caught as blk/status:refused-valid', async () => {
    let n = 0;
    const failing = (d: BlockDevice): BlockDevice => ({
      sectors: d.sectors,
      sectorSize: d.sectorSize,
      readOnly: d.readOnly,
      read: (s, c, b) => d.read(s, c, b),
      write: (s, c, b) => {
        if (++n % 3 === 0) throw pvError('PV_ERR_BLK_IO', 'injected media error');
        d.write(s, c, b);
      },
      flush: () => d.flush(),
    });
    const seen = await signatures(
      { wrapDevice: (d, who) => (who === 'adversary' ? failing(d) : d) },
      300,
      undefined,
      'blk/status:refused-valid',
    );
    assert.ok(seen.has('blk/status:refused-valid'), [...seen.keys()].join(', '));
  });

  it('an honest read that returns other bytes than were written is caught as blk/honest:wrong-data', async () => {
    const flipping = (d: BlockDevice): BlockDevice => ({
      sectors: d.sectors,
      sectorSize: d.sectorSize,
      readOnly: d.readOnly,
      read: (s, c, into) => {
        d.read(s, c, into);
        into[c * d.sectorSize - 1] ^= 0x01;
      },
      write: (s, c, b) => d.write(s, c, b),
      flush: () => d.flush(),
    });
    const seen = await signatures({ wrapDevice: (d, who) => (who === 'honest' ? flipping(d) : d) }, 5);
    assert.ok(seen.has('blk/honest:wrong-data'), [...seen.keys()].join(', '));
  });

  it('a device call for the adversary while none of its pages is mapped is caught (use after unmap)', async () => {
    const seen = await signatures({}, 3, (t) => {
      t.world.server.addPoller({
        // Between requests nothing but the ring is mapped: a device call now is a use after unmap.
        poll: () => {
          t.adversaryDisks[0].read(0, 1, new Uint8Array(512));
          return 0;
        },
        outstanding: () => false,
      });
    });
    assert.ok(seen.has('blk/grant:io-without-mapping'), [...seen.keys()].join(', '));
  });

  it('a response whose padding or status is changed after the backend wrote it is caught', async () => {
    const seen = await signatures({}, 60, (t) => {
      t.world.server.addPoller({
        // Runs at the end of every serving round, after the backend pushed its responses.
        poll: () => {
          const ring = t.adversaryRing;
          const prod = ring.rspProd();
          if (prod === ring.rspCons) return 0;
          const w = ring.slot(prod - 1);
          if (prod % 2 === 0) ring.words[w + 3] = 0x1234;
          else if (ring.words[w + 2] >> 16 === -1) ring.words[w + 2] = ring.words[w + 2] & 0xff; // ERROR → OKAY
          return 0;
        },
        outstanding: () => false,
      });
    });
    assert.ok(seen.has('blk/adv:dirty-padding'), [...seen.keys()].join(', '));
    assert.ok(seen.has('blk/status:accepted-invalid'), [...seen.keys()].join(', '));
  });

  it('a response produced twice is caught as blk/adv:double-response', async () => {
    let done = false;
    const seen = await signatures({}, 5, (t) => {
      t.world.server.addPoller({
        poll: () => {
          const ring = t.adversaryRing;
          // Once the batch is fully answered (a round may interleave rings and this poller).
          // ORDERING: seq-cst load of the guest-published producer.
          const all = ring.rspProd() === Atomics.load(ring.words, RingWord.REQ_PROD) >>> 0;
          if (done || !all || ring.rspProd() === ring.rspCons) return 0;
          done = true;
          // ORDERING: the injected fault publishes one response more than the backend made.
          Atomics.add(ring.words, RingWord.RSP_PROD, 1);
          return 0;
        },
        outstanding: () => false,
      });
    });
    assert.ok(seen.has('blk/adv:double-response'), [...seen.keys()].join(', '));
  });

  it('a data mapping kept after its response is caught per case and at teardown (XSA-331/396)', async () => {
    let kept = false;
    const seen = await signatures({}, 3, (t) => {
      t.world.server.addPoller({
        poll: () => {
          if (kept) return 0;
          kept = true;
          const ref = t.adversary.rwRefs[0] as GrantRef;
          t.world.dom0.hc.grant.mapGrants(t.adversary.dom.domid, [ref], true);
          return 0;
        },
        outstanding: () => false,
      });
    });
    for (const sig of [
      'blk/grant:data-mapping-held',
      'blk/teardown:mapping-leak',
      'blk/teardown:map-unbalanced',
      'blk/teardown:pins-left',
      'blk/teardown:grant-still-in-use',
    ]) {
      assert.ok(seen.has(sig), `${sig} missing from ${[...seen.keys()].join(', ')}`);
    }
  });
});
