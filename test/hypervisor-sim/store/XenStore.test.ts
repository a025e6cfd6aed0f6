import assert from 'node:assert/strict';
import { LocalStoreClient } from '../../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../../hypervisor-sim/store/XenStore.js';
import { withTransaction } from '../../../protocol/Hypercalls.js';
import { DOM0, type DomId } from '../../../protocol/Types.js';

const D1 = 1 as DomId;
const D2 = 2 as DomId;
const D3 = 3 as DomId;
const HOME1 = '/local/domain/1';
const HOME2 = '/local/domain/2';

/** A store with domains 1..n introduced. */
function storeWith(n = 2, limits: ConstructorParameters<typeof XenStore>[0] = {}): XenStore {
  const s = new XenStore(limits);
  for (let d = 1; d <= n; d++) s.introduceDomain(d as DomId);
  return s;
}

/** Records every event of a watch as `token:path`. */
function recorder(s: XenStore, domid: DomId, path: string, token = 't'): string[] {
  const events: string[] = [];
  s.watch(domid, path, token, (p, t) => events.push(`${t}:${p}`));
  return events;
}

const code = (c: string) => (err: unknown) => (err as { code?: unknown }).code === c;

describe('store §4.2: permissions', () => {
  it('a domain writes only its own subtree and what it was given', () => {
    const s = storeWith(2);
    s.write(D1, `${HOME1}/data/x`, 'a');
    assert.equal(s.read(D1, `${HOME1}/data/x`), 'a');
    assert.throws(() => s.write(D1, `${HOME2}/x`, 'b'), code('PV_ERR_STORE_PERM'));
    assert.throws(() => s.write(D1, '/tool/x', 'b'), code('PV_ERR_STORE_PERM'), 'the root belongs to dom0');
    assert.throws(() => s.rm(D1, HOME2), code('PV_ERR_STORE_PERM'));

    // Domain 2 gives domain 1 write access to one node of its own.
    s.write(D2, `${HOME2}/shared`, '');
    s.setPerms(D2, `${HOME2}/shared`, [
      { domid: D2, read: false, write: false },
      { domid: D1, read: true, write: true },
    ]);
    s.write(D1, `${HOME2}/shared`, 'hi');
    s.write(D1, `${HOME2}/shared/child`, 'c');
    assert.equal(s.getPerms(D1, `${HOME2}/shared/child`)[0].domid, D1, 'an unprivileged creator owns what it creates');
    assert.deepEqual(
      s.getPerms(D1, `${HOME2}/shared/child`).slice(1),
      [{ domid: D1, read: true, write: true }],
      'the rest of the parent perms is inherited',
    );
    assert.throws(() => s.write(D1, `${HOME2}/other`, 'x'), code('PV_ERR_STORE_PERM'));
    assert.throws(
      () => s.setPerms(D1, `${HOME2}/shared`, [{ domid: D1, read: true, write: true }]),
      code('PV_ERR_STORE_PERM'),
      'write access is not ownership: only the owner sets perms',
    );
    assert.throws(
      () => s.setPerms(D1, `${HOME1}/data/x`, [{ domid: D2, read: false, write: false }]),
      code('PV_ERR_STORE_PERM'),
      'a guest may not give a node away (it would escape its quota)',
    );
  });

  it("reads of another domain's node need read permission", () => {
    const s = storeWith(3);
    const secret = `${HOME1}/secret`;
    s.write(D1, secret, 's');
    assert.throws(() => s.read(D2, secret), code('PV_ERR_STORE_PERM'));
    assert.throws(() => s.directory(D2, HOME1), code('PV_ERR_STORE_PERM'));
    assert.throws(() => s.getPerms(D2, secret), code('PV_ERR_STORE_PERM'));
    s.setPerms(D1, secret, [
      { domid: D1, read: false, write: false },
      { domid: D2, read: true, write: false },
    ]);
    assert.equal(s.read(D2, secret), 's');
    assert.throws(() => s.write(D2, secret, 'x'), code('PV_ERR_STORE_PERM'), 'read is not write');
    assert.throws(() => s.read(D3, secret), code('PV_ERR_STORE_PERM'), 'an unlisted domain gets the owner entry flags');
    s.setPerms(D1, secret, [{ domid: D1, read: true, write: false }]);
    assert.equal(s.read(D3, secret), 's', "the owner entry's flags apply to every unlisted domain");
    assert.throws(() => s.read(D2, `${HOME1}/missing`), code('PV_ERR_STORE_NOENT'));
  });

  it('dom0 may write anywhere', () => {
    const s = storeWith(1);
    s.write(D1, `${HOME1}/secret`, 's');
    assert.equal(s.read(DOM0, `${HOME1}/secret`), 's');
    s.write(DOM0, `${HOME1}/secret`, 'dom0 was here');
    s.write(DOM0, '/tool/pvio/config', 'x');
    s.write(DOM0, `${HOME1}/device/vbd/0/state`, '1');
    assert.equal(
      s.getPerms(DOM0, `${HOME1}/device/vbd/0/state`)[0].domid,
      D1,
      'dom0-created nodes keep the parent owner (xenstored construct_node)',
    );
    const before = s.nodeCount(D1);
    s.setPerms(DOM0, '/tool/pvio/config', [{ domid: D1, read: false, write: false }]);
    assert.equal(s.nodeCount(D1), before + 1, 'dom0 may hand a node over, and the count follows it');
    s.rm(DOM0, HOME1);
    assert.throws(() => s.read(DOM0, HOME1), code('PV_ERR_STORE_NOENT'));
  });

  it('invalid paths, values and roots are refused', () => {
    const s = storeWith(1);
    const bad = [
      '',
      'local',
      '/local/',
      '//local',
      '/local//domain',
      '/a b',
      '/a/../b',
      '/a/b\u0000',
      `/${'a'.repeat(3100)}`,
    ];
    for (const path of bad) {
      assert.throws(() => s.write(D1, path, 'v'), code('PV_ERR_STORE_INVALID'), JSON.stringify(path));
      assert.throws(() => s.watch(D1, path, 'tok', () => {}), code('PV_ERR_STORE_INVALID'), JSON.stringify(path));
    }
    assert.throws(() => s.write(D1, `${HOME1}/v`, 'x'.repeat(4097)), code('PV_ERR_STORE_INVALID'));
    assert.throws(() => s.rm(DOM0, '/'), code('PV_ERR_STORE_INVALID'));
    assert.throws(() => s.read(D3, HOME1), code('PV_ERR_NO_DOMAIN'), 'an unknown domain cannot use the store');
  });
});

describe('store §4.3: watches', () => {
  it('a watch fires once at registration and after each change below its path', () => {
    const s = storeWith(1);
    const dev = `${HOME1}/dev`;
    const events = recorder(s, D1, dev);
    assert.deepEqual(events, [`t:${dev}`], 'fires on registration even before the node exists');
    s.write(D1, `${dev}/state`, '1');
    s.write(D1, `${dev}/state`, '1');
    s.write(D1, `${HOME1}/devx`, '1');
    s.write(D1, HOME1, 'above');
    assert.deepEqual(
      events,
      [`t:${dev}`, `t:${dev}/state`, `t:${dev}/state`],
      'a sibling prefix or a parent is not below',
    );
    s.rm(D1, dev);
    assert.deepEqual(events.at(-1), `t:${dev}`);

    // Removing an ancestor fires a watch below it, with the watch's own path.
    const deep = recorder(s, D1, `${HOME1}/a/b/c`, 'deep');
    s.write(D1, `${HOME1}/a/b/c`, 'x');
    s.rm(D1, `${HOME1}/a`);
    assert.deepEqual(deep, [`deep:${HOME1}/a/b/c`, `deep:${HOME1}/a/b/c`, `deep:${HOME1}/a/b/c`]);

    s.unwatch(D1, dev, 't');
    const seen = events.length;
    s.write(D1, `${dev}/state`, '2');
    assert.equal(events.length, seen, 'no event after unwatch');
    assert.throws(() => s.unwatch(D1, dev, 't'), code('PV_ERR_STORE_NOENT'));
  });

  it('a watcher hears only about nodes it may read', () => {
    const s = storeWith(2);
    const spy = recorder(s, D2, HOME1);
    s.write(D1, `${HOME1}/private`, 'p');
    assert.deepEqual(spy, [`t:${HOME1}`], 'no event leaks the existence of a private node');
    s.write(D1, `${HOME1}/public`, '');
    s.setPerms(D1, `${HOME1}/public`, [
      { domid: D1, read: false, write: false },
      { domid: D2, read: true, write: false },
    ]);
    assert.deepEqual(spy.at(-1), `t:${HOME1}/public`);
  });

  it('changes inside a transaction fire at commit, not before', () => {
    const s = storeWith(1);
    const key = `${HOME1}/k`;
    const events = recorder(s, D1, HOME1);
    const tx = s.transactionStart(D1);
    s.write(D1, key, 'x', tx);
    s.write(D1, `${key}2`, 'y', tx);
    assert.deepEqual(events, [`t:${HOME1}`], 'nothing fires before commit');
    assert.throws(() => s.read(D1, key), code('PV_ERR_STORE_NOENT'), 'nor is anything visible outside');
    assert.equal(s.read(D1, key, tx), 'x', 'the transaction sees its own writes');
    s.transactionEnd(D1, tx, true);
    assert.deepEqual(events, [`t:${HOME1}`, `t:${key}`, `t:${key}2`]);
    assert.equal(s.read(D1, key), 'x');

    const aborted = s.transactionStart(D1);
    s.write(D1, key, 'lost', aborted);
    s.transactionEnd(D1, aborted, false);
    assert.equal(s.read(D1, key), 'x', 'an aborted transaction changes nothing');
    assert.equal(events.length, 3, 'and fires nothing');
  });
});

describe('store §4.3: transactions', () => {
  it('conflicting transactions: one commits, the other gets PV_ERR_STORE_AGAIN', () => {
    const s = storeWith(1);
    const key = `${HOME1}/counter`;
    s.write(D1, key, '0');
    const t1 = s.transactionStart(D1);
    const t2 = s.transactionStart(D1);
    s.write(D1, key, String(Number(s.read(D1, key, t1)) + 1), t1);
    s.write(D1, key, String(Number(s.read(D1, key, t2)) + 1), t2);
    s.transactionEnd(D1, t1, true);
    assert.throws(() => s.transactionEnd(D1, t2, true), code('PV_ERR_STORE_AGAIN'));
    assert.equal(s.read(D1, key), '1', 'the loser changed nothing: no lost update');

    // Disjoint transactions do not conflict. (Creating two siblings would: both change the
    // parent's list of children, as in xenstored.)
    s.write(D1, `${HOME1}/x`, '');
    s.write(D1, `${HOME1}/y`, '');
    const t3 = s.transactionStart(D1);
    const t4 = s.transactionStart(D1);
    s.write(D1, `${HOME1}/x`, '3', t3);
    s.write(D1, `${HOME1}/y`, '4', t4);
    s.transactionEnd(D1, t3, true);
    s.transactionEnd(D1, t4, true);
    assert.deepEqual([s.read(D1, `${HOME1}/x`), s.read(D1, `${HOME1}/y`)], ['3', '4']);

    // A node only read by the transaction, changed outside it, is a conflict too.
    const t5 = s.transactionStart(D1);
    s.read(D1, key, t5);
    s.write(D1, `${HOME1}/z`, '5', t5);
    s.write(D1, key, '9');
    assert.throws(() => s.transactionEnd(D1, t5, true), code('PV_ERR_STORE_AGAIN'));
    assert.throws(() => s.read(D1, `${HOME1}/z`), code('PV_ERR_STORE_NOENT'));
  });

  it("a domain cannot use another domain's transaction", () => {
    const s = storeWith(2);
    const tx = s.transactionStart(D2);
    assert.throws(() => s.write(D1, `${HOME1}/k`, 'v', tx), code('PV_ERR_STORE_NOENT'));
    assert.throws(() => s.transactionEnd(D1, tx, true), code('PV_ERR_STORE_NOENT'));
    s.transactionEnd(D2, tx, false);
  });

  it('withTransaction retries until commit', async () => {
    const s = storeWith(1);
    const key = `${HOME1}/counter`;
    s.write(D1, key, '0');
    const mine = new LocalStoreClient(s, D1);
    const other = new LocalStoreClient(s, D1);
    let attempts = 0;
    const seen = await withTransaction(mine, async (tx) => {
      attempts++;
      const v = Number(await mine.read(key, tx));
      // Someone else bumps the counter while the first two attempts are in flight.
      if (attempts <= 2) await other.write(key, String(v + 100));
      await mine.write(key, String(v + 1), tx);
      return v;
    });
    assert.equal(attempts, 3);
    assert.equal(seen, 200);
    assert.equal(s.read(D1, key), '201');

    let tries = 0;
    await assert.rejects(
      withTransaction(
        mine,
        async (tx) => {
          tries++;
          await mine.read(key, tx);
          await other.write(key, String(tries));
        },
        4,
      ),
      code('PV_ERR_STORE_AGAIN'),
    );
    assert.equal(tries, 4, 'gives up after maxAttempts');
    assert.equal(s.openTransactions(), 0, 'every attempt ended its transaction');
    mine.close();
    other.close();
  });
});

describe('store: domain lifecycle and quotas', () => {
  it('removeDomain removes its nodes and watches', () => {
    const s = storeWith(2);
    s.write(D1, `${HOME1}/device/vbd/0/state`, '4');
    s.write(D2, `${HOME2}/drop`, '');
    s.setPerms(D2, `${HOME2}/drop`, [
      { domid: D2, read: false, write: false },
      { domid: D1, read: true, write: true },
    ]);
    s.write(D1, `${HOME2}/drop/left-behind`, 'x');
    const mine = recorder(s, D1, HOME2);
    s.transactionStart(D1);
    const dom0 = recorder(s, DOM0, HOME1, 'dom0');
    const released = recorder(s, DOM0, '@releaseDomain', 'rel');

    s.removeDomain(D1);

    assert.throws(() => s.read(DOM0, HOME1), code('PV_ERR_STORE_NOENT'));
    assert.equal(s.watchCount(D1), 0);
    assert.equal(s.openTransactions(), 0);
    assert.equal(s.nodeCount(D1), 0);
    assert.equal(dom0.at(-1), `dom0:${HOME1}`, 'a watcher of the removed home hears it go');
    assert.deepEqual(released, ['rel:@releaseDomain', 'rel:@releaseDomain']);
    const heard = mine.length;
    s.write(D2, `${HOME2}/after`, 'x');
    assert.equal(mine.length, heard, "the removed domain's watches are gone");
    assert.equal(
      s.getPerms(DOM0, `${HOME2}/drop/left-behind`)[0].domid,
      DOM0,
      'nodes it owned elsewhere pass to dom0 (XSA-322)',
    );
    assert.throws(() => s.read(D1, HOME2), code('PV_ERR_NO_DOMAIN'));

    s.introduceDomain(D1);
    assert.deepEqual(s.directory(D1, HOME1), [], 'a re-introduced domain starts empty');
  });

  it('quota: a guest cannot exceed its nodes, watches, transactions or transaction size', () => {
    const s = storeWith(1, { nodes: 5, watches: 2, transactions: 1, txNodes: 4 });
    assert.equal(s.nodeCount(D1), 1, 'the home directory counts');
    s.write(D1, `${HOME1}/a/b`, '');
    s.write(D1, `${HOME1}/c`, '');
    s.write(D1, `${HOME1}/d`, '');
    assert.throws(() => s.write(D1, `${HOME1}/e`, ''), code('PV_ERR_STORE_QUOTA'));
    assert.throws(() => s.write(D1, `${HOME1}/d/x/y`, ''), code('PV_ERR_STORE_QUOTA'));
    s.write(D1, `${HOME1}/d`, 'rewriting an existing node costs nothing');
    s.rm(D1, `${HOME1}/a`);
    assert.equal(s.nodeCount(D1), 3, 'rm gives back the whole subtree');
    s.write(D1, `${HOME1}/e`, '');
    for (let i = 0; i < 10; i++) s.write(DOM0, `/tool/n${i}`, '');

    s.watch(D1, HOME1, 'w1', () => {});
    assert.throws(() => s.watch(D1, HOME1, 'w1', () => {}), code('PV_ERR_STORE_EXISTS'));
    s.watch(D1, HOME1, 'w2', () => {});
    assert.throws(() => s.watch(D1, HOME1, 'w3', () => {}), code('PV_ERR_STORE_QUOTA'));
    for (let i = 0; i < 5; i++) s.watch(DOM0, HOME1, `dom0-${i}`, () => {});

    const tx = s.transactionStart(D1);
    assert.throws(() => s.transactionStart(D1), code('PV_ERR_STORE_QUOTA'));
    s.read(D1, `${HOME1}/c`, tx);
    s.read(D1, `${HOME1}/d`, tx);
    s.read(D1, `${HOME1}/e`, tx);
    s.read(D1, HOME1, tx);
    assert.throws(() => s.read(D1, `${HOME1}/d/none`, tx), code('PV_ERR_STORE_QUOTA'));
    s.transactionEnd(D1, tx, false);
  });
});
