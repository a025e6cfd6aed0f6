import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { MailboxWord } from '../../../hypervisor-sim/link/Mailbox.js';
import { BarArg } from '../../../hypervisor-sim/ntb/RemoteBar.js';
import { DmaArg } from '../../../hypervisor-sim/ntb/RemoteDma.js';
import {
  createServiceMailbox,
  SERVICE_MAILBOX_BYTES,
  SERVICE_MSG_MAX,
  SERVICE_MSG_OFFSET,
  ServiceCaller,
  ServiceOp,
  ServiceWord,
} from '../../../hypervisor-sim/ntb/ServiceMailbox.js';

/** A bound on every wait here: a bug fails the test instead of hanging it. */
const BOUND_MS = 10_000;

describe('ntb mailbox layouts: the offset tables in the file comments', () => {
  it('ServiceMailbox: words at the documented byte offsets, error text after them, 512 bytes in all', () => {
    const table: Array<[ServiceWord, number]> = [
      [ServiceWord.STATE, 0],
      [ServiceWord.SEQ, 4],
      [ServiceWord.OP, 8],
      [ServiceWord.BAR, 12],
      [ServiceWord.OFFSET, 16],
      [ServiceWord.VALUE, 20],
      [ServiceWord.STATUS, 24],
      [ServiceWord.ANS_SEQ, 28],
      [ServiceWord.MSG_LEN, 32],
    ];
    for (const [word, byte] of table) assert.equal(word * 4, byte);
    assert.ok(SERVICE_MSG_OFFSET >= (ServiceWord.MSG_LEN + 1) * 4, 'the text does not overlap a word');
    assert.equal(SERVICE_MSG_OFFSET, 64);
    assert.equal(SERVICE_MAILBOX_BYTES, SERVICE_MSG_OFFSET + SERVICE_MSG_MAX);
    assert.equal(SERVICE_MAILBOX_BYTES, 512);
    assert.equal(createServiceMailbox().byteLength, SERVICE_MAILBOX_BYTES);
  });

  it('BAR and DMA mailbox arguments: distinct slots inside the Mailbox ARGS words', () => {
    for (const args of [
      [BarArg.BAR, BarArg.OFFSET, BarArg.VALUE],
      [DmaArg.IOVA_LO, DmaArg.IOVA_HI, DmaArg.LENGTH],
    ]) {
      assert.deepEqual(args, [0, 1, 2]);
      for (const a of args) assert.ok(a < MailboxWord.ARG_COUNT);
    }
  });
});

describe('ntb ServiceMailbox: main thread (async caller) → service thread (sync server)', () => {
  let worker: Worker | undefined;
  afterEach(async () => {
    await worker?.terminate();
    worker = undefined;
  });

  async function start(slowMs = 300): Promise<ServiceCaller> {
    const sab = createServiceMailbox();
    worker = new Worker(new URL('./programs/ServiceEcho.js', import.meta.url), { workerData: { sab, slowMs } });
    const [msg] = await once(worker, 'message');
    assert.equal(msg, 'ready');
    return new ServiceCaller(sab);
  }

  it('answers carry the value; queued calls run one at a time in order', async () => {
    const caller = await start();
    const answers = await Promise.all([
      caller.call(ServiceOp.READ, 0, 8, 0, BOUND_MS),
      caller.call(ServiceOp.WRITE, 0, 4, 77, BOUND_MS),
      caller.call(ServiceOp.READ, 1, 0x1000, 0, BOUND_MS),
    ]);
    assert.deepEqual(answers, [16, 77, 0x2001]);
  });

  it('an error answer is rebuilt as the typed error with its text; the mailbox keeps working', async () => {
    const caller = await start();
    await assert.rejects(caller.call(ServiceOp.WRITE, 0, 12, 13, BOUND_MS), {
      code: 'PV_ERR_BAD_ALIGNMENT',
      message: 'offset 12 refused',
    });
    assert.equal(await caller.call(ServiceOp.READ, 0, 2, 0, BOUND_MS), 4);
  });

  it('a stuck access times out (PV_ERR_TIMEOUT) and breaks the mailbox; stop still reaches the thread after it', async () => {
    const caller = await start(300);
    await assert.rejects(caller.call(ServiceOp.WRITE, 0, 0, 99, 30), { code: 'PV_ERR_TIMEOUT' });
    await assert.rejects(caller.call(ServiceOp.READ, 0, 0, 0, BOUND_MS), { code: 'PV_ERR_TIMEOUT' });
    const stopped = once(worker as Worker, 'message');
    assert.equal(await caller.stop(BOUND_MS), true);
    assert.equal((await stopped)[0], 'stopped');
  });

  it('break() fails queued and later calls with the given error', async () => {
    const caller = await start(300);
    const slow = caller.call(ServiceOp.WRITE, 0, 0, 99, BOUND_MS);
    const queued = caller.call(ServiceOp.READ, 0, 0, 0, BOUND_MS);
    const err = Object.assign(new Error('lease closed'), { code: 'PV_ERR_LEND_REVOKED' });
    caller.break(err);
    await assert.rejects(slow, { code: 'PV_ERR_LEND_REVOKED' });
    await assert.rejects(queued, { code: 'PV_ERR_LEND_REVOKED' });
    assert.equal(await caller.stop(BOUND_MS), true);
  });
});
