import assert from 'node:assert/strict';
import { LocalStoreClient } from '../../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../../hypervisor-sim/store/XenStore.js';
import type { StoreOps, StorePerm, StoreTx, Unwatch } from '../../../protocol/Hypercalls.js';
import { withTransaction } from '../../../protocol/Hypercalls.js';
import { DOM0, type DomId } from '../../../protocol/Types.js';
import {
  type BackendHooks,
  type FrontendHooks,
  XenbusDevice,
  type XenbusKeys,
} from '../../../protocol/xenbus/XenbusDevice.js';
import {
  backendDir,
  createDevicePaths,
  type DeviceSpec,
  frontendDir,
  removeDevicePaths,
  writeBackendDir,
} from '../../../protocol/xenbus/XenbusPaths.js';
import { parseState, stateName, XenbusState } from '../../../protocol/xenbus/XenbusState.js';

const FE = 1 as DomId;
const BE = 2 as DomId;
const SPEC: DeviceSpec = { type: 'vbd', devid: 51712, frontDomid: FE, backDomid: BE };
const FE_DIR = frontendDir(FE, SPEC.type, SPEC.devid);
const BE_DIR = backendDir(BE, SPEC.type, FE, SPEC.devid);

const code = (c: string) => (err: unknown) => (err as { code?: unknown }).code === c;

/** Rejects if `p` does not settle within `ms`. */
async function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets queued store replies and watch deliveries run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/** Polls `pred` between macrotasks; fails with `what` if it does not hold within `ms`. */
async function waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle(1);
  }
}

/** A shared log of hook calls and state changes, in the order they happened. */
type Log = string[];

/** Frontend hooks that hand out a new ring-ref per setup. */
function frontHooks(log: Log, ring = { next: 1 }): FrontendHooks & { backendKeys: XenbusKeys[] } {
  const backendKeys: XenbusKeys[] = [];
  return {
    backendKeys,
    setup: (_dev, keys) => {
      backendKeys.push(keys);
      const ref = ring.next++;
      log.push(`fe:setup ring-ref=${ref}`);
      return { 'ring-ref': String(ref), 'event-channel': String(100 + ref), protocol: 'x86_64-abi' };
    },
    connected: (_dev, keys) => {
      log.push(`fe:connected sectors=${keys.sectors}`);
    },
    disconnected: () => {
      log.push('fe:disconnected');
    },
  };
}

/** Backend hooks that record the ring-ref they were given. */
function backHooks(log: Log, tag = 'be', fail = false): BackendHooks {
  return {
    probe: () => {
      log.push(`${tag}:probe`);
      return { 'feature-persistent': '1', 'max-ring-page-order': '4' };
    },
    connect: (_dev, keys) => {
      log.push(`${tag}:connect ring-ref=${keys['ring-ref']}`);
      if (fail) throw new Error('cannot map the ring');
      return { sectors: '2048', 'sector-size': '512' };
    },
    disconnect: () => {
      log.push(`${tag}:disconnect`);
    },
  };
}

interface World {
  readonly store: XenStore;
  readonly toolstack: LocalStoreClient;
  readonly log: Log;
  front(hooks?: FrontendHooks, extra?: { eager?: boolean; maxReconnects?: number; store?: StoreOps }): XenbusDevice;
  back(hooks?: BackendHooks, tag?: string, store?: StoreOps): XenbusDevice;
}

/** A store with the frontend and backend domains and the device paths the toolstack wrote. */
async function world(): Promise<World> {
  const store = new XenStore();
  store.introduceDomain(FE);
  store.introduceDomain(BE);
  const toolstack = new LocalStoreClient(store, DOM0);
  await createDevicePaths(toolstack, SPEC);
  const log: Log = [];
  const onState = (tag: string) => (s: XenbusState) => log.push(`${tag}:${stateName(s)}`);
  return {
    store,
    toolstack,
    log,
    front: (hooks = frontHooks(log), extra = {}) =>
      new XenbusDevice({
        role: 'frontend',
        store: extra.store ?? new LocalStoreClient(store, FE),
        domid: FE,
        type: SPEC.type,
        devid: SPEC.devid,
        hooks,
        eager: extra.eager,
        maxReconnects: extra.maxReconnects,
        onState: onState('fe'),
      }),
    back: (hooks = backHooks(log), tag = 'be', st = new LocalStoreClient(store, BE)) =>
      new XenbusDevice({
        role: 'backend',
        store: st,
        domid: BE,
        frontDomid: FE,
        type: SPEC.type,
        devid: SPEC.devid,
        hooks,
        onState: onState(tag),
      }),
  };
}

/** The states a side went through, from the shared log. */
function states(log: Log, tag: string): string[] {
  return log
    .filter((l) => l.startsWith(`${tag}:`) && !l.includes(' ') && /:[A-Z]/.test(l))
    .map((l) => l.slice(tag.length + 1));
}

describe('xenbus §4.3: startup', () => {
  for (const order of ['frontend first', 'backend first'] as const) {
    it(`full handshake reaches Connected on both sides (${order})`, async () => {
      const w = await world();
      const fe = w.front();
      const be = w.back();
      if (order === 'frontend first') {
        await fe.start();
        await be.start();
      } else {
        await be.start();
        await fe.start();
      }
      await within(Promise.all([fe.whenConnected(), be.whenConnected()]), 'both sides Connected');
      assert.deepEqual(states(w.log, 'fe'), ['Initialising', 'Initialised', 'Connected']);
      assert.deepEqual(states(w.log, 'be'), ['Initialising', 'InitWait', 'Connected']);
      assert.deepEqual(
        w.log.filter((l) => l.includes(' ') || l.endsWith('probe')),
        ['be:probe', 'fe:setup ring-ref=1', 'be:connect ring-ref=1', 'fe:connected sectors=2048'],
        'features before InitWait, ring before connect, properties before Connected',
      );
      assert.equal(fe.peerDomid, BE);
      assert.equal(be.peerDomid, FE);
      assert.equal(w.store.read(DOM0, `${FE_DIR}/state`), '4');
      assert.equal(w.store.read(DOM0, `${BE_DIR}/state`), '4');
      assert.equal(w.store.read(BE, `${FE_DIR}/ring-ref`), '1', 'the backend may read what the frontend published');
      assert.equal(w.store.read(FE, `${BE_DIR}/sectors`), '2048', 'and the frontend what the backend published');
      assert.throws(() => w.store.write(FE, `${BE_DIR}/sectors`, '1'), code('PV_ERR_STORE_PERM'));
      await fe.destroy();
      await be.destroy();
    });
  }

  it('a frontend that skips InitWait (blkif.h shortcut) still connects', async () => {
    const w = await world();
    const fe = w.front(undefined, { eager: true });
    await fe.start();
    await within(fe.whenState(XenbusState.Initialised), 'the eager frontend to publish its ring');
    const be = w.back();
    await be.start();
    await within(Promise.all([fe.whenConnected(), be.whenConnected()]), 'both sides Connected');
    assert.deepEqual(states(w.log, 'be'), ['Initialising', 'InitWait', 'Connected']);
    assert.ok(w.log.includes('be:connect ring-ref=1'));
    await fe.destroy();
    await be.destroy();
  });

  it('coalesced watch events still connect', async () => {
    const w = await world();
    const feStore = new CoalescingStore(new LocalStoreClient(w.store, FE));
    const beStore = new CoalescingStore(new LocalStoreClient(w.store, BE));
    const fe = w.front(undefined, { store: feStore });
    const be = w.back(undefined, 'be', beStore);
    await fe.start();
    await be.start();
    for (
      let round = 0;
      round < 200 && !(fe.state === XenbusState.Connected && be.state === XenbusState.Connected);
      round++
    ) {
      await settle();
      // The backend hears about the frontend only every third round, so its events pile up.
      feStore.flush();
      if (round % 3 === 2) beStore.flush();
    }
    assert.equal(fe.state, XenbusState.Connected);
    assert.equal(be.state, XenbusState.Connected);
    assert.ok(feStore.queued + beStore.queued > feStore.delivered + beStore.delivered, 'events were coalesced');
    const before = [...w.log];
    // Spurious events (wrong path, nothing changed) must not repeat any step.
    feStore.spurious();
    beStore.spurious();
    await settle(20);
    assert.deepEqual(w.log, before);
    assert.equal(w.log.filter((l) => l.startsWith('be:connect')).length, 1, 'connected exactly once');
    await fe.destroy();
    await be.destroy();
  });

  it('invalid peer state string is not trusted', async () => {
    for (const raw of ['0', '1', '4', '8']) assert.equal(parseState(raw), Number(raw));
    for (const raw of ['3 ', ' 3', '03', '3.0', '0x3', '+3', '3e0', '', 'Initialised', '9', '-1', '4\n']) {
      assert.equal(parseState(raw), XenbusState.Unknown, JSON.stringify(raw));
    }

    // A hostile frontend writes a state a lax parser (sscanf "%d") would read as Initialised.
    const w = await world();
    const guest = new LocalStoreClient(w.store, FE);
    const be = w.back();
    await be.start();
    await guest.write(`${FE_DIR}/ring-ref`, '7');
    await guest.write(`${FE_DIR}/state`, '3 ');
    await within(be.whenState(XenbusState.Closing), 'the backend to refuse the frontend');
    assert.equal(w.log.filter((l) => l.startsWith('be:connect')).length, 0, 'never connected on garbage');
    assert.equal((be.lastError as { code?: string }).code, 'PV_ERR_XENBUS_STATE');
    // It recovers once the frontend behaves: Closed, then Initialising → InitWait.
    await guest.write(`${FE_DIR}/state`, '6');
    await within(be.whenState(XenbusState.Closed), 'the backend to follow Closed');
    await guest.write(`${FE_DIR}/state`, '1');
    await within(be.whenState(XenbusState.InitWait), 'the backend to prepare for reconnect');

    // A hostile backend: "4\n" is not Connected either.
    const fe = w.front();
    await fe.start();
    await within(fe.whenState(XenbusState.Initialised), 'the frontend to publish its ring');
    await be.destroy();
    const driver = new LocalStoreClient(w.store, BE);
    await driver.write(`${BE_DIR}/state`, '4\n');
    await waitFor(() => fe.peerState === XenbusState.Unknown, 'the frontend to read the garbage');
    await settle(10);
    assert.equal(fe.state, XenbusState.Initialised);
    assert.ok(!w.log.some((l) => l.startsWith('fe:connected')), 'connected() not called on garbage');
    await driver.write(`${BE_DIR}/state`, '4');
    await within(fe.whenConnected(), 'the frontend to accept a real Connected');
    await fe.destroy();
  });
});

describe('xenbus §4.4: teardown and reconnect', () => {
  async function connectedPair(w: World): Promise<{ fe: XenbusDevice; be: XenbusDevice }> {
    const fe = w.front();
    const be = w.back();
    await fe.start();
    await be.start();
    await within(Promise.all([fe.whenConnected(), be.whenConnected()]), 'both sides Connected');
    w.log.length = 0;
    return { fe, be };
  }

  it('frontend close → backend Closing then Closed', async () => {
    const w = await world();
    const { fe, be } = await connectedPair(w);
    await within(fe.close(), 'the frontend to close');
    await waitFor(() => be.state === XenbusState.Closed, 'the backend to reach Closed');
    assert.deepEqual(w.log, [
      'fe:Closing',
      'be:Closing',
      'fe:Closed',
      'be:disconnect',
      'be:Closed',
      // The frontend frees its ring only after the backend unmapped it (XSA-396 order).
      'fe:disconnected',
    ]);
    assert.equal(w.store.watchCount(FE), 0, 'a closed frontend machine stops watching');
    await be.destroy();
  });

  it('a frontend that starts over while the backend is Closed gets it back to InitWait', async () => {
    const w = await world();
    const { fe, be } = await connectedPair(w);
    await within(fe.close(), 'the frontend to close');
    await waitFor(() => be.state === XenbusState.Closed, 'the backend to reach Closed');
    w.log.length = 0;
    const fe2 = w.front(frontHooks(w.log, { next: 2 }));
    await fe2.start();
    await within(Promise.all([fe2.whenConnected(), be.whenConnected()]), 'reconnection');
    assert.deepEqual(states(w.log, 'be'), ['InitWait', 'Connected']);
    assert.ok(w.log.includes('be:connect ring-ref=2'));
    await fe2.destroy();
    await be.destroy();
  });

  const RESTARTS = {
    'frontend notices first': 'the frontend sees the old backend go before the new one starts',
    'events coalesce': 'removal and re-creation reach the frontend together',
    'frontend hears late': 'the new backend sees the stale Connected frontend before the frontend reacts',
  } as const;
  for (const [mode, story] of Object.entries(RESTARTS)) {
    it(`reconnect after the backend restarts (${mode})`, async () => {
      const w = await world();
      const feHooks = frontHooks(w.log);
      const late = mode === 'frontend hears late' ? new CoalescingStore(new LocalStoreClient(w.store, FE)) : undefined;
      const fe = w.front(feHooks, { store: late });
      const be = w.back();
      /** Lets the machines run; a late frontend hears about the backend only when `deliver`. */
      const pump = async (done: () => boolean, deliver: boolean, what: string): Promise<void> => {
        for (let round = 0; round < 500 && !done(); round++) {
          await settle();
          if (deliver) late?.flush();
        }
        assert.ok(done(), `${story}: timed out waiting for ${what}`);
      };
      await fe.start();
      await be.start();
      await pump(
        () => fe.state === XenbusState.Connected && be.state === XenbusState.Connected,
        true,
        'first connection',
      );

      await be.destroy();
      assert.equal(w.log.at(-1), 'be:disconnect', 'a destroyed backend unmaps');
      await w.toolstack.rm(BE_DIR);
      if (mode === 'frontend notices first')
        await within(fe.whenState(XenbusState.Initialising), 'the frontend to notice');
      await withTransaction(w.toolstack, (tx) => writeBackendDir(w.toolstack, SPEC, tx));
      const be2 = w.back(backHooks(w.log, 'be2'), 'be2');
      await be2.start();
      if (late) {
        await pump(() => be2.peerState === XenbusState.Connected, false, 'the new backend to read the stale state');
        await settle(10);
        assert.ok(!w.log.some((l) => l.startsWith('be2:connect')), 'a fresh backend does not take over a stale ring');
      }
      await pump(
        () =>
          fe.state === XenbusState.Connected && be2.state === XenbusState.Connected && feHooks.backendKeys.length === 2,
        true,
        'reconnection',
      );
      assert.deepEqual(
        w.log
          .filter((l) => l.startsWith('fe:') && l.includes(' '))
          .concat(w.log.filter((l) => l === 'fe:disconnected')),
        [
          'fe:setup ring-ref=1',
          'fe:connected sectors=2048',
          'fe:setup ring-ref=2',
          'fe:connected sectors=2048',
          'fe:disconnected',
        ],
        story,
      );
      const feStates = states(w.log, 'fe');
      assert.deepEqual(feStates.slice(-4), ['Connected', 'Initialising', 'Initialised', 'Connected']);
      const released = w.log.indexOf('fe:disconnected');
      assert.ok(
        released > w.log.indexOf('be:disconnect') && released < w.log.indexOf('fe:setup ring-ref=2'),
        'the old ring is released after the old backend unmapped it and before the new one is set up',
      );
      assert.deepEqual(
        w.log.filter((l) => l.startsWith('be2:connect')),
        ['be2:connect ring-ref=2'],
        'the new backend maps the new ring, once',
      );
      assert.equal(w.store.read(DOM0, `${FE_DIR}/ring-ref`), '2');
      await fe.destroy();
      await be2.destroy();
    });
  }

  it('a frontend restart the backend only sees as "Initialised with new keys" is caught', async () => {
    const w = await world();
    const be = w.back();
    const guest = new LocalStoreClient(w.store, FE);
    await be.start();
    const publish = (ref: string) =>
      withTransaction(guest, async (tx) => {
        await guest.write(`${FE_DIR}/ring-ref`, ref, tx);
        await guest.write(`${FE_DIR}/state`, '3', tx);
      });
    await publish('5');
    await within(be.whenConnected(), 'the backend to connect');
    // The frontend restarted: Initialising → (new ring) Initialised, coalesced into one change.
    await publish('6');
    await waitFor(() => w.log.includes('be:connect ring-ref=6'), 'the backend to reconnect to the new ring');
    assert.deepEqual(
      w.log.filter((l) => l.startsWith('be:') && l.includes('connect')),
      ['be:connect ring-ref=5', 'be:disconnect', 'be:connect ring-ref=6'],
    );
    // Re-reading the same keys (a spurious event) does not reconnect.
    await guest.write(`${FE_DIR}/state`, '3');
    await settle(20);
    assert.equal(w.log.filter((l) => l.startsWith('be:connect')).length, 2);
    await be.destroy();
  });

  it('a backend that keeps failing: the frontend gives up after maxReconnects', async () => {
    const w = await world();
    const fe = w.front(undefined, { maxReconnects: 2 });
    const be = w.back(backHooks(w.log, 'be', true));
    await fe.start();
    const connected = fe.whenConnected();
    await be.start();
    await assert.rejects(within(connected, 'the frontend to give up'), code('PV_ERR_DISCONNECTED'));
    await waitFor(() => fe.state === XenbusState.Closed && be.state === XenbusState.Closed, 'both sides Closed');
    assert.equal(w.log.filter((l) => l.startsWith('be:connect')).length, 3, 'first try + 2 reconnects');
    assert.equal(w.log.filter((l) => l === 'fe:disconnected').length, 3, 'every ring set up was released');
    assert.equal(be.lastError?.message, 'cannot map the ring');
    await be.destroy();
  });

  it('unplug: removing both directories stops both machines and releases everything', async () => {
    const w = await world();
    const { fe, be } = await connectedPair(w);
    await removeDevicePaths(w.toolstack, SPEC);
    await waitFor(() => w.store.watchCount(FE) === 0 && w.store.watchCount(BE) === 0, 'both machines to stop');
    assert.deepEqual([...w.log].sort(), ['be:disconnect', 'fe:disconnected']);
    await assert.rejects(fe.whenConnected(), code('PV_ERR_DISCONNECTED'));
    assert.throws(() => w.store.read(DOM0, FE_DIR), code('PV_ERR_STORE_NOENT'), 'nothing was written back');
    assert.throws(() => w.store.read(DOM0, BE_DIR), code('PV_ERR_STORE_NOENT'));
    await fe.destroy();
    await be.destroy();
  });
});

/**
 * A `StoreOps` that holds watch events back and, on `flush()`, delivers only the last one per
 * watch: the coalescing a busy xenstored connection shows (LBX "two watches fire in close
 * succession"). `spurious()` fires every watch with a path that did not change.
 */
class CoalescingStore implements StoreOps {
  queued = 0;
  delivered = 0;
  private readonly _held = new Map<(p: string) => void, string>();
  private readonly _callbacks = new Set<(p: string) => void>();

  constructor(private readonly _inner: StoreOps) {}

  flush(): void {
    const batch = [...this._held];
    this._held.clear();
    for (const [cb, path] of batch) {
      this.delivered++;
      cb(path);
    }
  }

  spurious(): void {
    for (const cb of this._callbacks) cb('/spurious');
  }

  async watch(path: string, cb: (changedPath: string) => void): Promise<Unwatch> {
    this._callbacks.add(cb);
    const unwatch = await this._inner.watch(path, (p) => {
      this.queued++;
      this._held.set(cb, p);
    });
    return async () => {
      this._callbacks.delete(cb);
      this._held.delete(cb);
      await unwatch();
    };
  }

  read(path: string, tx?: StoreTx): Promise<string> {
    return this._inner.read(path, tx);
  }
  tryRead(path: string, tx?: StoreTx): Promise<string | undefined> {
    return this._inner.tryRead(path, tx);
  }
  write(path: string, value: string, tx?: StoreTx): Promise<void> {
    return this._inner.write(path, value, tx);
  }
  mkdir(path: string, tx?: StoreTx): Promise<void> {
    return this._inner.mkdir(path, tx);
  }
  rm(path: string, tx?: StoreTx): Promise<void> {
    return this._inner.rm(path, tx);
  }
  directory(path: string, tx?: StoreTx): Promise<string[]> {
    return this._inner.directory(path, tx);
  }
  setPerms(path: string, perms: readonly StorePerm[], tx?: StoreTx): Promise<void> {
    return this._inner.setPerms(path, perms, tx);
  }
  getPerms(path: string, tx?: StoreTx): Promise<StorePerm[]> {
    return this._inner.getPerms(path, tx);
  }
  transactionStart(): Promise<StoreTx> {
    return this._inner.transactionStart();
  }
  transactionEnd(tx: StoreTx, commit: boolean): Promise<void> {
    return this._inner.transactionEnd(tx, commit);
  }
}
