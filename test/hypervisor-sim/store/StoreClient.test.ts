import assert from 'node:assert/strict';
import { once } from 'node:events';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { StoreClient } from '../../../hypervisor-sim/store/StoreClient.js';
import { StoreServer } from '../../../hypervisor-sim/store/StoreServer.js';
import { XenStore } from '../../../hypervisor-sim/store/XenStore.js';
import { StoreError } from '../../../protocol/errors.js';
import { withTransaction } from '../../../protocol/Hypercalls.js';
import { DOM0, type DomId } from '../../../protocol/Types.js';
import type { StoreWorkerData, StoreWorkerReport } from './helpers/StoreWorker.js';

const D1 = 1 as DomId;
const D2 = 2 as DomId;
const HOME1 = '/local/domain/1';
const HOME2 = '/local/domain/2';

const code = (c: string) => (err: unknown) => (err as { code?: unknown }).code === c;

/** Rejects if `p` does not settle within `ms` (a hang fails the test instead of stalling it). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
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

interface Rig {
  readonly store: XenStore;
  readonly server: StoreServer;
  connect(domid: DomId): StoreClient;
  /** A bare port attached as `domid`, to send hand-made messages. */
  raw(domid: DomId): MessagePort;
  close(): void;
}

function rig(opts: ConstructorParameters<typeof StoreServer>[1] = {}): Rig {
  const store = new XenStore();
  store.introduceDomain(D1);
  store.introduceDomain(D2);
  const server = new StoreServer(store, opts);
  const ports: MessagePort[] = [];
  const attach = (domid: DomId): MessagePort => {
    const ch = new MessageChannel();
    server.attach(domid, ch.port1);
    ports.push(ch.port2);
    return ch.port2;
  };
  return {
    store,
    server,
    connect: (domid) => new StoreClient(attach(domid)),
    raw: attach,
    close: () => {
      server.close();
      for (const p of ports) p.close();
    },
  };
}

/** Sends one hand-made message and waits for the response with the same id. */
async function rawCall(port: MessagePort, msg: Record<string, unknown>): Promise<Record<string, unknown>> {
  const reply = new Promise<Record<string, unknown>>((resolve) => {
    const on = (m: Record<string, unknown>): void => {
      if (m.id !== msg.id) return;
      port.off('message', on);
      resolve(m);
    };
    port.on('message', on);
  });
  port.postMessage(msg);
  return within(reply, 5000, `reply to ${String(msg.op)}`);
}

describe('store over a MessagePort: StoreServer ↔ StoreClient', () => {
  let r: Rig;
  beforeEach(() => {
    r = rig({ delivery: { window: 2, maxPending: 3 } });
  });
  afterEach(() => r.close());

  it('errors keep their code (and class) across the port', async () => {
    const c = r.connect(D1);
    await assert.rejects(c.read(`${HOME1}/missing`), (err: unknown) => {
      assert.ok(err instanceof StoreError, 'rebuilt with fromWireError');
      assert.equal((err as StoreError).code, 'PV_ERR_STORE_NOENT');
      return true;
    });
    await assert.rejects(c.write('relative/path', 'v'), code('PV_ERR_STORE_INVALID'));
    await assert.rejects(c.write(`${HOME2}/x`, 'v'), code('PV_ERR_STORE_PERM'));
  });

  it('every op crosses with its value intact', async () => {
    const c = r.connect(D1);
    await c.write(`${HOME1}/dev/ring-ref`, '8');
    await c.mkdir(`${HOME1}/dev/empty`);
    assert.equal(await c.read(`${HOME1}/dev/ring-ref`), '8');
    assert.equal(await c.tryRead(`${HOME1}/dev/none`), undefined);
    assert.deepEqual(await c.directory(`${HOME1}/dev`), ['ring-ref', 'empty']);
    const perms = [
      { domid: D1, read: false, write: false },
      { domid: D2, read: true, write: false },
    ];
    await c.setPerms(`${HOME1}/dev`, perms);
    assert.deepEqual(await c.getPerms(`${HOME1}/dev`), perms);
    await c.rm(`${HOME1}/dev`);
    assert.equal(await c.tryRead(`${HOME1}/dev/ring-ref`), undefined);

    // A transaction across the port, retried when a local writer conflicts with it.
    await c.write(`${HOME1}/n`, '0');
    let attempts = 0;
    await withTransaction(c, async (tx) => {
      attempts++;
      const v = Number(await c.read(`${HOME1}/n`, tx));
      if (attempts === 1) r.store.write(DOM0, `${HOME1}/n`, '10');
      await c.write(`${HOME1}/n`, String(v + 1), tx);
    });
    assert.equal(attempts, 2);
    assert.equal(r.store.read(DOM0, `${HOME1}/n`), '11');
  });

  it('watches deliver: the registration event, then each change; nothing after unwatch', async () => {
    const c = r.connect(D1);
    const events: string[] = [];
    let notify: (() => void) | undefined;
    const next = (): Promise<void> =>
      within(
        new Promise<void>((resolve) => {
          notify = resolve;
        }),
        5000,
        'a watch event',
      );
    const first = next();
    const unwatch = await c.watch(`${HOME1}/dev`, (p) => {
      events.push(p);
      notify?.();
    });
    await first;
    const second = next();
    r.store.write(DOM0, `${HOME1}/dev/state`, '4');
    await second;
    assert.deepEqual(events, [`${HOME1}/dev`, `${HOME1}/dev/state`]);

    await unwatch();
    r.store.write(DOM0, `${HOME1}/dev/state`, '5');
    // Replies and events share one ordered port: once this reply is in, any event sent before it is too.
    await c.read(`${HOME1}/dev/state`);
    assert.equal(events.length, 2, 'no event after unwatch');
    assert.equal(r.store.watchCount(D1), 0);
  });

  it('a client cannot act as another domain', async () => {
    const port = r.raw(D1);
    const plain = await rawCall(port, { id: 0, op: 'write', args: [`${HOME2}/x`, 'v'] });
    assert.equal((plain.error as { code: string }).code, 'PV_ERR_STORE_PERM');
    // Nothing in a message names a domain; fields claiming one are ignored.
    const forged = await rawCall(port, { id: 1, op: 'write', args: [`${HOME2}/x`, 'v'], domid: 2, caller: 2 });
    assert.equal(forged.ok, false);
    assert.equal((forged.error as { code: string }).code, 'PV_ERR_STORE_PERM');
    const theirs = r.store.transactionStart(D2);
    const stolen = await rawCall(port, { id: 2, op: 'write', args: [`${HOME2}/x`, 'v', theirs] });
    assert.equal((stolen.error as { code: string }).code, 'PV_ERR_STORE_NOENT', "another domain's transaction id");
    assert.throws(() => r.store.read(DOM0, `${HOME2}/x`), code('PV_ERR_STORE_NOENT'));
  });

  it('malformed requests are answered or dropped, never crash the server', async () => {
    const port = r.raw(D1);
    const errorCode = async (msg: Record<string, unknown>): Promise<string> =>
      ((await rawCall(port, msg)).error as { code: string }).code;
    assert.equal(await errorCode({ id: 1, op: 'format-disk', args: [] }), 'PV_ERR_NOT_SUPPORTED');
    assert.equal(await errorCode({ id: 2, op: 'write', args: [1, 2] }), 'PV_ERR_STORE_INVALID');
    assert.equal(await errorCode({ id: 3, op: 'read', args: 'not an array' }), 'PV_ERR_STORE_INVALID');
    assert.equal(await errorCode({ id: 4, op: 'read', args: [HOME1, -1] }), 'PV_ERR_STORE_INVALID');
    assert.equal(await errorCode({ id: 5, op: 'setPerms', args: [HOME1, [{ domid: 'x' }]] }), 'PV_ERR_STORE_INVALID');
    assert.equal(await errorCode({ id: 6, op: '__proto__', args: [] }), 'PV_ERR_NOT_SUPPORTED');
    port.postMessage('garbage');
    port.postMessage({ op: 'read' });
    const ok = await rawCall(port, { id: 7, op: 'read', args: [HOME1] });
    assert.equal(ok.ok, true, 'the port still serves after garbage');
    assert.equal(r.server.droppedMessages, 2);
  });

  it('watch events are flow-controlled: an unacknowledged watcher gets a bounded queue (XSA-349)', async () => {
    const port = r.raw(D1);
    const events: string[] = [];
    port.on('message', (m: { watchId?: number; path?: string }) => {
      if (m.watchId === 9) events.push(m.path as string);
    });
    const watched = `${HOME1}/flood`;
    await rawCall(port, { id: 1, op: 'watch', args: [watched, 9] });
    // A guest (here dom0 for brevity) rewrites 50 paths under the watch; the watcher never acks.
    for (let i = 0; i < 50; i++) r.store.write(DOM0, `${watched}/k${i}`, String(i));
    await rawCall(port, { id: 2, op: 'read', args: [HOME1] });
    assert.deepEqual(events, [watched, `${watched}/k0`], 'window of 2: registration + first change');
    // Each ack releases one waiting event; the overflowing set collapsed into the watch path.
    port.postMessage({ ack: 9 });
    port.postMessage({ ack: 9 });
    port.postMessage({ ack: 9 });
    await rawCall(port, { id: 3, op: 'read', args: [HOME1] });
    assert.deepEqual(events, [watched, `${watched}/k0`, watched], '50 changes cost 3 events');
  });

  it('detach rejects outstanding requests and releases the watches', async () => {
    const c = r.connect(D1);
    await c.watch(HOME1, () => {});
    assert.equal(r.store.watchCount(D1), 1);
    const pending = c.read(HOME1);
    r.server.detach(D1);
    r.server.detach(D1);
    await assert.rejects(within(pending, 5000, 'the pending request'), code('PV_ERR_DISCONNECTED'));
    await assert.rejects(c.read(HOME1), code('PV_ERR_DISCONNECTED'));
    assert.equal(r.store.watchCount(D1), 0);
    assert.equal(r.server.isAttached(D1), false);
  });
});

describe('store from a real domain worker', () => {
  it('a worker reaches the store through its port, as its own domain only', async function () {
    this.timeout(20_000);
    const { store, server, close } = rig();
    const ch = new MessageChannel();
    server.attach(D1, ch.port1);
    const data: StoreWorkerData = { domid: D1, victim: D2, port: ch.port2 };
    const worker = new Worker(new URL('./helpers/StoreWorker.js', import.meta.url), {
      workerData: data,
      transferList: [ch.port2],
    });
    try {
      const next = async (): Promise<StoreWorkerReport> =>
        (await within(once(worker, 'message'), 10_000, 'a worker report'))[0] as StoreWorkerReport;
      const watching = await next();
      assert.deepEqual(watching, { type: 'watching' });
      store.write(DOM0, `${HOME1}/ping`, 'pong');
      const done = await next();
      assert.equal(done.type, 'done', JSON.stringify(done));
      if (done.type !== 'done') return;
      assert.equal(done.readBack, 'hello');
      assert.equal(done.forgedCode, 'PV_ERR_STORE_PERM');
      assert.equal(done.forgedName, 'StoreError', 'the error class is rebuilt in the worker');
      assert.equal(done.ping, 'pong');
      assert.deepEqual(done.events, [`${HOME1}/ping`, `${HOME1}/ping`]);
      assert.equal(store.read(DOM0, `${HOME1}/from-worker`), 'hello');
      assert.throws(() => store.read(DOM0, `${HOME2}/forged`), code('PV_ERR_STORE_NOENT'));
    } finally {
      await worker.terminate();
      close();
    }
  });
});
