/**
 * RDMA between NICs of two hosts (issue 6) without TCP: two Hosts in one process, wire mailboxes
 * on, each host's mailboxes served by `serveWireMailbox` whose `send` hands the request to the
 * OTHER host's WireResponder — every byte crosses threads (guest worker → mailbox → main thread →
 * peer NIC) and the real responder runs. Two native guests (programs/WireGuest.ts) run the cases.
 */

import assert from 'node:assert/strict';
import {
  decodeWireArgs,
  encodeWireArgs,
  serveWireMailbox,
  WireArg,
  type WireSend,
} from '../../../../hypervisor-sim/devices/rnic/WireMailbox.js';
import { WireResponder } from '../../../../hypervisor-sim/devices/rnic/WireResponder.js';
import { Host } from '../../../../hypervisor-sim/domain/Host.js';
import { type MailboxServer, MailboxWord } from '../../../../hypervisor-sim/link/Mailbox.js';
import { runScenario } from '../../../../hypervisor-sim/scenario/Scenario.js';
import { validateScenario } from '../../../../hypervisor-sim/scenario/ScenarioSpec.js';
import { pvError } from '../../../../protocol/errors.js';
import { emptyWireReq, type WireReqMsg } from '../../../../protocol/link/LinkSchema.js';
import { Board, CASE_NAMES } from './programs/WireGuest.js';

const PROGRAM = new URL('./programs/WireGuest.js', import.meta.url);

describe('RemoteWire: the mailbox arguments of a wire call', () => {
  it('every argument of the offset table fits the mailbox argument words', () => {
    assert.equal(WireArg.OP, 0);
    assert.equal(WireArg.SEND_FLAGS, 10);
    assert.equal(WireArg.STATUS, 11);
    assert.equal(WireArg.RNR, 12);
    assert.equal(WireArg.RNR_TIMER_US, 13);
    assert.ok(WireArg.RNR_TIMER_US < MailboxWord.ARG_COUNT);
  });

  it('a request survives encode/decode, u32 fields and 53-bit addresses included', () => {
    const a = new Int32Array(MailboxWord.ARG_COUNT);
    const req: WireReqMsg = {
      op: 4,
      srcPort: 0xffff_ff01,
      srcQpn: 7,
      dstPort: 101,
      dstQpn: 0x8000_0000,
      rkey: 0xffff_ffff,
      remoteAddr: 2 ** 53 - 1,
      imm: 0xdead_beef,
      length: 16 << 20,
      sendFlags: 2,
    };
    encodeWireArgs(a, req);
    assert.deepEqual(decodeWireArgs(a), req);
  });

  it('an address that is not a safe integer ≥ 0 decodes as -1 (as a WQE decodes one)', () => {
    const a = new Int32Array(MailboxWord.ARG_COUNT);
    for (const bad of [Number.NaN, -5, 2 ** 53, 1.5, Number.POSITIVE_INFINITY]) {
      encodeWireArgs(a, { ...emptyWireReq(), remoteAddr: bad });
      assert.equal(decodeWireArgs(a).remoteAddr, -1, String(bad));
    }
  });
});

describe('RemoteWire: RDMA between native guests on two hosts over wire mailboxes', function () {
  this.timeout(180_000);
  const results: Record<'a' | 'b', Record<string, string>> = { a: {}, b: {} };
  const calls = { a: 0, b: 0 };
  const mailboxes: number[] = [];
  let countersA: Record<string, number> = {};
  let countersB: Record<string, number> = {};

  before(async () => {
    const boardSab = new SharedArrayBuffer(Board.WORDS * 4);
    const board = new Int32Array(boardSab);
    const servers: MailboxServer[] = [];
    const responders: { a?: WireResponder; b?: WireResponder } = {};
    // What a host process's link does: carry the request to the peer host (here: call its
    // responder), the payload copied off the mailbox as a socket would, at an odd offset.
    const link =
      (from: 'a' | 'b'): WireSend =>
      async (req, payload) => {
        calls[from]++;
        // ORDERING: seq-cst load of the flag the guest stores before its WR.
        if (Atomics.load(board, Board.LINK_DOWN) === 1) throw pvError('PV_ERR_PCIE_LINK_DOWN', 'host link is down');
        const peer = from === 'a' ? responders.b : responders.a;
        if (peer === undefined) throw pvError('PV_ERR_PCIE_LINK_DOWN', 'no peer host');
        let copy: Uint8Array | undefined;
        if (payload !== undefined) {
          copy = new Uint8Array(payload.length + 1).subarray(1);
          copy.set(payload);
        }
        return peer.handle(req, copy);
      };
    const hostA = new Host({
      name: 'hostA',
      nics: [{ name: 'nic0', portId: 1 }],
      wireMailboxes: true,
      onWireMailbox: (domid, sab) => {
        mailboxes.push(domid);
        servers.push(serveWireMailbox(sab, link('a')));
      },
    });
    const hostB = new Host({
      name: 'hostB',
      nics: [{ name: 'nic0', portId: 101 }],
      wireMailboxes: true,
      onWireMailbox: (domid, sab) => {
        mailboxes.push(domid);
        servers.push(serveWireMailbox(sab, link('b')));
      },
    });
    responders.a = new WireResponder(hostA);
    responders.b = new WireResponder(hostB);
    try {
      const spec = (role: 'a' | 'b') => ({
        name: role,
        program: PROGRAM,
        args: { role, board: boardSab },
        memoryBytes: 48 << 20,
        pci: [{ device: 'nic0', iommu: 'bypass' as const }],
      });
      const da = hostA.createDomain(spec('a'));
      const db = hostB.createDomain(spec('b'));
      const [ra, rb] = await Promise.all([da.result, db.result]);
      results.a = (ra.value as { cases: Record<string, string> }).cases;
      results.b = (rb.value as { cases: Record<string, string> }).cases;
      countersA = hostA.devices.metrics().nic0;
      countersB = hostB.devices.metrics().nic0;
    } finally {
      for (const s of servers) await s.stop();
      await hostA.shutdown();
      await hostB.shutdown();
    }
  });

  it('each host gave its NIC-owning domain a wire mailbox, and the requests crossed them', () => {
    assert.deepEqual(mailboxes, [0, 0]);
    assert.ok(calls.a > 0, 'host A sent wire requests');
    // b only responds: its NIC never had a request for a port of another host.
    assert.equal(calls.b, 0);
  });

  it('the requester counts its RNR retries (0 + 2) and bytes; the responder host counts none for it', () => {
    assert.equal(countersA.rnrRetries, 2);
    assert.equal(countersB.rnrRetries, 0);
    // WRITE 300001 + inline 40, READ 200003, SEND 5000, WRITE_WITH_IMM 1000, WRITE 4096.
    assert.equal(countersA.bytes, 300_001 + 40 + 200_003 + 5000 + 1000 + 4096);
    assert.equal(countersB.bytes, 0);
  });

  for (const name of CASE_NAMES) {
    it(name, () => {
      for (const g of ['a', 'b'] as const) {
        assert.equal(
          results[g][name],
          'ok',
          `guest ${g}: ${results[g][name] ?? 'not reached (an earlier case failed)'}`,
        );
      }
    });
  }
});

describe('RemoteWire: scenario cells whose peer guest runs in another host', function () {
  this.timeout(180_000);

  it('wire mailboxes need the inline engine: with the dedicated device thread they are PV_ERR_CONFIG', () => {
    assert.throws(
      () => new Host({ nics: [{ name: 'nic0' }], deviceEngine: 'dedicated', wireMailboxes: true }),
      (err: Error & { code?: string }) => err.code === 'PV_ERR_CONFIG' && /inline/.test(err.message),
    );
  });

  it('host.portBase must be an integer ≥ 1 and leave every NIC a valid port id', () => {
    const guests = [{ name: 'g', program: PROGRAM }];
    for (const portBase of [0, 1.5, 0xffff_ff01, 0x7fff_ffff]) {
      assert.throws(
        () => validateScenario({ host: { nics: 2, portBase }, guests }),
        (err: Error & { code?: string }) => err.code === 'PV_ERR_CONFIG' && /host\.portBase/.test(err.message),
        String(portBase),
      );
    }
    validateScenario({ host: { nics: 2, portBase: 101 }, guests });
  });

  it('two runScenario hosts (portBase 1 and 101, wire mailboxes through hostOptions) run the cases together', async () => {
    const boardSab = new SharedArrayBuffer(Board.WORDS * 4);
    const responders: Record<string, WireResponder> = {};
    const servers: MailboxServer[] = [];
    const board = new Int32Array(boardSab);
    const run = (role: 'a' | 'b', portBase: number, peer: string) =>
      runScenario(
        {
          host: { name: role, nics: 1, portBase },
          guests: [
            {
              name: role,
              program: PROGRAM,
              memoryMiB: 48,
              args: { board: boardSab, role },
              devices: [{ device: 'nic0', transport: 'native' }],
            },
          ],
        },
        {
          timeoutMs: 120_000,
          hostOptions: {
            wireMailboxes: true,
            onWireMailbox: (_domid, sab) =>
              servers.push(
                serveWireMailbox(sab, async (req, payload) => {
                  const r = responders[peer];
                  // ORDERING: seq-cst load of the flag the link-down case stores.
                  if (r === undefined || Atomics.load(board, Board.LINK_DOWN) === 1)
                    throw pvError('PV_ERR_PCIE_LINK_DOWN', `no host ${peer}`);
                  return r.handle(req, payload);
                }),
              ),
          },
          onHost: (host) => {
            responders[role] = new WireResponder(host);
          },
        },
      );
    try {
      const [ra, rb] = await Promise.all([run('a', 1, 'b'), run('b', 101, 'a')]);
      for (const r of [ra.guests.a, rb.guests.b]) {
        const cases = (r.value as { cases: Record<string, string> }).cases;
        for (const name of CASE_NAMES) assert.equal(cases[name], 'ok', `${name}: ${cases[name]}`);
      }
      // The guests saw the port ids the bases gave their NICs.
      assert.deepEqual([board[Board.PORT_A], board[Board.PORT_B]], [1, 101]);
    } finally {
      for (const s of servers) await s.stop();
    }
  });
});
