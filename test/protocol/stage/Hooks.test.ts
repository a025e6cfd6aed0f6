import assert from 'node:assert/strict';
import { BounceCopier } from '../../../backend/rdma/BounceCopier.js';
import type { MrRec } from '../../../backend/rdma/GuestSession.js';
import { WrTracker } from '../../../backend/rdma/WrTracker.js';
import { RingServer } from '../../../backend/ring/RingServer.js';
import type { EvtchnOps, GrantCopyOp, GrantOps } from '../../../protocol/Hypercalls.js';
import { encodeIoResponse } from '../../../protocol/ring/IoSlot.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { EvtchnPort } from '../../../protocol/Types.js';
import { ioRequest, MockRing, produceIoRequest } from '../../helpers/MockRing.js';

/**
 * Where the hooks put time, checked from inside the hooked code: each callback records the stage
 * that is current while it runs (no timing involved), and the caller's stage must be back after.
 */
describe('stage hooks: each section runs in its stage and gives the caller its stage back', () => {
  beforeEach(() => stages.enable());
  afterEach(() => stages.disable());

  it('ring server: taking requests and the notify are RING; the handler runs in the loop stage', () => {
    const seen: Record<string, Stage[]> = { handler: [], notify: [] };
    const ev = {
      notify: () => seen.notify.push(stages.current),
      kickSelf: () => {},
      testAndClearPending: () => false,
      wakeSnapshot: () => 0,
      waitForEvent: () => false,
    };
    const server = new RingServer(ev as unknown as EvtchnOps);
    const m = MockRing.create();
    server.add(m.back, 3 as EvtchnPort, (req, rsp, w) => {
      seen.handler.push(stages.current);
      encodeIoResponse(rsp, w, { idLo: req[0] >>> 0, idHi: 0, op: 1, status: 0, length: 0, checksum: 0 });
      return undefined;
    });
    for (let i = 0; i < 3; i++) produceIoRequest(m.front, ioRequest(i));
    m.front.pushRequests();
    m.front.finalCheckForResponses(); // ask for a notify, so the server sends one
    assert.equal(server.serveOnce(), 3);
    assert.deepEqual(seen.handler, [Stage.HOME, Stage.HOME, Stage.HOME], 'handlers are backend work');
    assert.deepEqual(seen.notify, [Stage.RING], 'the notify is ring + notify');
    assert.equal(stages.current, Stage.HOME, 'the loop gets HOME back');
    assert.ok(stages.snapshot()[Stage.RING] > 0, 'the ring section accrued time');
  });

  it('ring server: an empty ring is only looked at (no RING section opened)', () => {
    const ev = { kickSelf: () => {} };
    const server = new RingServer(ev as unknown as EvtchnOps);
    server.add(MockRing.create().back, 3 as EvtchnPort, () => undefined);
    stages.enter(Stage.DEVICE); // a marker: an opened section would have to restore it
    const before = stages.snapshot()[Stage.RING];
    assert.equal(server.serveOnce(), 0);
    assert.equal(stages.snapshot()[Stage.RING], before);
    assert.equal(stages.current, Stage.DEVICE);
  });

  it('copy mode: every grant copy of a bounce transfer runs in GRANT', () => {
    const inside: Stage[] = [];
    const grant = {
      grantCopy: (_op: GrantCopyOp) => inside.push(stages.current),
    } as unknown as GrantOps;
    const t = new WrTracker(4);
    const slot = t.take();
    const mr = { addr: 0, refs: [10, 11] } as unknown as MrRec;
    t.nsge[slot] = 1;
    const k = t.sge(slot, 0);
    t.sgeAddr[k] = 4000;
    t.sgeLen[k] = 200; // crosses the guest's page boundary: two grant copies
    t.sgeMr[k] = mr;
    const copier = new BounceCopier(grant, 1, t);
    const prev = stages.enter(Stage.RING);
    assert.equal(copier.copy(slot, 0, 200, true), true);
    assert.deepEqual(inside, [Stage.GRANT, Stage.GRANT]);
    assert.equal(stages.current, Stage.RING, "the caller's stage is restored");
    stages.enter(prev);
  });

  it('copy mode: a refused grant copy still restores the caller stage', () => {
    const grant = {
      grantCopy: () => {
        throw new Error('grant ended');
      },
    } as unknown as GrantOps;
    const t = new WrTracker(4);
    const slot = t.take();
    t.nsge[slot] = 1;
    const k = t.sge(slot, 0);
    t.sgeLen[k] = 8;
    t.sgeMr[k] = { addr: 0, refs: [1] } as unknown as MrRec;
    assert.equal(new BounceCopier(grant, 1, t).copy(slot, 0, 8, false), false);
    assert.equal(stages.current, Stage.HOME);
  });
});
