import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { checkHello, LinkCodec, MAX_LINK_STRING } from '../../../hypervisor-sim/link/LinkCodec.js';
import { LINK_VERSION, MAX_MESSAGE_BULK } from '../../../protocol/link/LinkFrame.js';
import { BODY_OF, LINK_PROTO, LinkKind, type LinkType, RESPONSE_BODY_OF } from '../../../protocol/link/LinkSchema.js';

const codec = new LinkCodec();
const root = protobuf.parse(LINK_PROTO).root;
const Envelope = root.lookupType('pvio.link.LinkMessage');

/** Raw bytes of a message, past our encoder's checks (what a hostile peer can send). */
function raw(typeName: string, fields: Record<string, unknown>): Uint8Array {
  const t = root.lookupType(`pvio.link.${typeName}`);
  return t.encode(t.fromObject(fields)).finish();
}

function envelope(fields: Record<string, unknown>): Uint8Array {
  return raw('LinkMessage', { id: 1, kind: LinkKind.REQUEST, type: 'dma', ...fields });
}

const SAMPLES: Record<string, Record<string, unknown>> = {
  Empty: {},
  Hello: { host: 'h1', hostId: 3, version: 1, role: 'host' },
  WireReq: {
    op: 1,
    srcPort: 2,
    srcQpn: 3,
    dstPort: 4,
    dstQpn: 5,
    rkey: 0xffffffff,
    remoteAddr: 2 ** 53 - 1,
    imm: 7,
    length: 8,
    sendFlags: 9,
  },
  WireRsp: { status: 1, rnr: true, rnrTimerUs: 655 },
  MmioReq: { lease: 'l', bar: 2, offset: 0x40, write: true, value: 0xdeadbeef },
  MmioRsp: { value: 12 },
  DmaReq: { lease: 'l', iova: 2 ** 40, length: 4096, write: false },
  LendOpen: { device: 'nic0', lease: 'l', borrower: 'b' },
  LendOpenRsp: { kind: 'rnic', barSize: 65536, bdf: '0000:01:00.0' },
  LendClose: { lease: 'l', reason: 'r' },
  CmRecord: { toDomid: 1, fromDomid: 2, name: 'n', record: '{}' },
  JsonMsg: { json: JSON.stringify({ big: 'x'.repeat(10_000) }) },
};

describe('link codec: round trips every body of the schema', () => {
  for (const type of Object.keys(BODY_OF) as LinkType[]) {
    for (const kind of [LinkKind.REQUEST, LinkKind.RESPONSE, LinkKind.NOTICE]) {
      const bodyName = kind === LinkKind.RESPONSE ? RESPONSE_BODY_OF[type] : BODY_OF[type];
      it(`${type} ${kind === LinkKind.RESPONSE ? 'response' : 'request/notice'} (${bodyName})`, () => {
        const body = SAMPLES[bodyName];
        const m = codec.decode(codec.encode({ id: 42, kind, type, body, bulkLen: 5 }));
        assert.deepEqual(m, { id: 42, kind, type, body, bulkLen: 5, errorCode: '', errorMessage: '' });
      });
    }
  }

  it('absent fields decode to their defaults: every field present, typed', () => {
    const m = codec.decode(codec.encode({ id: 1, kind: LinkKind.REQUEST, type: 'wire', bulkLen: 0 }));
    assert.deepEqual(m.body, {
      op: 0,
      srcPort: 0,
      srcQpn: 0,
      dstPort: 0,
      dstQpn: 0,
      rkey: 0,
      remoteAddr: 0,
      imm: 0,
      length: 0,
      sendFlags: 0,
    });
  });

  it('an error response carries its code and message', () => {
    const m = codec.decode(
      codec.encode({
        id: 3,
        kind: LinkKind.RESPONSE,
        type: 'mmio',
        bulkLen: 0,
        errorCode: 'PV_ERR_TIMEOUT',
        errorMessage: 'slow',
      }),
    );
    assert.equal(m.errorCode, 'PV_ERR_TIMEOUT');
    assert.equal(m.errorMessage, 'slow');
  });
});

describe('link codec: hostile bytes become normalized values or PV_ERR_LINK_FRAME', () => {
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, 2 ** 64]) {
    it(`a double address ${bad} decodes as -1 (refused by every range check), and is not encoded`, () => {
      const m = codec.decode(envelope({ type: 'dma', body: raw('DmaReq', { iova: bad }) }));
      assert.equal(m.body.iova, -1);
      assert.throws(
        () => codec.encode({ id: 1, kind: LinkKind.REQUEST, type: 'dma', body: { iova: bad }, bulkLen: 0 }),
        {
          code: 'PV_ERR_INVALID_ARG',
        },
      );
    });
  }

  it('a u32 sent as a 64-bit varint is cut to u32, never a larger number', () => {
    // field 3 (offset), varint 2^35 + 5
    const body = new Uint8Array([0x18, 0x85, 0x80, 0x80, 0x80, 0x80, 0x01]);
    const m = codec.decode(envelope({ type: 'mmio', body }));
    assert.equal(m.body.offset, 5);
  });

  it(`strings over ${MAX_LINK_STRING} bytes are refused on decode and on encode; JsonMsg.json may be longer`, () => {
    const long = 'é'.repeat(MAX_LINK_STRING / 2 + 1);
    assert.throws(() => codec.decode(envelope({ type: 'lend-open', body: raw('LendOpen', { device: long }) })), {
      code: 'PV_ERR_LINK_FRAME',
      message: /LendOpen.device longer than 4096/,
    });
    assert.throws(() => codec.decode(envelope({ type: 'lend-open', errorMessage: long })), {
      code: 'PV_ERR_LINK_FRAME',
    });
    assert.throws(
      () => codec.encode({ id: 1, kind: LinkKind.REQUEST, type: 'lend-open', body: { device: long }, bulkLen: 0 }),
      { code: 'PV_ERR_BAD_LENGTH' },
    );
    const ok = codec.decode(envelope({ type: 'control', body: raw('JsonMsg', { json: long }) }));
    assert.equal(ok.body.json, long);
  });

  const refused: [string, Uint8Array, RegExp][] = [
    ['unknown type', envelope({ type: 'reboot' }), /unknown type "reboot"/],
    ['empty type', envelope({ type: '' }), /unknown type/],
    ['prototype key as type', envelope({ type: 'toString' }), /unknown type/],
    ['kind 0', envelope({ kind: 0 }), /unknown kind 0/],
    ['kind 4', envelope({ kind: 4 }), /unknown kind 4/],
    ['bulk_len over MAX_MESSAGE_BULK', envelope({ bulkLen: MAX_MESSAGE_BULK + 1 }), /bulk_len/],
    ['truncated envelope', envelope({ errorMessage: 'abcdef' }).subarray(0, 12), /does not decode/],
    [
      'body that does not decode',
      envelope({ type: 'mmio', body: new Uint8Array([0x0a, 0x09, 0x41]) }),
      /MmioReq does not decode/,
    ],
  ];
  for (const [name, bytes, why] of refused) {
    it(`${name} → PV_ERR_LINK_FRAME`, () => {
      assert.throws(() => codec.decode(bytes), { code: 'PV_ERR_LINK_FRAME', message: why });
    });
  }

  it('random bytes: every outcome is a typed, normalized message or PV_ERR_LINK_FRAME (never another error)', () => {
    let seed = 12345;
    // mulberry32: a small deterministic PRNG (the test is reproducible).
    const rnd = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (t ^ (t >>> 14)) >>> 0;
    };
    const valid = envelope({ type: 'wire', body: raw('WireReq', SAMPLES.WireReq), bulkLen: 9 });
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      const b = i % 2 === 0 ? new Uint8Array(valid) : new Uint8Array(rnd() % 64).map(() => rnd() & 0xff);
      for (let k = 0; k < 1 + (rnd() % 3); k++) b[rnd() % Math.max(b.length, 1)] = rnd() & 0xff;
      try {
        const m = codec.decode(b);
        decoded++;
        assert.ok(Object.hasOwn(BODY_OF, m.type));
        assert.ok(m.bulkLen <= MAX_MESSAGE_BULK);
        for (const v of Object.values(m.body)) assert.ok(['number', 'string', 'boolean'].includes(typeof v));
        if (m.type === 'wire' && m.kind !== LinkKind.RESPONSE) {
          const a = m.body.remoteAddr as number;
          assert.ok(a === -1 || (Number.isSafeInteger(a) && a >= 0));
          assert.ok(Number.isInteger(m.body.op) && (m.body.op as number) >= 0 && (m.body.op as number) <= 0xffffffff);
        }
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'PV_ERR_LINK_FRAME', String(err));
      }
    }
    assert.ok(decoded > 100, `some mutations still decode (${decoded})`);
  });
});

describe('link hello rules', () => {
  const ok = { host: 'host-1.rack_a', hostId: 1, version: LINK_VERSION, role: 'host' };
  it('accepts a well-formed hello', () => assert.equal(checkHello(ok), undefined));
  for (const [name, h] of [
    ['other version', { ...ok, version: LINK_VERSION + 1 }],
    ['empty host', { ...ok, host: '' }],
    ['host with a space', { ...ok, host: 'a b' }],
    ['host of 65 characters', { ...ok, host: 'a'.repeat(65) }],
    ['host with a slash', { ...ok, host: 'a/b' }],
  ] as const) {
    it(`refuses ${name}`, () => assert.equal(typeof checkHello(h), 'string'));
  }
  it('the envelope type is checked before the body', () => {
    assert.throws(() => codec.decode(Envelope.encode(Envelope.fromObject({ kind: 1, type: 'x' })).finish()), {
      code: 'PV_ERR_LINK_FRAME',
    });
  });
});
