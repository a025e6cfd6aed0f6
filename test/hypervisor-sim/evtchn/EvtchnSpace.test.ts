import assert from 'node:assert/strict';
import {
  BindBits,
  bindDom,
  bindPort,
  bindWord,
  DomainField,
  DomainWord,
  EVTCHN_MAGIC,
  EvtchnHeader,
  EvtchnSpace,
  EvtchnState,
  MAX_EVTCHN_DOMAINS,
  MAX_PORTS_PER_DOMAIN,
  PortField,
  PortWord,
} from '../../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { DOMID_MAX, type DomId } from '../../../protocol/Types.js';

/** [field, byte offset, size, word index (undefined for padding)]. */
type FieldRow = readonly [string, number, number, number | undefined];

const HEADER_FIELDS: readonly FieldRow[] = [
  ['MAGIC', EvtchnHeader.MAGIC, 4, EvtchnHeader.MAGIC / 4],
  ['MAX_DOMAINS', EvtchnHeader.MAX_DOMAINS, 4, EvtchnHeader.MAX_DOMAINS / 4],
  ['PORTS_PER_DOMAIN', EvtchnHeader.PORTS_PER_DOMAIN, 4, EvtchnHeader.PORTS_PER_DOMAIN / 4],
  ['pad', 12, EvtchnHeader.SIZE - 12, undefined],
];

const DOMAIN_FIELDS: readonly FieldRow[] = [
  ['WAKE', DomainField.WAKE, 4, DomainWord.WAKE],
  ['WAITERS', DomainField.WAITERS, 4, DomainWord.WAITERS],
  ['ALIVE', DomainField.ALIVE, 4, DomainWord.ALIVE],
  ['pad', 12, DomainField.PORTS - 12, undefined],
];

const PORT_FIELDS: readonly FieldRow[] = [
  ['BIND', PortField.BIND, 4, PortWord.BIND],
  ['PENDING', PortField.PENDING, 4, PortWord.PENDING],
  ['MASK', PortField.MASK, 4, PortWord.MASK],
  ['reserved', PortField.RESERVED, 4, undefined],
];

/** Checks one table: inside `size`, no overlap, every byte owned, Atomics words Int32-aligned. */
function checkTable(table: readonly FieldRow[], size: number): void {
  const owner = new Array<string | undefined>(size).fill(undefined);
  for (const [name, offset, len, word] of table) {
    assert.ok(offset >= 0 && offset + len <= size, `${name} lies inside its ${size}-byte block`);
    for (let b = offset; b < offset + len; b++) {
      assert.equal(owner[b], undefined, `${name} overlaps ${owner[b]} at byte ${b}`);
      owner[b] = name;
    }
    if (word !== undefined) {
      assert.equal(offset % Int32Array.BYTES_PER_ELEMENT, 0, `${name} is aligned for Atomics on Int32`);
      assert.equal(word * 4, offset, `${name}'s word index is its byte offset / 4`);
    }
  }
  assert.ok(
    owner.every((o) => o !== undefined),
    'every byte of the block belongs to a field',
  );
}

describe('evtchn space layout: offset tables', () => {
  it('header fields do not overlap and fill 64 bytes (one line)', () => {
    checkTable(HEADER_FIELDS, EvtchnHeader.SIZE);
    assert.equal(EvtchnHeader.SIZE, 64);
  });

  it('domain fields do not overlap and the port array starts on the next 64-byte line', () => {
    checkTable(DOMAIN_FIELDS, DomainField.PORTS);
    assert.equal(DomainField.PORTS, 64);
    assert.equal(DomainWord.PORTS * 4, DomainField.PORTS);
  });

  it('port fields do not overlap and a port record is 16 bytes', () => {
    checkTable(PORT_FIELDS, PortField.SIZE);
    assert.equal(PortField.SIZE, 16);
    assert.equal(PortWord.SIZE * 4, PortField.SIZE);
  });

  it('total size is 64 + maxDomains × (64 + portsPerDomain × 16)', () => {
    for (const cfg of [
      { maxDomains: 1, portsPerDomain: 2 },
      { maxDomains: 3, portsPerDomain: 8 },
      { maxDomains: 32, portsPerDomain: 256 },
    ]) {
      const expected = 64 + cfg.maxDomains * (64 + cfg.portsPerDomain * 16);
      assert.equal(EvtchnSpace.bytesFor(cfg), expected);
      assert.equal(EvtchnSpace.create(cfg).buffer.byteLength, expected);
    }
  });

  it('every domain and port word is distinct, inside the buffer, and the last port ends the buffer', () => {
    const cfg = { maxDomains: 3, portsPerDomain: 5 };
    const space = EvtchnSpace.create(cfg);
    const seen = new Map<number, string>();
    const claim = (index: number, what: string) => {
      assert.ok(index >= EvtchnHeader.SIZE / 4 && index < space.words.length, `${what} lies inside the buffer`);
      assert.equal(seen.get(index), undefined, `${what} shares word ${index} with ${seen.get(index)}`);
      seen.set(index, what);
    };
    for (let d = 0; d < cfg.maxDomains; d++) {
      const base = space.domainIndex(d);
      claim(base + DomainWord.WAKE, `dom${d}.WAKE`);
      claim(base + DomainWord.WAITERS, `dom${d}.WAITERS`);
      claim(base + DomainWord.ALIVE, `dom${d}.ALIVE`);
      for (let p = 0; p < cfg.portsPerDomain; p++) {
        const i = space.portIndex(d, p);
        assert.equal(i % PortWord.SIZE, 0, 'port records are 16-byte aligned');
        for (const [name, , , word] of PORT_FIELDS) {
          if (word !== undefined) claim(i + word, `dom${d}.port${p}.${name}`);
        }
      }
    }
    const last = space.portIndex(cfg.maxDomains - 1, cfg.portsPerDomain - 1) + PortWord.SIZE;
    assert.equal(last, space.words.length, 'no slack after the last port');
  });
});

describe('evtchn space layout: BIND word', () => {
  it('state, domid and port bit fields do not overlap and stay below the sign bit', () => {
    const state = BindBits.STATE_MASK;
    const dom = BindBits.DOM_MASK << BindBits.DOM_SHIFT;
    const port = BindBits.PORT_MASK << BindBits.PORT_SHIFT;
    assert.equal(state & dom, 0);
    assert.equal(state & port, 0);
    assert.equal(dom & port, 0);
    assert.ok((state | dom | port) >= 0, 'a BIND word is a non-negative Int32');
    assert.ok(BindBits.DOM_MASK >= DOMID_MAX && BindBits.DOM_MASK + 1 >= MAX_EVTCHN_DOMAINS);
    assert.equal(BindBits.PORT_MASK + 1, MAX_PORTS_PER_DOMAIN);
  });

  it('packs and unpacks the largest domid and port of every state', () => {
    for (const s of [EvtchnState.CLOSED, EvtchnState.UNBOUND, EvtchnState.INTERDOMAIN, EvtchnState.RESERVED]) {
      for (const [d, p] of [
        [0, 0],
        [DOMID_MAX, MAX_PORTS_PER_DOMAIN - 1],
        [1, 2],
      ]) {
        const w = bindWord(s, d, p);
        assert.equal(w & BindBits.STATE_MASK, s);
        assert.equal(bindDom(w), d);
        assert.equal(bindPort(w), p);
        assert.equal(new Int32Array([w])[0], w, 'survives a round trip through Int32');
      }
    }
    assert.equal(bindWord(EvtchnState.CLOSED, 0, 0), 0, 'a zeroed buffer is all ports closed');
  });
});

describe('evtchn space: create, attach and domain life', () => {
  it('rejects configurations the BIND word or port 0 rule cannot hold', () => {
    for (const cfg of [
      { maxDomains: 0, portsPerDomain: 8 },
      { maxDomains: MAX_EVTCHN_DOMAINS + 1, portsPerDomain: 8 },
      { maxDomains: 2, portsPerDomain: 1 },
      { maxDomains: 2, portsPerDomain: MAX_PORTS_PER_DOMAIN + 1 },
      { maxDomains: 2.5, portsPerDomain: 8 },
    ]) {
      assert.throws(() => EvtchnSpace.create(cfg), { code: 'PV_ERR_CONFIG' }, JSON.stringify(cfg));
    }
  });

  it('attaches to a created space and sees the same words', () => {
    const cfg = { maxDomains: 2, portsPerDomain: 4 };
    const a = EvtchnSpace.create(cfg);
    const b = new EvtchnSpace(a.buffer, a.config);
    assert.equal(Atomics.load(b.words, EvtchnHeader.MAGIC / 4), EVTCHN_MAGIC);
    a.resetDomain(1 as DomId);
    assert.equal(b.isAlive(1), true);
  });

  it('refuses to attach with another config or to a buffer that is not a space', () => {
    const a = EvtchnSpace.create({ maxDomains: 2, portsPerDomain: 4 });
    assert.throws(() => new EvtchnSpace(a.buffer, { maxDomains: 1, portsPerDomain: 4 }), { code: 'PV_ERR_CONFIG' });
    const blank = new SharedArrayBuffer(a.buffer.byteLength);
    assert.throws(() => new EvtchnSpace(blank, a.config), { code: 'PV_ERR_CONFIG' });
  });

  it('domains start dead; resetDomain marks alive, closeDomain marks dead', () => {
    const space = EvtchnSpace.create({ maxDomains: 2, portsPerDomain: 4 });
    assert.equal(space.isAlive(0), false);
    space.resetDomain(0 as DomId);
    assert.equal(space.isAlive(0), true);
    assert.equal(space.closeDomain(0 as DomId), 0, 'no port was open');
    assert.equal(space.isAlive(0), false);
    assert.throws(() => space.isAlive(2), { code: 'PV_ERR_NO_DOMAIN' });
  });
});
