import assert from 'node:assert/strict';
import net from 'node:net';
import type { LinkConn, LinkReply } from '../../../hypervisor-sim/link/LinkConn.js';
import { connectLink, type LinkListener, listenLinks } from '../../../hypervisor-sim/link/LinkListener.js';
import { LendingError, pvError } from '../../../protocol/errors.js';
import {
  FrameKind,
  LINK_VERSION,
  MAX_BULK_CHUNK,
  MAX_CONTROL,
  MAX_MESSAGE_BULK,
} from '../../../protocol/link/LinkFrame.js';
import type { DmaReqMsg, HelloMsg, MmioReqMsg, MmioRspMsg } from '../../../protocol/link/LinkSchema.js';
import { LinkKind } from '../../../protocol/link/LinkSchema.js';
import { bulkFrame, controlFrame, frame, RawPeer, rawControlFrame, WAIT_MS } from './helpers/RawPeer.js';

const HELLO_A: HelloMsg = { host: 'host-a', hostId: 1, version: LINK_VERSION, role: 'host' };
const HELLO_B: HelloMsg = { host: 'host-b', hostId: 2, version: LINK_VERSION, role: 'host' };
const MiB = 1024 * 1024;

/** Everything a test opened, closed after it. */
const open: { listeners: LinkListener[]; conns: LinkConn[]; raws: RawPeer[] } = { listeners: [], conns: [], raws: [] };

afterEach(async () => {
  for (const r of open.raws.splice(0)) r.socket.destroy();
  for (const c of open.conns.splice(0)) c.close();
  await Promise.all(open.listeners.splice(0).map((l) => l.close()));
});

/** A listener on an ephemeral loopback port; `setup` runs as each link's onLink. */
async function listen(setup: (conn: LinkConn) => void = () => {}): Promise<{ port: number; links: LinkConn[] }> {
  const links: LinkConn[] = [];
  const l = await listenLinks({
    host: '127.0.0.1',
    port: 0,
    hello: HELLO_A,
    onLink: (c) => {
      links.push(c);
      setup(c);
    },
  });
  open.listeners.push(l);
  return { port: l.port, links };
}

async function connect(port: number, hello = HELLO_B): Promise<LinkConn> {
  const c = await connectLink({ host: '127.0.0.1', port, hello, timeoutMs: WAIT_MS });
  open.conns.push(c);
  return c;
}

/** Polls `cond` on a timer, bounded (fails instead of hanging). */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < WAIT_MS / 10; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never happened: ${what}`);
}

/** Polls until `sample()` stops changing for `quiet` polls in a row (a stalled sender). */
async function settles(sample: () => number, onPoll: () => void, quiet = 10): Promise<void> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < 1000 && same < quiet; i++) {
    await new Promise((r) => setTimeout(r, 10));
    onPoll();
    const v = sample();
    same = v === last ? same + 1 : 0;
    last = v;
  }
  assert.ok(same >= quiet, 'the sender never stalled');
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >>> 11)) & 0xff;
  return b;
}

describe('host link: requests, answers and notices over loopback TCP', () => {
  it('hello: each side learns the other host, and onLink runs after it', async () => {
    const srv = await listen();
    const client = await connect(srv.port);
    assert.deepEqual(client.peer, HELLO_A);
    await eventually(() => srv.links.length === 1, 'the listener saw the link');
    assert.deepEqual(srv.links[0].peer, HELLO_B);
  });

  it('a request with a 5 MiB bulk crosses in MAX_BULK_CHUNK frames and its echo comes back byte-identical', async () => {
    let seen: DmaReqMsg | undefined;
    const srv = await listen((c) =>
      c.onRequest('dma', async (body: DmaReqMsg, bulk): Promise<LinkReply> => {
        seen = body;
        return { body: {}, bulk };
      }),
    );
    const client = await connect(srv.port);
    const data = pattern(5 * MiB + 123, 7);
    const req: DmaReqMsg = { lease: 'lease-1', iova: 2 ** 40 + 4096, length: data.length, write: true };
    const rsp = await client.request('dma', req, data);
    assert.deepEqual(seen, req);
    assert.ok(rsp.bulk);
    assert.equal(Buffer.compare(Buffer.from(rsp.bulk), Buffer.from(data)), 0);
    const chunks = Math.ceil(data.length / MAX_BULK_CHUNK);
    assert.ok(client.stats().framesOut >= 2 + chunks, 'hello + control + one frame per chunk');
    assert.ok(client.stats().bytesIn > data.length);
  });

  it('many concurrent requests each get their own answer, whatever order the handlers finish in', async () => {
    const srv = await listen((c) =>
      c.onRequest('mmio', async (b: MmioReqMsg) => {
        for (let i = 0; i < b.value % 5; i++) await new Promise((r) => setImmediate(r));
        return { body: { value: b.value * 2 + b.offset } };
      }),
    );
    const client = await connect(srv.port);
    const n = 1000;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        client.request<MmioRspMsg>('mmio', { lease: 'l', bar: 0, offset: i % 7, write: false, value: i }),
      ),
    );
    for (const [i, a] of answers.entries()) assert.equal(a.body.value, i * 2 + (i % 7));
  });

  it('a handler error crosses as the same catalogue code and class; other errors are PV_ERR_BAD_REQUEST', async () => {
    const srv = await listen((c) => {
      c.onRequest('lend-open', async () => {
        throw pvError('PV_ERR_LEND_REVOKED', 'lease 9 was returned');
      });
      c.onRequest('mmio', async () => {
        throw new TypeError('handler bug');
      });
    });
    const client = await connect(srv.port);
    await assert.rejects(client.request('lend-open', { device: 'nic0', lease: '9', borrower: 'host-b' }), (err) => {
      assert.ok(err instanceof LendingError);
      assert.equal((err as LendingError).code, 'PV_ERR_LEND_REVOKED');
      assert.equal((err as Error).message, 'lease 9 was returned');
      return true;
    });
    await assert.rejects(client.request('mmio', {}), { code: 'PV_ERR_BAD_REQUEST', message: 'handler bug' });
    await assert.rejects(client.request('cm-record', {}), { code: 'PV_ERR_NOT_SUPPORTED' });
    assert.ok(client.isOpen, 'error answers do not close the link');
  });

  it('a notice reaches its handler with its bulk, in order with requests', async () => {
    const got: number[] = [];
    const srv = await listen((c) => {
      c.onNotice('lend-close', (b: { lease: string }, bulk) => got.push(Number(b.lease), bulk?.length ?? 0));
      c.onRequest('mmio', async () => ({ body: { value: got.length } }));
    });
    const client = await connect(srv.port);
    await client.notify('lend-close', { lease: '5', reason: 'done' }, new Uint8Array(300_000));
    await client.notify('lend-close', { lease: '6', reason: 'done' });
    const r = await client.request<MmioRspMsg>('mmio', {});
    assert.equal(r.body.value, 4, 'both notices were handled before the request behind them');
    assert.deepEqual(got, [5, 300_000, 6, 0]);
  });

  it('a request timeout fails that request only (PV_ERR_TIMEOUT); its late answer is dropped, the link stays up', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const srv = await listen((c) =>
      c.onRequest('mmio', async (b: MmioReqMsg) => {
        if (b.value === 1) await gate;
        return { body: { value: b.value } };
      }),
    );
    const client = await connect(srv.port);
    await assert.rejects(client.request('mmio', { value: 1 }, undefined, 50), { code: 'PV_ERR_TIMEOUT' });
    release();
    const r = await client.request<MmioRspMsg>('mmio', { value: 2 });
    assert.equal(r.body.value, 2);
    assert.ok(client.isOpen && srv.links[0].isOpen);
  });

  it('close(): pending requests fail with PV_ERR_PCIE_LINK_DOWN naming the peer; the peer sees the link end', async () => {
    const srv = await listen((c) => c.onRequest('mmio', () => new Promise<LinkReply>(() => {})));
    const client = await connect(srv.port);
    const pending = client.request('mmio', {});
    await eventually(() => srv.links.length === 1, 'link up');
    client.close('test over');
    await assert.rejects(pending, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PV_ERR_PCIE_LINK_DOWN');
      assert.match(err.message, /host-a.*test over/);
      return true;
    });
    assert.deepEqual(await client.closed, { reason: 'test over' });
    assert.equal((await srv.links[0].closed).code, 'PV_ERR_PCIE_LINK_DOWN');
    await assert.rejects(client.request('mmio', {}), { code: 'PV_ERR_PCIE_LINK_DOWN' });
  });

  it('hello: a peer with another link version or a bad host name is refused and never reaches onLink', async () => {
    const srv = await listen();
    const log = await stderrOf(async () => {
      await assert.rejects(connect(srv.port, { ...HELLO_B, version: LINK_VERSION + 1 }), {
        code: 'PV_ERR_BAD_REQUEST',
        message: /hello refused: link version 2/,
      });
      await assert.rejects(connect(srv.port, { ...HELLO_B, host: 'bad host/name' }), {
        code: 'PV_ERR_BAD_REQUEST',
        message: /hello refused: host name/,
      });
    });
    assert.ok(
      log.some((l) => /^pvio link host-a: closed: hello refused: link version 2/.test(l)),
      log.join(''),
    );
    assert.equal(srv.links.length, 0);
    await connect(srv.port);
  });
});

describe('host link: back-pressure bounds memory on both sides', () => {
  it('a peer that does not read: queuedBytes stays bounded while 50 MiB wait to go, then all of it arrives', async function () {
    this.timeout(120_000);
    const srv = await listen();
    const raw = await RawPeer.connect(srv.port, { ...HELLO_B, host: 'raw-peer' });
    open.raws.push(raw);
    await eventually(() => srv.links.length === 1, 'link up');
    const sender = srv.links[0];
    raw.socket.pause();
    const count = 50;
    let sent = 0;
    const sends = Array.from({ length: count }, (_, i) =>
      sender
        .notify('dma', { lease: String(i), iova: 0, length: MiB, write: true }, new Uint8Array(MiB).fill(i))
        .then(() => {
          sent++;
        }),
    );
    let maxSeen = 0;
    await settles(
      () => sender.stats().bytesOut,
      () => {
        maxSeen = Math.max(maxSeen, sender.stats().queuedBytes);
      },
    );
    assert.ok(sent < count, `the sender must stall (${sent} of ${count} flushed)`);
    assert.ok(maxSeen <= 4 * MiB, `queued ${maxSeen} bytes`);
    assert.ok(sender.stats().maxQueuedBytes <= 4 * MiB, `max queued ${sender.stats().maxQueuedBytes} bytes`);
    raw.socket.resume();
    await Promise.all(sends);
    await raw.waitFor(() => raw.bulkBytes === count * MiB);
    const dmas = raw.messages.filter((m) => m.msg.type === 'dma');
    assert.equal(dmas.length, count);
    dmas.forEach((m, i) => {
      assert.equal(m.msg.body.lease, String(i), 'in order');
      assert.ok(
        m.bulk?.every((b) => b === i),
        `message ${i} intact`,
      );
    });
    assert.ok(sender.stats().maxQueuedBytes <= 4 * MiB);
  });

  it('slow handlers: the receiver stops reading at 64 running requests and resumes as they finish', async () => {
    let running = 0;
    let maxRunning = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const srv = await listen((c) =>
      c.onRequest('dma', async (_b, bulk) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await gate;
        running--;
        return { body: {}, bulk: bulk?.subarray(0, 8) };
      }),
    );
    const client = await connect(srv.port);
    const n = 100;
    // Each request is bigger than one socket read, so no read completes two of them at once.
    const reqs = Array.from({ length: n }, (_, i) => client.request('dma', { length: i }, pattern(300_000, i)));
    await settles(
      () => maxRunning,
      () => {},
    );
    assert.ok(maxRunning >= 64 && maxRunning <= 65, `${maxRunning} handlers ran at once (limit 64)`);
    release();
    const answers = await Promise.all(reqs);
    for (const [i, a] of answers.entries()) assert.deepEqual([...(a.bulk ?? [])], [...pattern(8, i)]);
  });
});

/** Replaces process.stderr.write while `fn` runs; returns the lines written. */
async function stderrOf(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return lines;
}

const RAW_HELLO: HelloMsg = { host: 'raw-peer', hostId: 9, version: LINK_VERSION, role: 'host' };
const bytes = (n: number) => new Uint8Array(n).fill(0xab);
const dmaNotice = (bulkLen: number) => ({ id: 0, kind: LinkKind.NOTICE, type: 'dma' as const, body: {}, bulkLen });

/** What a malformed peer writes after the hello exchange, and the reason the link must give. */
const HOSTILE: { rule: string; write: () => Uint8Array[]; end?: boolean; reason: RegExp }[] = [
  {
    rule: 'bad magic',
    write: () => {
      const f = controlFrame(dmaNotice(0));
      f[0] = 0x00;
      return [f];
    },
    reason: /bad magic/,
  },
  {
    rule: 'unknown frame kind',
    write: () => [frame({ kind: 9 as FrameKind, flags: 0, stream: 1, length: 4 }, bytes(4))],
    reason: /unknown frame kind 9/,
  },
  {
    rule: 'control length over MAX_CONTROL (refused before any payload is buffered)',
    write: () => [frame({ kind: FrameKind.CONTROL, flags: 0, stream: 1, length: MAX_CONTROL + 1 }, bytes(0))],
    reason: /control frame length/,
  },
  {
    rule: 'bulk frame without a control frame',
    write: () => [bulkFrame(5, bytes(10), true)],
    reason: /without a control/,
  },
  {
    rule: 'bulk_len over MAX_MESSAGE_BULK',
    write: () => [rawControlFrame({ id: 0, kind: LinkKind.NOTICE, type: 'dma', bulkLen: MAX_MESSAGE_BULK + 1 })],
    reason: /bulk_len/,
  },
  {
    rule: 'bulk frame of another stream',
    write: () => [controlFrame(dmaNotice(100), 3), bulkFrame(4, bytes(100), true)],
    reason: /stream 4 inside the bulk of stream 3/,
  },
  {
    rule: 'bulk frames beyond bulk_len',
    write: () => [controlFrame(dmaNotice(100), 3), bulkFrame(3, bytes(60), false), bulkFrame(3, bytes(60), true)],
    reason: /exceed bulk_len/,
  },
  {
    rule: 'LAST before bulk_len is reached',
    write: () => [controlFrame(dmaNotice(100), 3), bulkFrame(3, bytes(60), true)],
    reason: /LAST bulk frame ends at 60/,
  },
  {
    rule: 'control frame inside a bulk',
    write: () => [controlFrame(dmaNotice(100), 3), bulkFrame(3, bytes(60), false), controlFrame(dmaNotice(0), 4)],
    reason: /control frame inside the bulk/,
  },
  {
    rule: 'control payload that is not a LinkMessage',
    write: () => [frame({ kind: FrameKind.CONTROL, flags: 0, stream: 1, length: 3 }, new Uint8Array([0x22, 0x7f, 1]))],
    reason: /does not decode/,
  },
  {
    rule: 'unknown message type',
    write: () => [rawControlFrame({ id: 0, kind: LinkKind.NOTICE, type: 'reboot', bulkLen: 0 })],
    reason: /unknown type "reboot"/,
  },
  {
    rule: 'response to an unknown request id',
    write: () => [controlFrame({ id: 777, kind: LinkKind.RESPONSE, type: 'mmio', body: {}, bulkLen: 0 })],
    reason: /unknown request id 777/,
  },
  {
    rule: 'truncated frame, then the socket ends',
    write: () => [controlFrame(dmaNotice(0)).subarray(0, 20)],
    end: true,
    reason: /truncated: stream ended inside a frame/,
  },
  {
    rule: 'truncated bulk, then the socket ends',
    write: () => [controlFrame(dmaNotice(1000), 2), bulkFrame(2, bytes(500), false)],
    end: true,
    reason: /truncated: stream ended inside a bulk \(500 of 1000/,
  },
];

describe('host link: a malformed peer closes its own link (PV_ERR_LINK_FRAME), never the process or the listener', () => {
  for (const h of HOSTILE) {
    it(`${h.rule} → link closed, pending requests PV_ERR_PCIE_LINK_DOWN, listener still serves`, async () => {
      const pending: Promise<unknown>[] = [];
      const srv = await listen((c) => {
        c.onRequest('mmio', async () => ({ body: { value: 42 } }));
        if (c.peer?.host === 'raw-peer') pending.push(c.request('mmio', { value: 1 }));
      });
      const raw = await RawPeer.connect(srv.port, RAW_HELLO);
      open.raws.push(raw);
      await raw.until((m) => m.msg.type === 'mmio');
      const conn = srv.links[0];
      const log = await stderrOf(async () => {
        for (const b of h.write()) raw.socket.write(b);
        if (h.end) raw.socket.end();
        const closed = await conn.closed;
        assert.equal(closed.code, 'PV_ERR_LINK_FRAME');
        assert.match(closed.reason, h.reason);
      });
      assert.equal(log.length, 1, `one log line: ${log.join('')}`);
      assert.match(log[0], /^pvio link raw-peer: closed: /);
      await assert.rejects(pending[0], (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PV_ERR_PCIE_LINK_DOWN');
        assert.match(err.message, /raw-peer/);
        assert.match(err.message, h.reason);
        return true;
      });
      assert.equal(conn.isOpen, false);
      const good = await connect(srv.port);
      assert.equal((await good.request<MmioRspMsg>('mmio', {})).body.value, 42);
    });
  }

  it('a first message that is not a hello request closes the link before onLink', async () => {
    const srv = await listen();
    const s = net.connect({ host: '127.0.0.1', port: srv.port });
    s.resume(); // read (and drop) the listener's hello so the socket sees its end
    const log = await stderrOf(async () => {
      s.write(controlFrame({ id: 1, kind: LinkKind.REQUEST, type: 'mmio', body: {}, bulkLen: 0 }));
      await new Promise((r) => s.once('close', r));
    });
    assert.match(log.join(''), /closed: first message is a mmio request, not a hello request/);
    assert.equal(srv.links.length, 0);
    await connect(srv.port);
    await eventually(() => srv.links.length === 1, 'a good peer still gets through');
  });
});
