import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import sinon from 'sinon';
import { DomainWord, EvtchnSpace } from '../../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { SimEvtchnOps } from '../../../hypervisor-sim/evtchn/SimEvtchnOps.js';
import type { WaitOptions } from '../../../protocol/Hypercalls.js';
import type { DomId, EvtchnPort } from '../../../protocol/Types.js';
import { awaitEvent, type EvtchnWorkerData, type EvtchnWorkerReport } from './helpers/EvtchnWorker.js';

const NOW: WaitOptions = { spinBudget: 0, timeoutMs: 0 };

/** A host with `domains` live domains of `ports` ports each, and ops for each domain. */
function host(ports = 8, domains = 4): { space: EvtchnSpace; ops: SimEvtchnOps[] } {
  const space = EvtchnSpace.create({ maxDomains: domains, portsPerDomain: ports });
  const ops: SimEvtchnOps[] = [];
  for (let d = 0; d < domains; d++) {
    space.resetDomain(d as DomId);
    ops.push(new SimEvtchnOps(d as DomId, space));
  }
  return { space, ops };
}

/** `a` allocates for `b`, `b` binds; the pending bit the bind raised is cleared. */
function link(a: SimEvtchnOps, b: SimEvtchnOps): { pa: EvtchnPort; pb: EvtchnPort } {
  const pa = a.allocUnbound(b.domid);
  const pb = b.bindInterdomain(a.domid, pa);
  b.testAndClearPending(pb);
  return { pa, pb };
}

/** Ports of `domid` that are not closed. */
function openPorts(space: EvtchnSpace, domid: number): number {
  let n = 0;
  for (let p = 1; p < space.config.portsPerDomain; p++) if (space.status(domid, p).state !== 'closed') n++;
  return n;
}

describe('evtchn §3: binding', () => {
  it('bind sets the local port pending', () => {
    const { space, ops } = host();
    const [a, b] = ops;
    const pa = a.allocUnbound(b.domid);
    const snap = b.wakeSnapshot();
    const pb = b.bindInterdomain(a.domid, pa);
    assert.equal(b.isPending(pb), true, 'EVTCHNOP_bind_interdomain always sets the local port pending (XE:92)');
    assert.equal(b.waitForEvent(snap, NOW), true, 'and wakes the binding domain');
    assert.equal(a.isPending(pa), false, 'the remote end is not raised by the bind');
    assert.deepEqual(space.status(a.domid, pa), {
      state: 'interdomain',
      remoteDom: b.domid,
      remotePort: pb,
      pending: false,
      masked: false,
    });
    assert.equal(space.status(b.domid, pb).remotePort, pa);
  });

  it('bind to a port that does not accept the caller is refused', () => {
    const { space, ops } = host();
    const [a, b, c] = ops;
    const pa = a.allocUnbound(b.domid);
    assert.throws(() => c.bindInterdomain(a.domid, pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    assert.equal(space.status(a.domid, pa).state, 'unbound');
    assert.equal(space.status(a.domid, pa).remoteDom, b.domid, 'still accepts only b');
    assert.equal(openPorts(space, c.domid), 0, 'the refused binder keeps no port');
    const pb = b.bindInterdomain(a.domid, pa);
    assert.throws(() => b.bindInterdomain(a.domid, pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' }, 'already bound');
    assert.throws(() => b.bindInterdomain(a.domid, (pa + 1) as EvtchnPort), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    assert.equal(space.status(b.domid, pb).state, 'interdomain');
  });

  it('a refused bind leaks no port (3 usable ports, 5 refusals, then 3 allocations)', () => {
    const { ops } = host(4);
    const [a, b] = ops;
    for (let i = 0; i < 5; i++) {
      assert.throws(() => b.bindInterdomain(a.domid, 1 as EvtchnPort), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    }
    for (let i = 0; i < 3; i++) b.allocUnbound(a.domid);
    assert.throws(() => b.allocUnbound(a.domid), { code: 'PV_ERR_EVTCHN_NO_SPACE' });
  });

  it('binds to and allocations for domains that are not running are refused', () => {
    const { space, ops } = host(8, 3);
    space.closeDomain(2 as DomId);
    assert.throws(() => ops[0].bindInterdomain(2 as DomId, 1 as EvtchnPort), { code: 'PV_ERR_NO_DOMAIN' });
    assert.throws(
      () => ops[2].allocUnbound(0 as DomId),
      { code: 'PV_ERR_NO_DOMAIN' },
      'a dead domain allocates nothing',
    );
    assert.throws(() => ops[0].allocUnbound(3 as DomId), { code: 'PV_ERR_NO_DOMAIN' }, 'domid outside the space');
    assert.throws(() => new SimEvtchnOps(3 as DomId, space), { code: 'PV_ERR_NO_DOMAIN' });
  });

  it('a domain can bind to its own unbound port (loopback)', () => {
    const { ops } = host();
    const a = ops[0];
    const p1 = a.allocUnbound(a.domid);
    const p2 = a.bindInterdomain(a.domid, p1);
    a.testAndClearPending(p2);
    a.notify(p1);
    assert.equal(a.testAndClearPending(p2), true);
  });
});

describe('evtchn §3: notify, pending and mask', () => {
  it('notify sets the peer pending and bumps its wake word', () => {
    const { ops } = host();
    const [a, b] = ops;
    const { pa, pb } = link(a, b);
    const snap = b.wakeSnapshot();
    a.notify(pa);
    assert.equal(b.isPending(pb), true);
    assert.equal(b.wakeSnapshot(), snap + 1);
    assert.equal(a.isPending(pa), false, 'the sender is not raised');
    assert.deepEqual(a.counters.snapshot(), { sent: 1, woke: 1, coalesced: 0, masked: 0, kicks: 0 });
  });

  it('notify on a masked port stays pending and is delivered at unmask', () => {
    const { space, ops } = host();
    const [a, b] = ops;
    const { pa, pb } = link(a, b);
    b.mask(pb);
    const snap = b.wakeSnapshot();
    a.notify(pa);
    assert.equal(b.isPending(pb), true, 'masking keeps the event');
    assert.equal(b.wakeSnapshot(), snap, 'but does not wake');
    assert.equal(a.counters.masked, 1);
    assert.equal(space.status(b.domid, pb).masked, true);
    b.unmask(pb);
    assert.equal(b.wakeSnapshot(), snap + 1, 'unmask re-raises the pending event (EVTCHNOP_unmask)');
    assert.equal(b.testAndClearPending(pb), true);
    b.unmask(pb);
    assert.equal(b.wakeSnapshot(), snap + 1, 'unmasking an unmasked port does not wake again');
    b.mask(pb);
    b.unmask(pb);
    assert.equal(b.wakeSnapshot(), snap + 1, 'unmasking a port with nothing pending does not wake');
  });

  it('pending coalesces (two notifies, one wake)', () => {
    const { ops } = host();
    const [a, b] = ops;
    const { pa, pb } = link(a, b);
    const snap = b.wakeSnapshot();
    a.notify(pa);
    a.notify(pa);
    assert.equal(b.wakeSnapshot(), snap + 1);
    assert.deepEqual(a.counters.snapshot(), { sent: 2, woke: 1, coalesced: 1, masked: 0, kicks: 0 });
    assert.equal(b.testAndClearPending(pb), true);
    assert.equal(b.testAndClearPending(pb), false, 'one event, however many notifies');
    a.notify(pa);
    assert.equal(b.wakeSnapshot(), snap + 2, 'a notify after the clear wakes again');
  });

  it('a notify nobody waits for issues no Atomics.notify', () => {
    const { ops } = host();
    const [a, b] = ops;
    const { pa } = link(a, b);
    const spy = sinon.spy(Atomics, 'notify');
    try {
      a.notify(pa);
      a.notify(pa);
    } finally {
      spy.restore();
    }
    assert.equal(spy.callCount, 0);
    assert.equal(a.counters.kicks, 0);
  });

  it('notify on a port that is not interdomain is refused', () => {
    const { ops } = host();
    const [a, b] = ops;
    const unbound = a.allocUnbound(b.domid);
    assert.throws(() => a.notify(unbound), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    assert.throws(() => a.notify((unbound + 1) as EvtchnPort), { code: 'PV_ERR_EVTCHN_BAD_STATE' }, 'closed');
  });

  it('bad port refused', () => {
    const { space, ops } = host(8);
    const [a, b] = ops;
    for (const bad of [0, 8, 9, -1, 1.5, Number.NaN, 2 ** 32]) {
      const port = bad as EvtchnPort;
      const calls: Array<[string, () => unknown]> = [
        ['notify', () => a.notify(port)],
        ['close', () => a.close(port)],
        ['mask', () => a.mask(port)],
        ['unmask', () => a.unmask(port)],
        ['testAndClearPending', () => a.testAndClearPending(port)],
        ['isPending', () => a.isPending(port)],
        ['status', () => a.status(port)],
        ['bindInterdomain', () => a.bindInterdomain(b.domid, port)],
      ];
      for (const [name, call] of calls) {
        assert.throws(call, { code: 'PV_ERR_EVTCHN_BAD_PORT' }, `${name}(${bad})`);
      }
    }
    assert.equal(openPorts(space, a.domid), 0);
  });

  it('ports of other domains cannot be touched: a port number always names a port of the caller', () => {
    const { space, ops } = host();
    const [a, b, c] = ops;
    const { pa } = link(a, b);
    assert.throws(() => c.notify(pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    assert.throws(() => c.close(pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    c.mask(pa);
    assert.equal(space.status(a.domid, pa).masked, false, "c's mask hits c's own port");
    assert.equal(space.status(a.domid, pa).state, 'interdomain');
  });
});

describe('evtchn §3: close and dead domains', () => {
  it('close returns the peer to unbound', () => {
    const { space, ops } = host();
    const [a, b] = ops;
    const { pa, pb } = link(a, b);
    const snap = b.wakeSnapshot();
    a.close(pa);
    assert.equal(space.status(a.domid, pa).state, 'closed');
    const peer = space.status(b.domid, pb);
    assert.equal(peer.state, 'unbound', 'EVTCHNOP_close puts the remote end back into unbound');
    assert.equal(peer.remoteDom, a.domid, 'accepting a new bind from the closer');
    assert.equal(peer.pending, true, 'and raised so the peer notices');
    assert.notEqual(b.wakeSnapshot(), snap);
    assert.throws(() => b.notify(pb), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
    assert.throws(() => a.close(pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' }, 'closing twice');
    const again = a.bindInterdomain(b.domid, pb);
    assert.equal(space.status(b.domid, pb).remotePort, again, 'the closer can bind to it again');
  });

  it('closing an unbound port frees it and a later bind is refused', () => {
    const { space, ops } = host();
    const [a, b] = ops;
    const pa = a.allocUnbound(b.domid);
    a.close(pa);
    assert.equal(space.status(a.domid, pa).state, 'closed');
    assert.throws(() => b.bindInterdomain(a.domid, pa), { code: 'PV_ERR_EVTCHN_BAD_STATE' });
  });

  it('closeDomain wakes peers of a dead domain', () => {
    const { space, ops } = host();
    const [a, b, c] = ops;
    const ab = link(a, b);
    const ca = link(c, a);
    const unboundForC = a.allocUnbound(c.domid);
    const snapB = b.wakeSnapshot();
    const snapC = c.wakeSnapshot();
    assert.equal(space.closeDomain(a.domid), 3, 'two channels and one unbound port were open');
    for (const [peer, port, snap] of [
      [b, ab.pb, snapB],
      [c, ca.pa, snapC],
    ] as const) {
      const st = peer.status(port);
      assert.equal(st.state, 'unbound', `dom${peer.domid}'s end went back to unbound`);
      assert.equal(st.remoteDom, a.domid);
      assert.equal(st.pending, true, `dom${peer.domid} is raised`);
      assert.equal(peer.waitForEvent(snap, NOW), true, `dom${peer.domid} is woken`);
    }
    assert.equal(openPorts(space, a.domid), 0, 'every port of the dead domain is closed');
    assert.throws(() => c.bindInterdomain(a.domid, unboundForC), { code: 'PV_ERR_NO_DOMAIN' });
  });
});

describe('evtchn §3: waiting', () => {
  it('waitForEvent returns false when nothing happens before the timeout', () => {
    const { ops } = host();
    const b = ops[1];
    assert.equal(b.waitForEvent(b.wakeSnapshot(), { spinBudget: 10, timeoutMs: 1 }), false);
    assert.equal(b.waitForEvent(b.wakeSnapshot() - 1, NOW), true, 'a stale snapshot returns at once');
  });

  it('kickSelf wakes the domain without raising any port', () => {
    const { space, ops } = host();
    const [a, b] = ops;
    const { pb } = link(a, b);
    const snap = b.wakeSnapshot();
    b.kickSelf();
    assert.equal(b.waitForEvent(snap, NOW), true);
    assert.equal(b.isPending(pb), false);
    assert.equal(space.words[space.domainIndex(b.domid) + DomainWord.WAITERS], 0, 'no waiter left registered');
  });
});

/** Starts the helper worker and collects its reports; rejects on a worker error. */
function startWorker(data: EvtchnWorkerData): { worker: Worker; next: () => Promise<EvtchnWorkerReport> } {
  const worker = new Worker(new URL('./helpers/EvtchnWorker.js', import.meta.url), { workerData: data });
  const next = async () => (await once(worker, 'message'))[0] as EvtchnWorkerReport;
  return { worker, next };
}

/** Counters minus `kicks`, which depend on thread scheduling. */
function withoutKicks(c: Record<string, number>): Record<string, number> {
  return { sent: c.sent, woke: c.woke, coalesced: c.coalesced, masked: c.masked };
}

/** Sleeps the calling thread for `ms` without spinning (polling helper for the test only). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('evtchn §3: cross-thread', function () {
  this.timeout(60_000);
  const LONG: WaitOptions = { spinBudget: 0, timeoutMs: 10_000 };

  it('cross-thread wake', async () => {
    const { space, ops } = host(8, 2);
    const [a, b] = ops;
    const { pa, pb } = link(a, b);
    const { worker, next } = startWorker({
      mode: 'wake',
      buffer: space.buffer,
      config: space.config,
      domid: b.domid,
      port: pb,
      rounds: 0,
      wait: LONG,
    });
    try {
      assert.equal((await next()).type, 'ready');
      // Wait (bounded) until the worker has registered as a sleeper, so the notify must kick it.
      const waiters = space.domainIndex(b.domid) + DomainWord.WAITERS;
      for (let i = 0; i < 10_000 && Atomics.load(space.words, waiters) === 0; i++) pause(1);
      assert.equal(Atomics.load(space.words, waiters), 1, 'the worker is in waitForEvent');
      a.notify(pa);
      assert.equal(a.counters.kicks, 1, 'a sleeping peer gets an Atomics.notify');
      assert.deepEqual(await next(), { type: 'woken', woken: true, pending: true });
    } finally {
      await worker.terminate();
    }
  });

  for (const spinBudget of [0, 1000]) {
    it(`ping-pong of 10,000 notifies loses no wake-up (spinBudget ${spinBudget})`, async () => {
      const rounds = 10_000;
      const wait: WaitOptions = { spinBudget, timeoutMs: 10_000 };
      const { space, ops } = host(8, 2);
      const [a, b] = ops;
      const { pa, pb } = link(a, b);
      const { worker, next } = startWorker({
        mode: 'pingpong',
        buffer: space.buffer,
        config: space.config,
        domid: b.domid,
        port: pb,
        rounds,
        wait,
      });
      try {
        assert.equal((await next()).type, 'ready');
        for (let round = 0; round < rounds; round++) {
          a.notify(pa);
          assert.ok(awaitEvent(a, pa, wait), `main lost the worker's event in round ${round}`);
        }
        const report = await next();
        assert.equal(report.type, 'done', JSON.stringify(report));
        if (report.type !== 'done') return;
        // Each side notifies only after it consumed the other's event, so every notify finds the
        // peer port clear: nothing coalesces. Kicks depend on scheduling and are not checked.
        const expected = { sent: rounds, woke: rounds, coalesced: 0, masked: 0 };
        assert.deepEqual(withoutKicks(report.counters), expected, 'worker counters');
        assert.deepEqual(withoutKicks(a.counters.snapshot()), expected, 'main counters');
      } finally {
        await worker.terminate();
      }
    });
  }
});
