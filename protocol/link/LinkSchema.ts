/**
 * The control messages of a host link, as `.proto` text (protocol/ imports nothing; the link
 * code in hypervisor-sim parses it with protobufjs), and their TypeScript shapes.
 *
 * Every control frame (LinkFrame.ts) is one `LinkMessage`: a REQUEST carries a fresh `id` and
 * is answered by exactly one RESPONSE with the same `id` (an error response carries a catalogue
 * code in `error_code`); a NOTICE is one-way. `type` names the body's message; `bulk_len` bytes
 * of binary payload (an RDMA message, DMA data) follow in BULK frames — protobuf never carries
 * bulk data. Body types:
 *
 * | type          | body          | bulk                 | answer (body, bulk)                 |
 * |---------------|---------------|----------------------|-------------------------------------|
 * | `hello`       | Hello         | -                    | Hello                               |
 * | `wire`        | WireReq       | WRITE/SEND payload   | WireRsp, READ data                  |
 * | `mmio`        | MmioReq       | -                    | MmioRsp                             |
 * | `dma`         | DmaReq        | write data           | Empty, read data                    |
 * | `lend-open`   | LendOpen      | -                    | LendOpenRsp                         |
 * | `lend-close`  | LendClose     | -                    | (notice)                            |
 * | `cm-record`   | CmRecord      | -                    | Empty                               |
 * | `control`     | JsonMsg       | -                    | JsonMsg (controller ↔ host: run a cell, status) |
 *
 * Field numbers are the wire contract: append, never renumber. 64-bit addresses travel as
 * `double` holding a safe integer (checked by the receiver).
 */

export const LINK_PROTO = `
syntax = "proto3";
package pvio.link;

message LinkMessage {
  enum Kind { KIND_UNSPECIFIED = 0; REQUEST = 1; RESPONSE = 2; NOTICE = 3; }
  uint32 id = 1;
  Kind kind = 2;
  string type = 3;
  bytes body = 4;
  uint32 bulk_len = 5;
  string error_code = 6;
  string error_message = 7;
}

message Empty {}
message Hello { string host = 1; uint32 host_id = 2; uint32 version = 3; string role = 4; }
message WireReq {
  uint32 op = 1;
  uint32 src_port = 2;
  uint32 src_qpn = 3;
  uint32 dst_port = 4;
  uint32 dst_qpn = 5;
  uint32 rkey = 6;
  double remote_addr = 7;
  uint32 imm = 8;
  uint32 length = 9;
  uint32 send_flags = 10;
}
message WireRsp { uint32 status = 1; bool rnr = 2; uint32 rnr_timer_us = 3; }
message MmioReq { string lease = 1; uint32 bar = 2; uint32 offset = 3; bool write = 4; uint32 value = 5; }
message MmioRsp { uint32 value = 1; }
message DmaReq { string lease = 1; double iova = 2; uint32 length = 3; bool write = 4; }
message LendOpen { string device = 1; string lease = 2; string borrower = 3; }
message LendOpenRsp { string kind = 1; uint32 bar_size = 2; string bdf = 3; }
message LendClose { string lease = 1; string reason = 2; }
message CmRecord { uint32 to_domid = 1; uint32 from_domid = 2; string name = 3; string record = 4; }
message JsonMsg { string json = 1; }
`;

/** LinkMessage.Kind. */
export const enum LinkKind {
  REQUEST = 1,
  RESPONSE = 2,
  NOTICE = 3,
}

/** Body type names (the table above). */
export type LinkType = 'hello' | 'wire' | 'mmio' | 'dma' | 'lend-open' | 'lend-close' | 'cm-record' | 'control';

/** Body message name of each type. */
export const BODY_OF: Readonly<Record<LinkType, string>> = {
  hello: 'Hello',
  wire: 'WireReq',
  mmio: 'MmioReq',
  dma: 'DmaReq',
  'lend-open': 'LendOpen',
  'lend-close': 'LendClose',
  'cm-record': 'CmRecord',
  control: 'JsonMsg',
};

/** Response body message name of each request type. */
export const RESPONSE_BODY_OF: Readonly<Record<LinkType, string>> = {
  hello: 'Hello',
  wire: 'WireRsp',
  mmio: 'MmioRsp',
  dma: 'Empty',
  'lend-open': 'LendOpenRsp',
  'lend-close': 'Empty',
  'cm-record': 'Empty',
  control: 'JsonMsg',
};

export interface HelloMsg {
  host: string;
  hostId: number;
  version: number;
  /** `host` for a peer host, `control` for a controller (CLI, tests). */
  role: string;
}
export interface WireReqMsg {
  op: number;
  srcPort: number;
  srcQpn: number;
  dstPort: number;
  dstQpn: number;
  rkey: number;
  remoteAddr: number;
  imm: number;
  length: number;
  sendFlags: number;
}
/** A wire request with every field at its default (what a message without fields decodes to). */
export function emptyWireReq(): WireReqMsg {
  return {
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
  };
}
export interface WireRspMsg {
  status: number;
  rnr: boolean;
  rnrTimerUs: number;
}
export interface MmioReqMsg {
  lease: string;
  bar: number;
  offset: number;
  write: boolean;
  value: number;
}
export interface MmioRspMsg {
  value: number;
}
export interface DmaReqMsg {
  lease: string;
  iova: number;
  length: number;
  write: boolean;
}
export interface LendOpenMsg {
  device: string;
  lease: string;
  borrower: string;
}
export interface LendOpenRspMsg {
  kind: string;
  barSize: number;
  bdf: string;
}
export interface LendCloseMsg {
  lease: string;
  reason: string;
}
export interface CmRecordMsg {
  toDomid: number;
  fromDomid: number;
  name: string;
  record: string;
}
export interface JsonMsgBody {
  json: string;
}
