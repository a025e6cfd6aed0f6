/**
 * Encoding of host-link control messages (LINK_PROTO, protocol/link/LinkSchema.ts): one
 * `LinkMessage` envelope whose `body` bytes hold the message named by its `type` (BODY_OF for a
 * REQUEST or NOTICE, RESPONSE_BODY_OF for a RESPONSE).
 *
 * The peer is another OS process and is not trusted. `decode` is the one place its control bytes
 * are read: it returns plain objects whose every field is present and reduced to what the schema
 * says — u32 fields as numbers, `double` addresses as safe non-negative integers (anything else
 * becomes -1, which every address check refuses), bools as booleans, strings of at most
 * MAX_LINK_STRING UTF-8 bytes (JsonMsg.json: bounded by the control frame) — and refuses an
 * unknown kind or `type` and a bulk longer than MAX_MESSAGE_BULK. Every failure is
 * `PV_ERR_LINK_FRAME` (the caller closes the link). Encoding checks our own messages the same
 * way, so a bug is reported here and not as the peer closing the link.
 */

import protobuf from 'protobufjs';
import { pvError } from '../../protocol/errors.js';
import { LINK_VERSION, MAX_CONTROL, MAX_MESSAGE_BULK } from '../../protocol/link/LinkFrame.js';
import {
  BODY_OF,
  type HelloMsg,
  LINK_PROTO,
  LinkKind,
  type LinkType,
  RESPONSE_BODY_OF,
} from '../../protocol/link/LinkSchema.js';

/** Longest string field, in UTF-8 bytes (names, leases, error text). */
export const MAX_LINK_STRING = 4096;
/** String fields with their own bound (JSON documents between a controller and a host). */
const STRING_LIMITS: Readonly<Record<string, number>> = { 'JsonMsg.json': MAX_CONTROL };

/** A control message to send. `body` is the typed body (LinkSchema's `…Msg` shapes). */
export interface LinkOutMessage {
  id: number;
  kind: LinkKind;
  type: LinkType;
  body?: object;
  bulkLen: number;
  errorCode?: string;
  errorMessage?: string;
}

/** A received control message, normalized. `body` is a plain object of the body message. */
export interface LinkInMessage {
  id: number;
  kind: LinkKind;
  type: LinkType;
  body: Record<string, unknown>;
  bulkLen: number;
  /** RESPONSE only: a catalogue code when the request failed, else ''. */
  errorCode: string;
  errorMessage: string;
}

type Obj = Record<string, unknown>;

function frameError(why: string): Error {
  return pvError('PV_ERR_LINK_FRAME', `control message: ${why}`);
}

function isLinkType(t: unknown): t is LinkType {
  return typeof t === 'string' && Object.hasOwn(BODY_OF, t);
}

/** Encoder/decoder over one parsed copy of LINK_PROTO. */
export class LinkCodec {
  private readonly _root: protobuf.Root;
  private readonly _envelope: protobuf.Type;
  /** Body types by message name: looked up once (a lookup walks the namespace: ~7 µs). */
  private readonly _types = new Map<string, protobuf.Type>();

  constructor() {
    this._root = protobuf.parse(LINK_PROTO).root;
    this._envelope = this._root.lookupType('pvio.link.LinkMessage');
  }

  /** Encodes one control message (the payload of a CONTROL frame). */
  encode(m: LinkOutMessage): Uint8Array {
    if (!isLinkType(m.type)) throw pvError('PV_ERR_INVALID_ARG', `unknown link message type ${String(m.type)}`);
    if (!(Number.isSafeInteger(m.bulkLen) && m.bulkLen >= 0 && m.bulkLen <= MAX_MESSAGE_BULK)) {
      throw pvError('PV_ERR_BAD_LENGTH', `bulk of ${m.bulkLen} bytes outside 0…${MAX_MESSAGE_BULK}`);
    }
    const bodyType = this._bodyType(m.kind, m.type);
    const body = bodyType.encode(this._checkOut(bodyType, (m.body ?? {}) as Obj)).finish();
    const errorMessage = (m.errorMessage ?? '').slice(0, MAX_LINK_STRING / 4);
    const env = this._envelope.fromObject({
      id: m.id >>> 0,
      kind: m.kind,
      type: m.type,
      body,
      bulkLen: m.bulkLen,
      errorCode: (m.errorCode ?? '').slice(0, 64),
      errorMessage,
    });
    const bytes = this._envelope.encode(env).finish();
    if (bytes.length > MAX_CONTROL) {
      throw pvError('PV_ERR_BAD_LENGTH', `${m.type} control message of ${bytes.length} bytes exceeds ${MAX_CONTROL}`);
    }
    return bytes;
  }

  /** Decodes a CONTROL frame's payload from the peer; `PV_ERR_LINK_FRAME` for anything malformed. */
  decode(bytes: Uint8Array): LinkInMessage {
    const env = this._decode(this._envelope, bytes, 'LinkMessage');
    const kind = env.kind;
    if (kind !== LinkKind.REQUEST && kind !== LinkKind.RESPONSE && kind !== LinkKind.NOTICE) {
      throw frameError(`unknown kind ${String(kind)}`);
    }
    const type = env.type;
    if (!isLinkType(type)) throw frameError(`unknown type ${JSON.stringify(String(type).slice(0, 64))}`);
    const bulkLen = env.bulkLen as number;
    if (bulkLen > MAX_MESSAGE_BULK) throw frameError(`bulk_len ${bulkLen} exceeds ${MAX_MESSAGE_BULK}`);
    const bodyType = this._bodyType(kind, type);
    const raw = env.body instanceof Uint8Array ? env.body : new Uint8Array(0);
    return {
      id: (env.id as number) >>> 0,
      kind,
      type,
      body: this._normalize(bodyType, this._decode(bodyType, raw, bodyType.name)),
      bulkLen,
      errorCode: env.errorCode as string,
      errorMessage: env.errorMessage as string,
    };
  }

  private _bodyType(kind: LinkKind, type: LinkType): protobuf.Type {
    const name = kind === LinkKind.RESPONSE ? RESPONSE_BODY_OF[type] : BODY_OF[type];
    let t = this._types.get(name);
    if (t === undefined) {
      t = this._root.lookupType(`pvio.link.${name}`);
      this._types.set(name, t);
    }
    return t;
  }

  /** protobufjs decode, with every library error (RangeError, bad varint…) as PV_ERR_LINK_FRAME. */
  private _decode(type: protobuf.Type, bytes: Uint8Array, what: string): Obj {
    let msg: Obj;
    try {
      msg = type.decode(bytes) as unknown as Obj;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw frameError(`${what} does not decode: ${why.slice(0, 120)}`);
    }
    // The envelope's own strings are bounded like any body string.
    return type === this._envelope ? this._normalize(type, msg) : msg;
  }

  /** Every field present, reduced to its schema type (the peer's values are never used raw). */
  private _normalize(type: protobuf.Type, msg: Obj): Obj {
    const out: Obj = {};
    for (const f of type.fieldsArray) {
      const v = msg[f.name];
      switch (f.type) {
        case 'uint32':
          out[f.name] = typeof v === 'number' && Number.isInteger(v) ? v >>> 0 : 0;
          break;
        case 'double':
          // INVARIANT: -1 is never a valid address, so an unsafe value fails every later range check.
          out[f.name] = typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : v === undefined ? 0 : -1;
          break;
        case 'bool':
          out[f.name] = v === true;
          break;
        case 'string': {
          const s = typeof v === 'string' ? v : '';
          const limit = STRING_LIMITS[`${type.name}.${f.name}`] ?? MAX_LINK_STRING;
          if (protobuf.util.utf8.length(s) > limit)
            throw frameError(`${type.name}.${f.name} longer than ${limit} bytes`);
          out[f.name] = s;
          break;
        }
        default:
          // bytes (the envelope's body) and the Kind enum: checked by the caller.
          out[f.name] = v;
      }
    }
    return out;
  }

  /** Checks an outgoing body the way the peer will, and builds the protobuf message. */
  private _checkOut(type: protobuf.Type, body: Obj): protobuf.Message {
    for (const f of type.fieldsArray) {
      const v = body[f.name];
      if (v === undefined) continue;
      if (f.type === 'double' && !(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
        throw pvError('PV_ERR_INVALID_ARG', `${type.name}.${f.name} must be a safe non-negative integer, got ${v}`);
      }
      if (f.type === 'string') {
        const limit = STRING_LIMITS[`${type.name}.${f.name}`] ?? MAX_LINK_STRING;
        if (typeof v !== 'string' || protobuf.util.utf8.length(v) > limit) {
          throw pvError('PV_ERR_BAD_LENGTH', `${type.name}.${f.name} must be a string of at most ${limit} bytes`);
        }
      }
    }
    return type.fromObject(body);
  }
}

let shared: LinkCodec | undefined;

/** The process's codec (the schema is parsed once). */
export function linkCodec(): LinkCodec {
  shared ??= new LinkCodec();
  return shared;
}

const HOST_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Why a peer's hello is refused, or undefined when it is acceptable. */
export function checkHello(h: HelloMsg): string | undefined {
  if (h.version !== LINK_VERSION) return `link version ${h.version}, this host speaks ${LINK_VERSION}`;
  if (!HOST_NAME.test(h.host)) return `host name ${JSON.stringify(h.host.slice(0, 80))} is not ${HOST_NAME.source}`;
  return undefined;
}
