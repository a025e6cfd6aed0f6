/**
 * A hostile peer on the wire: raw test sockets connect to a provider's NIC port and send
 * malformed or truncated frames. Each such connection is closed (and counted) by the NIC thread;
 * nothing else is disturbed — the helper keeps serving and a real QP pair keeps moving data. A
 * well-formed request the NIC cannot accept is answered with a NAK instead, on an open connection.
 */

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { TcpStat } from '../../../../frontend/verbs/tcp/Layout.js';
import {
  decodeHeader,
  emptyHeader,
  encodeHeader,
  FrameFlag,
  type FrameHeader,
  HEADER_SIZE,
  MAX_FRAME_PAYLOAD,
  NakCode,
  WIRE_VERSION,
  WireOp,
} from '../../../../frontend/verbs/tcp/Wire.js';
import { Access, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { connectPair, TcpPeer } from './helpers/TcpPeer.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;

function frame(fields: Partial<FrameHeader>, payload = 0): Buffer {
  const h = { ...emptyHeader(), flags: FrameFlag.BOTH, ...fields };
  const buf = Buffer.alloc(HEADER_SIZE + payload);
  encodeHeader(buf, 0, h);
  return buf;
}

const hello = (port = 4242, version = WIRE_VERSION): Buffer =>
  frame({ opcode: WireOp.HELLO, aux8: version, aux32: port });

/** A raw connection that records what it receives and when it closes (bounded waits). */
class RawPeer {
  readonly sock: Socket;
  readonly received: Buffer[] = [];
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.sock = connect({ port, host: '127.0.0.1' });
    this.sock.on('data', (d) => this.received.push(d));
    this.sock.on('error', () => {});
    this.closed = new Promise((resolve) => this.sock.once('close', () => resolve()));
  }

  /** Resolves when the NIC closed the connection; rejects after `ms`. */
  async waitClosed(ms = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the NIC did not close the connection')), ms);
    });
    try {
      await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with the first `n` bytes received; rejects after `ms`. */
  async bytes(n: number, ms = 5000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    for (;;) {
      const all = Buffer.concat(this.received);
      if (all.length >= n) return all.subarray(0, n);
      if (Date.now() > deadline) throw new Error(`only ${all.length} of ${n} bytes arrived`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

describe('tcp wire: a malformed or truncated frame closes that connection only', function () {
  this.timeout(60_000);
  let a: TcpPeer;
  let b: TcpPeer;

  before(async () => {
    [a, b] = await Promise.all([TcpPeer.start('A', 8 * 1024 * 1024), TcpPeer.start('B', 8 * 1024 * 1024)]);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('the NIC greets every connection with a HELLO naming its port', async () => {
    const raw = new RawPeer(a.port);
    const h = emptyHeader();
    assert.equal(decodeHeader(await raw.bytes(HEADER_SIZE), 0, h), undefined);
    assert.deepEqual([h.opcode, h.aux8, h.aux32], [WireOp.HELLO, WIRE_VERSION, a.port]);
    raw.sock.destroy();
  });

  const CASES: [string, () => Buffer[]][] = [
    ['garbage (bad magic)', () => [Buffer.alloc(HEADER_SIZE, 0xa5)]],
    ['a request before HELLO', () => [frame({ opcode: WireOp.WRITE, dstQpn: 1 })]],
    ['a HELLO of another wire version', () => [hello(4242, WIRE_VERSION + 1)]],
    ['a second HELLO', () => [hello(), hello()]],
    [
      'a payload larger than a frame may carry',
      () => [hello(), frame({ opcode: WireOp.WRITE, length: MAX_FRAME_PAYLOAD + 1, msgLen: MAX_FRAME_PAYLOAD + 1 }, 0)],
    ],
    [
      'a payload running past the message',
      () => [hello(), frame({ opcode: WireOp.SEND, length: 10, msgLen: 5, dstQpn: 1 }, 10)],
    ],
    ['an unknown opcode', () => [hello(), frame({ opcode: 42 })]],
    ['a header cut in the middle, then end of stream', () => [hello(), frame({ opcode: WireOp.ACK }).subarray(0, 20)]],
    [
      'a payload cut short, then end of stream',
      () => [hello(), frame({ opcode: WireOp.WRITE, length: 100, msgLen: 100 }, 10).subarray(0, HEADER_SIZE + 10)],
    ],
  ];

  for (const [what, build] of CASES) {
    it(`${what}: the connection is closed and counted, the NIC keeps running`, async () => {
      const before = (await a.stats())[TcpStat.BAD_FRAMES];
      const raw = new RawPeer(a.port);
      for (const piece of build()) raw.sock.write(piece);
      raw.sock.end();
      await raw.waitClosed();
      // The count is published after the NIC handled the close; wait for it (bounded).
      let after = (await a.stats())[TcpStat.BAD_FRAMES];
      for (let i = 0; i < 200 && after === before; i++) after = (await a.stats())[TcpStat.BAD_FRAMES];
      assert.equal(after, before + 1);
    });
  }

  it('a well-formed request to a QP that cannot take it gets NAK NOT_READY; the connection stays open', async () => {
    const raw = new RawPeer(a.port);
    raw.sock.write(hello(4343));
    raw.sock.write(frame({ opcode: WireOp.WRITE, srcQpn: 5, dstQpn: 200, psn: 7, epoch: 3, length: 4, msgLen: 4 }, 4));
    const got = await raw.bytes(2 * HEADER_SIZE);
    const nak = emptyHeader();
    assert.equal(decodeHeader(got, HEADER_SIZE, nak), undefined);
    assert.deepEqual(
      [nak.opcode, nak.status, nak.srcQpn, nak.dstQpn, nak.psn, nak.epoch],
      [WireOp.NAK, NakCode.NOT_READY, 200, 5, 7, 3],
    );
    assert.equal(raw.sock.destroyed, false);
    raw.sock.destroy();
  });

  it('after all that, a real QP pair still moves data through the same NIC', async () => {
    const ea = await a.setup({ access: ALL });
    const eb = await b.setup({ access: ALL });
    await connectPair(a, ea, b, eb, ALL);
    await a.fill(ea.buf, 5000, 3);
    await a.post(ea.qp, [
      {
        wrId: 1,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: ea.buf, length: 5000, lkey: ea.lkey }],
        remoteAddr: eb.buf,
        rkey: eb.rkey,
      },
    ]);
    assert.equal((await a.poll(ea.sendCq, 1))[0]?.status, WcStatus.SUCCESS);
    assert.equal(await b.verify(eb.buf, 5000, 3), -1);
    assert.ok(
      a.logs.some((l) => l.includes('bad frame')),
      'violations are logged',
    );
  });
});
