import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import {
  createMailbox,
  MAILBOX_DATA_OFFSET,
  type MailboxCall,
  MailboxClient,
  type MailboxHandler,
  MailboxServer,
  MailboxState,
  MailboxWord,
} from '../../../hypervisor-sim/link/Mailbox.js';
import { pvError } from '../../../protocol/errors.js';
import type { MailboxCallOrder, MailboxCallResult } from './helpers/MailboxWorker.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
/** Bounded waits: a bug fails the test instead of hanging it. */
const WAIT_MS = 10_000;

function requestText(c: MailboxCall): string {
  return dec.decode(c.data.slice(0, c.outLen));
}

function answer(c: MailboxCall, text: string): number {
  const b = enc.encode(text);
  c.data.set(b);
  return b.length;
}

/** A worker client and a main-thread server on one mailbox; the handler can be swapped per test. */
async function rig(first: MailboxHandler) {
  const mailbox = createMailbox(4096);
  let handler = first;
  const server = new MailboxServer(mailbox, (c) => handler(c));
  server.start();
  const worker = new Worker(new URL('./helpers/MailboxWorker.js', import.meta.url), { workerData: { mailbox } });
  const messages: unknown[] = [];
  const waiters: (() => void)[] = [];
  worker.on('message', (m) => {
    messages.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const next = async (): Promise<unknown> => {
    const deadline = Date.now() + WAIT_MS;
    while (messages.length === 0) {
      if (Date.now() > deadline) throw new Error('the worker never answered');
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return messages.shift();
  };
  return {
    words: new Int32Array(mailbox, 0, MAILBOX_DATA_OFFSET / 4),
    setHandler(h: MailboxHandler) {
      handler = h;
    },
    post(order: MailboxCallOrder) {
      worker.postMessage(order);
    },
    next,
    async call(order: MailboxCallOrder): Promise<MailboxCallResult> {
      worker.postMessage(order);
      return (await next()) as MailboxCallResult;
    },
    async stop() {
      await worker.terminate();
      await server.stop();
    },
  };
}

type Rig = Awaited<ReturnType<typeof rig>>;
let current: Rig | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

describe('mailbox layout: the offset table', () => {
  it('MailboxWord matches the documented words; ARGS ends where DATA begins', () => {
    const table: [MailboxWord, number][] = [
      [MailboxWord.STATE, 0],
      [MailboxWord.OP, 1],
      [MailboxWord.OUT_LEN, 2],
      [MailboxWord.IN_LEN, 3],
      [MailboxWord.STATUS, 4],
      [MailboxWord.SEQ, 5],
      [MailboxWord.ANS_SEQ, 6],
      [MailboxWord.MSG_LEN, 7],
      [MailboxWord.ARGS, 8],
    ];
    for (const [w, n] of table) assert.equal(w, n);
    assert.equal(MailboxWord.ARG_COUNT, 24);
    assert.equal((MailboxWord.ARGS + MailboxWord.ARG_COUNT) * 4, MAILBOX_DATA_OFFSET);
    assert.equal(MAILBOX_DATA_OFFSET, 128);
    assert.deepEqual(
      [MailboxState.IDLE, MailboxState.REQUEST, MailboxState.DONE, MailboxState.BUSY, MailboxState.ABANDONED],
      [0, 1, 2, 3, 4],
    );
  });

  it('createMailbox sizes the buffer as header + data and refuses a data area under 256 bytes', () => {
    assert.equal(createMailbox(1000).byteLength, MAILBOX_DATA_OFFSET + 1000);
    assert.throws(() => createMailbox(255), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => new MailboxClient(new SharedArrayBuffer(200)), { code: 'PV_ERR_CONFIG' });
  });

  it("the client's views sit at the documented bytes (args at 32, data at 128)", () => {
    const sab = createMailbox(256);
    const c = new MailboxClient(sab);
    c.args[0] = 0x11223344;
    c.args[MailboxWord.ARG_COUNT - 1] = 7;
    c.data[0] = 0x99;
    const words = new Int32Array(sab);
    assert.equal(words[MailboxWord.ARGS], 0x11223344);
    assert.equal(words[MailboxWord.ARGS + MailboxWord.ARG_COUNT - 1], 7);
    assert.equal(new Uint8Array(sab)[MAILBOX_DATA_OFFSET], 0x99);
    assert.equal(c.args.length, MailboxWord.ARG_COUNT);
    assert.equal(c.data.length, 256);
  });
});

describe('mailbox call/answer between a worker and the main thread', () => {
  it('a call reaches the handler with its op, args and data (at the documented words) and returns its results', async () => {
    const seen: number[][] = [];
    current = await rig(async (c) => {
      seen.push([c.op, c.outLen, c.args[0], c.args[1], current?.words[MailboxWord.SEQ] ?? -1]);
      c.args[2] = c.args[0] + c.args[1];
      return answer(c, `pong:${requestText(c)}`);
    });
    const r1 = await current.call({ op: 7, text: 'ping', args: [40, 2], timeoutMs: WAIT_MS });
    assert.deepEqual(r1, { ok: true, len: 9, text: 'pong:ping', args: [40, 2, 42, 0] });
    const r2 = await current.call({ op: 8, text: 'again', args: [1, 1], timeoutMs: WAIT_MS });
    assert.deepEqual(r2, { ok: true, len: 10, text: 'pong:again', args: [1, 1, 2, 0] });
    assert.deepEqual(seen, [
      [7, 4, 40, 2, 1],
      [8, 5, 1, 1, 2],
    ]);
    assert.equal(Atomics.load(current.words, MailboxWord.STATE), MailboxState.IDLE, 'the slot is handed back');
  });

  it('an error answer is rethrown in the worker as the typed error with the same code and message', async () => {
    current = await rig(async () => {
      throw pvError('PV_ERR_LEND_REVOKED', 'lease 4 was returned');
    });
    const r = await current.call({ op: 1, text: '', args: [], timeoutMs: WAIT_MS });
    assert.deepEqual(r, {
      ok: false,
      code: 'PV_ERR_LEND_REVOKED',
      name: 'LendingError',
      message: 'lease 4 was returned',
    });
    current.setHandler(async () => {
      throw new RangeError('not a pvio error');
    });
    const r2 = await current.call({ op: 1, text: '', args: [], timeoutMs: WAIT_MS });
    assert.deepEqual(r2, { ok: false, code: 'PV_ERR_BAD_REQUEST', name: 'RequestError', message: 'not a pvio error' });
    current.setHandler(async (c) => answer(c, 'fine'));
    assert.deepEqual(await current.call({ op: 2, text: '', args: [], timeoutMs: WAIT_MS }), {
      ok: true,
      len: 4,
      text: 'fine',
      args: [0, 0, 0, 0],
    });
  });

  it('no answer in time → PV_ERR_TIMEOUT, and the slot is usable again for the next call', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    current = await rig(async (c) => {
      if (c.op === 1) await gate;
      return answer(c, `answer-${c.op}`);
    });
    const r1 = await current.call({ op: 1, text: 'first', args: [], timeoutMs: 50 });
    assert.equal(r1.ok, false);
    assert.equal((r1 as { code: string }).code, 'PV_ERR_TIMEOUT');
    // The late answer comes while the slot is idle: nobody takes it.
    release();
    await new Promise((r) => setTimeout(r, 20));
    const r2 = await current.call({ op: 2, text: 'second', args: [], timeoutMs: WAIT_MS });
    assert.deepEqual(r2, { ok: true, len: 8, text: 'answer-2', args: [0, 0, 0, 0] });
  });

  it('while a timed-out call is still being answered the slot stays the server’s: a new call is refused, its input never overwritten', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const seen: string[] = [];
    current = await rig(async (c) => {
      seen.push(`${c.op}:${requestText(c)}:${c.args[0]}`);
      if (c.op === 1) {
        await gate;
        c.args[0] = 111;
        return answer(c, 'LATE ANSWER TO CALL 1');
      }
      return answer(c, `echo:${requestText(c)}:${c.args[0]}`);
    });
    const r1 = await current.call({ op: 1, text: 'first', args: [], timeoutMs: 50 });
    assert.equal((r1 as { code: string }).code, 'PV_ERR_TIMEOUT');
    assert.equal(
      Atomics.load(current.words, MailboxWord.STATE),
      MailboxState.ABANDONED,
      'the handler still owns the slot',
    );
    // A call now is refused at once instead of being posted into a slot the late handler writes.
    const r2 = await current.call({ op: 2, text: 'second', args: [5], timeoutMs: WAIT_MS });
    assert.equal((r2 as { code: string }).code, 'PV_ERR_TIMEOUT');
    release();
    for (let i = 0; i < WAIT_MS / 5 && Atomics.load(current.words, MailboxWord.STATE) !== MailboxState.IDLE; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    // The late answer was dropped (no DONE), and the next call reaches its handler with its own input.
    const r3 = (await current.call({ op: 3, text: 'third', args: [7], timeoutMs: WAIT_MS })) as MailboxCallResult;
    assert.deepEqual(r3, { ok: true, len: 12, text: 'echo:third:7', args: [7, 0, 0, 0] });
    assert.deepEqual(seen, ['1:first:0', '3:third:7']);
  });
});
