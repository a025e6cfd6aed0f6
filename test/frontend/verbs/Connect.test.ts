/**
 * Out-of-band connection setup through the store (perftest's TCP exchange, done the pvio way):
 * each side's record is readable by its peer only; the peer's record is parsed once and must
 * carry exactly our keys as safe integers; waiting is bounded.
 */

import assert from 'node:assert/strict';
import { connectRcQp, exchangeConnInfo, inboxDir, type RdmaConnInfo } from '../../../frontend/verbs/Connect.js';
import { Context } from '../../../frontend/verbs/Objects.js';
import { allocPd, createCq, createQp } from '../../../frontend/verbs/Verbs.js';
import { LocalStoreClient } from '../../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../../hypervisor-sim/store/XenStore.js';
import { Access, QpAttrMask, QpState } from '../../../protocol/rdma/Verbs.js';
import { domId } from '../../../protocol/Types.js';
import { FakeProvider } from './helpers/FakeProvider.js';
import { fakeEnv } from './helpers/fakeEnv.js';

function world() {
  const xs = new XenStore();
  const clients: LocalStoreClient[] = [];
  const env = (id: number) => {
    xs.introduceDomain(domId(id));
    const store = new LocalStoreClient(xs, domId(id));
    clients.push(store);
    return fakeEnv(domId(id), { store, pages: 16 });
  };
  return {
    xs,
    env,
    close: () => {
      for (const c of clients) c.close();
    },
  };
}

const A: RdmaConnInfo = { lid: 1, qpn: 17, psn: 0, rkey: 0x1234, addr: 2 ** 40 };
const B: RdmaConnInfo = { lid: 2, qpn: 33, psn: 5, rkey: 0xffff_ffff, addr: 8192 };

describe('verbs: exchangeConnInfo through the store', () => {
  it('both sides get the other side’s record, whichever publishes first', async () => {
    const w = world();
    try {
      const a = w.env(1);
      const b = w.env(2);
      const pa = exchangeConnInfo(a, { peerDomid: 2, name: 'bw0', info: A, timeoutMs: 10_000 });
      await new Promise((r) => setTimeout(r, 5));
      const pb = exchangeConnInfo(b, { peerDomid: 1, name: 'bw0', info: B, timeoutMs: 10_000 });
      assert.deepEqual(await pa, B);
      assert.deepEqual(await pb, A);
    } finally {
      w.close();
    }
  });

  it('an inbox takes records from its peer only, and no third domain reads or writes it', async () => {
    const w = world();
    try {
      const a = w.env(1);
      const b = w.env(2);
      const c = w.env(3);
      const pb = exchangeConnInfo(b, { peerDomid: 1, name: 'x', info: B, timeoutMs: 10_000 });
      await exchangeConnInfo(a, { peerDomid: 2, name: 'x', info: A, timeoutMs: 10_000 });
      await pb;
      await assert.rejects(c.hypercalls.store.directory(inboxDir(1, 2)), { code: 'PV_ERR_STORE_PERM' });
      await assert.rejects(c.hypercalls.store.write(`${inboxDir(1, 2)}/y`, '{}'), { code: 'PV_ERR_STORE_PERM' });
      await assert.rejects(c.hypercalls.store.write(`${inboxDir(2, 1)}/y`, '{}'), { code: 'PV_ERR_STORE_PERM' });
      assert.deepEqual(await a.hypercalls.store.directory(inboxDir(1, 2)), [], 'a record is removed once read');
    } finally {
      w.close();
    }
  });

  it("the peer's record survives the peer's exit (its subtree removed before we read)", async () => {
    const w = world();
    try {
      const real = w.env(1);
      const b = w.env(2);
      // Hold back our reads of our own inbox until the peer is gone.
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const store = real.hypercalls.store;
      const gated = Object.create(store) as typeof store;
      gated.tryRead = async (path: string, tx?: number) => {
        if (path.startsWith(`${inboxDir(1, 2)}/`)) await gate;
        return store.tryRead(path, tx);
      };
      const a = { ...real, hypercalls: { ...real.hypercalls, store: gated } };
      const pa = exchangeConnInfo(a, { peerDomid: 2, name: 'last', info: A, timeoutMs: 10_000 });
      assert.deepEqual(await exchangeConnInfo(b, { peerDomid: 1, name: 'last', info: B, timeoutMs: 10_000 }), A);
      w.xs.removeDomain(domId(2)); // the peer's program returned and the toolstack cleaned up
      release();
      assert.deepEqual(await pa, B);
    } finally {
      w.close();
    }
  });

  it('a malformed peer record (missing key, not an integer, not JSON) → PV_ERR_BAD_REQUEST', async () => {
    for (const bad of ['{"lid":2,"qpn":33,"psn":5,"rkey":1}', '{"lid":2,"qpn":-1,"psn":5,"rkey":1,"addr":0}', 'nope']) {
      const w = world();
      try {
        const a = w.env(1);
        const b = w.env(2);
        const pa = exchangeConnInfo(a, { peerDomid: 2, name: 'bad', info: A, timeoutMs: 10_000 });
        // The peer writes garbage into our inbox once it exists.
        while ((await b.hypercalls.store.tryRead(inboxDir(1, 2)).catch(() => undefined)) === undefined) {
          await new Promise((r) => setTimeout(r, 1));
        }
        await b.hypercalls.store.write(`${inboxDir(1, 2)}/bad`, bad);
        await b.hypercalls.store.setPerms(`${inboxDir(1, 2)}/bad`, [
          { domid: domId(2), read: false, write: false },
          { domid: domId(1), read: true, write: true },
        ]);
        await assert.rejects(pa, { code: 'PV_ERR_BAD_REQUEST' });
      } finally {
        w.close();
      }
    }
  });

  it('no peer within the timeout → PV_ERR_TIMEOUT', async () => {
    const w = world();
    try {
      w.env(2);
      await assert.rejects(exchangeConnInfo(w.env(1), { peerDomid: 2, name: 'lonely', info: A, timeoutMs: 30 }), {
        code: 'PV_ERR_TIMEOUT',
      });
    } finally {
      w.close();
    }
  });

  it('a bad name → PV_ERR_INVALID_ARG', async () => {
    const w = world();
    try {
      await assert.rejects(exchangeConnInfo(w.env(1), { peerDomid: 2, name: '../x', info: A }), {
        code: 'PV_ERR_INVALID_ARG',
      });
    } finally {
      w.close();
    }
  });
});

describe("verbs: connectRcQp walks RESET → INIT → RTR → RTS with perftest's defaults", () => {
  it('sends the three transitions with the required masks and mtu 4096, rnr 7, retry 7, timeout 14, min_rnr 12, psn 0', () => {
    const env = fakeEnv(domId(1), { pages: 16 });
    const provider = new FakeProvider(env.memory);
    const ctx = new Context(env, { device: 'nic0', kind: 'rdma-nic', transport: 'native' }, provider);
    const pd = allocPd(ctx);
    const cq = createCq(ctx, 4);
    const qp = createQp(pd, {
      sendCq: cq,
      recvCq: cq,
      cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    });
    const access = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    connectRcQp(qp, { destQpNum: 33, dlid: 2 }, access);
    assert.equal(qp.state, QpState.RTS);
    const [init, rtr, rts] = provider.modifies;
    assert.deepEqual(init.attr, { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: access });
    assert.equal(rtr.attr.pathMtu, 5);
    assert.equal(rtr.attr.destQpNum, 33);
    assert.deepEqual(rtr.attr.ahAttr, { dlid: 2 });
    assert.equal(rtr.attr.minRnrTimer, 12);
    assert.equal(rtr.attr.rqPsn, 0);
    assert.equal(rts.attr.timeout, 14);
    assert.equal(rts.attr.retryCnt, 7);
    assert.equal(rts.attr.rnrRetry, 7);
    assert.equal(rts.attr.sqPsn, 0);
    assert.equal(rtr.mask & QpAttrMask.DEST_QPN, QpAttrMask.DEST_QPN);
    // Connecting again from RTS resets first.
    connectRcQp(qp, { destQpNum: 34, dlid: 2 }, access);
    assert.equal(provider.modifies[3].attr.qpState, QpState.RESET);
    assert.equal(qp.state, QpState.RTS);
  });
});
