/**
 * Encoding of `vrdma` control messages and their framing in a control-ring slot.
 *
 * Slot (1024 bytes):
 * ```
 * offset  size      field    note
 * 0       4         length   u32, bytes of the message, ≤ PV_CTRL_MAX_MESSAGE (1020)
 * 4       length    message  a CtrlRequest (F2B) or CtrlResponse (B2F), protobuf
 * 4+len   rest      pad      zero on every write (no stale bytes reach the peer)
 * ```
 * protocol/ imports nothing, so the codec takes the protobuf library from its caller
 * (`new CtrlCodec(protobuf)` in frontend and backend); both parse the same `.proto` text. Decoding
 * never trusts the peer: a length out of range, bytes that do not parse, or a request without a
 * command become `PV_ERR_BAD_LENGTH` / `PV_ERR_BAD_REQUEST`, and numbers are reduced to what the
 * schema says (u32, or -1 for a 64-bit value that is not a safe integer) before anyone looks.
 */

import { pvError } from '../../errors.js';
import {
  type CtrlCommand,
  type CtrlRequest,
  type CtrlResponse,
  type CtrlResult,
  type PvQpAttr,
  type PvQpCap,
  VRDMA_CTRL_PROTO,
} from './CtrlSchema.js';
import { PV_CTRL_MAX_MESSAGE, PV_CTRL_SLOT_WORDS, PV_MAX_ERROR_TEXT } from './PvConstants.js';

/** The protobufjs `Type` methods the codec uses. */
export interface PbType {
  fromObject(object: Record<string, unknown>): unknown;
  encode(message: never): { finish(): Uint8Array };
  decode(reader: Uint8Array): unknown;
  toObject(message: never, options: Record<string, unknown>): Record<string, unknown>;
}

/** The protobufjs entry point the codec uses (`import protobuf from 'protobufjs'`). */
export interface PbLibrary {
  parse(source: string): { root: { lookupType(path: string): PbType } };
}

/** How decoded messages are flattened: 64-bit as strings (checked), every field present. */
const TO_OBJECT = { longs: String, defaults: true, arrays: true, oneofs: true };

type Obj = Record<string, unknown>;

function u32(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) ? v >>> 0 : 0;
}

function u64(v: unknown): number {
  const s = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '0';
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= 0 && String(n) === s ? n : -1;
}

function i32(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) ? v | 0 : 0;
}

function u32s(v: unknown): number[] {
  return Array.isArray(v) ? v.map(u32) : [];
}

function sub(o: Obj, key: string): Obj {
  const v = o[key];
  return v !== null && typeof v === 'object' ? (v as Obj) : {};
}

function capFrom(o: Obj): PvQpCap {
  return {
    maxSendWr: u32(o.maxSendWr),
    maxRecvWr: u32(o.maxRecvWr),
    maxSendSge: u32(o.maxSendSge),
    maxRecvSge: u32(o.maxRecvSge),
    maxInlineData: u32(o.maxInlineData),
  };
}

const ATTR_FIELDS: readonly (keyof PvQpAttr)[] = [
  'qpState',
  'curQpState',
  'qpAccessFlags',
  'pkeyIndex',
  'portNum',
  'pathMtu',
  'destQpNum',
  'rqPsn',
  'sqPsn',
  'maxRdAtomic',
  'maxDestRdAtomic',
  'minRnrTimer',
  'timeout',
  'retryCnt',
  'rnrRetry',
  'dlid',
];

function attrFrom(o: Obj): PvQpAttr {
  const out = {} as PvQpAttr;
  for (const f of ATTR_FIELDS) out[f] = u32(o[f]);
  return out;
}

function commandFrom(kind: unknown, c: Obj): CtrlCommand {
  switch (kind) {
    case 'queryPort':
      return { kind };
    case 'allocPd':
      return { kind };
    case 'deallocPd':
      return { kind, pd: u32(c.pd) };
    case 'regMr':
      return {
        kind,
        pd: u32(c.pd),
        addr: u64(c.addr),
        length: u32(c.length),
        access: u32(c.access),
        npages: u32(c.npages),
        indirectRefs: u32s(c.indirectRefs),
      };
    case 'deregMr':
      return { kind, mr: u32(c.mr) };
    case 'createCq':
      return { kind, entries: u32(c.entries), ringRefs: u32s(c.ringRefs), ringGpa: u64(c.ringGpa) };
    case 'destroyCq':
      return { kind, cq: u32(c.cq) };
    case 'createQp':
      return {
        kind,
        pd: u32(c.pd),
        sendCq: u32(c.sendCq),
        recvCq: u32(c.recvCq),
        cap: capFrom(sub(c, 'cap')),
        sqSigAll: c.sqSigAll === true,
      };
    case 'modifyQp':
      return { kind, qp: u32(c.qp), mask: u32(c.mask), attr: attrFrom(sub(c, 'attr')) };
    case 'destroyQp':
      return { kind, qp: u32(c.qp) };
    default:
      throw pvError('PV_ERR_BAD_OP', 'control request carries no known command');
  }
}

function resultFrom(kind: unknown, r: Obj): CtrlResult | undefined {
  switch (kind) {
    case 'port':
      return { kind, portId: u32(r.portId), state: u32(r.state), activeMtu: u32(r.activeMtu) };
    case 'pd':
      return { kind, pd: u32(r.pd) };
    case 'mr':
      return { kind, mr: u32(r.mr), lkey: u32(r.lkey), rkey: u32(r.rkey) };
    case 'cq':
      return { kind, cq: u32(r.cq), entries: u32(r.entries) };
    case 'qp':
      return { kind, qp: u32(r.qp), qpNum: u32(r.qpNum), cap: capFrom(sub(r, 'cap')) };
    default:
      return undefined;
  }
}

/** Encoder/decoder of control messages over one parsed copy of the schema. */
export class CtrlCodec {
  private readonly _req: PbType;
  private readonly _rsp: PbType;

  /** Parses the schema with the caller's protobuf library. */
  constructor(pb: PbLibrary) {
    const root = pb.parse(VRDMA_CTRL_PROTO).root;
    this._req = root.lookupType('pvio.vrdma.CtrlRequest');
    this._rsp = root.lookupType('pvio.vrdma.CtrlResponse');
  }

  /** Encodes a request (the caller's own data: no checks beyond the slot size). */
  encodeRequest(req: CtrlRequest): Uint8Array {
    const { kind, ...fields } = req.cmd;
    const msg = this._req.fromObject({ seq: req.seq, [kind]: fields });
    return this._finish(this._req.encode(msg as never).finish());
  }

  /**
   * Decodes a request from the peer. Throws `PV_ERR_BAD_REQUEST` for bytes that do not parse and
   * `PV_ERR_BAD_OP` for a request without a known command; never anything else.
   */
  decodeRequest(bytes: Uint8Array): CtrlRequest {
    const o = this._decode(this._req, bytes);
    const kind = o.cmd;
    return { seq: u32(o.seq), cmd: commandFrom(kind, typeof kind === 'string' ? sub(o, kind) : {}) };
  }

  /** Encodes a response; the detail text is cut to PV_MAX_ERROR_TEXT characters. */
  encodeResponse(rsp: CtrlResponse): Uint8Array {
    const obj: Obj = {
      seq: rsp.seq,
      status: rsp.status,
      code: rsp.code,
      message: rsp.message.length > PV_MAX_ERROR_TEXT ? rsp.message.slice(0, PV_MAX_ERROR_TEXT) : rsp.message,
    };
    if (rsp.result) {
      const { kind, ...fields } = rsp.result;
      obj[kind] = fields;
    }
    return this._finish(this._rsp.encode(this._rsp.fromObject(obj) as never).finish());
  }

  /** Decodes a response from the peer (a backend is not trusted either). */
  decodeResponse(bytes: Uint8Array): CtrlResponse {
    const o = this._decode(this._rsp, bytes);
    const kind = o.result;
    const message = typeof o.message === 'string' ? o.message.slice(0, PV_MAX_ERROR_TEXT) : '';
    return {
      seq: u32(o.seq),
      status: i32(o.status),
      code: typeof o.code === 'string' ? o.code.slice(0, 64) : '',
      message,
      result: typeof kind === 'string' ? resultFrom(kind, sub(o, kind)) : undefined,
    };
  }

  private _decode(type: PbType, bytes: Uint8Array): Obj {
    try {
      return type.toObject(type.decode(bytes) as never, TO_OBJECT);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw pvError('PV_ERR_BAD_REQUEST', `control message does not decode: ${why.slice(0, 120)}`);
    }
  }

  private _finish(bytes: Uint8Array): Uint8Array {
    if (bytes.length > PV_CTRL_MAX_MESSAGE) {
      throw pvError('PV_ERR_BAD_LENGTH', `control message of ${bytes.length} bytes exceeds ${PV_CTRL_MAX_MESSAGE}`);
    }
    return bytes;
  }
}

/** Writes `msg` into the control slot at word `w` of `words`: length, bytes, zeroed rest. */
export function writeCtrlSlot(words: Int32Array, w: number, msg: Uint8Array): void {
  if (msg.length > PV_CTRL_MAX_MESSAGE) {
    throw pvError('PV_ERR_BAD_LENGTH', `control message of ${msg.length} bytes exceeds ${PV_CTRL_MAX_MESSAGE}`);
  }
  for (let i = 1; i < PV_CTRL_SLOT_WORDS; i++) words[w + i] = 0;
  words[w] = msg.length;
  new Uint8Array(words.buffer, words.byteOffset + (w + 1) * 4, msg.length).set(msg);
}

/**
 * Copies the message out of the control slot at word `w` (a private copy: later decoding never
 * re-reads shared memory). `PV_ERR_BAD_LENGTH` when the length word is out of range.
 */
export function readCtrlSlot(words: Int32Array, w: number): Uint8Array {
  const len = words[w] >>> 0;
  if (len > PV_CTRL_MAX_MESSAGE) {
    throw pvError('PV_ERR_BAD_LENGTH', `control slot claims ${len} bytes (at most ${PV_CTRL_MAX_MESSAGE})`);
  }
  return new Uint8Array(words.buffer, words.byteOffset + (w + 1) * 4, len).slice();
}
