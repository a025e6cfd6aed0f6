/**
 * The control-plane schema of the `vrdma` device, as `.proto` text (protocol/ imports nothing,
 * so each end parses it with its own protobufjs; see CtrlCodec.ts), and the TypeScript shapes
 * the codec turns messages into.
 *
 * Control is synchronous: the frontend writes one `CtrlRequest` into the control ring, notifies,
 * and waits for the `CtrlResponse` with the same `seq`. The backend treats every field as
 * hostile: repeated fields are bounded (by the 1 KiB slot and by explicit limits), lengths and
 * handles are range-checked, and a message that does not decode gets an error response.
 */

/** The schema. Field numbers are the wire contract: append, never renumber. */
export const VRDMA_CTRL_PROTO = `
syntax = "proto3";
package pvio.vrdma;

message QueryPortReq {}
message AllocPdReq {}
message DeallocPdReq { uint32 pd = 1; }
// The MR's page refs are in the indirect pages (u32 refs, 1024 per page), not in the message.
message RegMrReq {
  uint32 pd = 1;
  uint64 addr = 2;
  uint32 length = 3;
  uint32 access = 4;
  uint32 npages = 5;
  repeated uint32 indirect_refs = 6;
}
message DeregMrReq { uint32 mr = 1; }
// ring_refs: the CQ ring's pages (Cq.ts layout), contiguous in the guest, granted writable.
// ring_gpa: the ring's guest-physical address, for transports without grants (virtio-rdma: the
// device model reaches guest memory itself); there ring_refs is empty.
message CreateCqReq { uint32 entries = 1; repeated uint32 ring_refs = 2; uint64 ring_gpa = 3; }
message DestroyCqReq { uint32 cq = 1; }
message QpCapMsg {
  uint32 max_send_wr = 1;
  uint32 max_recv_wr = 2;
  uint32 max_send_sge = 3;
  uint32 max_recv_sge = 4;
  uint32 max_inline_data = 5;
}
message CreateQpReq { uint32 pd = 1; uint32 send_cq = 2; uint32 recv_cq = 3; QpCapMsg cap = 4; bool sq_sig_all = 5; }
message QpAttrMsg {
  uint32 qp_state = 1;
  uint32 cur_qp_state = 2;
  uint32 qp_access_flags = 3;
  uint32 pkey_index = 4;
  uint32 port_num = 5;
  uint32 path_mtu = 6;
  uint32 dest_qp_num = 7;
  uint32 rq_psn = 8;
  uint32 sq_psn = 9;
  uint32 max_rd_atomic = 10;
  uint32 max_dest_rd_atomic = 11;
  uint32 min_rnr_timer = 12;
  uint32 timeout = 13;
  uint32 retry_cnt = 14;
  uint32 rnr_retry = 15;
  uint32 dlid = 16;
}
message ModifyQpReq { uint32 qp = 1; uint32 mask = 2; QpAttrMsg attr = 3; }
message DestroyQpReq { uint32 qp = 1; }

message CtrlRequest {
  uint32 seq = 1;
  oneof cmd {
    QueryPortReq query_port = 10;
    AllocPdReq alloc_pd = 11;
    DeallocPdReq dealloc_pd = 12;
    RegMrReq reg_mr = 13;
    DeregMrReq dereg_mr = 14;
    CreateCqReq create_cq = 15;
    DestroyCqReq destroy_cq = 16;
    CreateQpReq create_qp = 17;
    ModifyQpReq modify_qp = 18;
    DestroyQpReq destroy_qp = 19;
  }
}

message PortRes { uint32 port_id = 1; uint32 state = 2; uint32 active_mtu = 3; }
message PdRes { uint32 pd = 1; }
message MrRes { uint32 mr = 1; uint32 lkey = 2; uint32 rkey = 3; }
message CqRes { uint32 cq = 1; uint32 entries = 2; }
message QpRes { uint32 qp = 1; uint32 qp_num = 2; QpCapMsg cap = 3; }

message CtrlResponse {
  uint32 seq = 1;
  // 0, or a catalogue status (negative) with its code and a bounded detail text.
  sint32 status = 2;
  string code = 3;
  string message = 4;
  oneof result {
    PortRes port = 10;
    PdRes pd = 11;
    MrRes mr = 12;
    CqRes cq = 13;
    QpRes qp = 14;
  }
}
`;

/** `ibv_qp_cap` on the wire. */
export interface PvQpCap {
  maxSendWr: number;
  maxRecvWr: number;
  maxSendSge: number;
  maxRecvSge: number;
  maxInlineData: number;
}

/** `ibv_qp_attr` on the wire (flat; `dlid` is `ahAttr.dlid`). Fields outside the mask are 0. */
export interface PvQpAttr {
  qpState: number;
  curQpState: number;
  qpAccessFlags: number;
  pkeyIndex: number;
  portNum: number;
  pathMtu: number;
  destQpNum: number;
  rqPsn: number;
  sqPsn: number;
  maxRdAtomic: number;
  maxDestRdAtomic: number;
  minRnrTimer: number;
  timeout: number;
  retryCnt: number;
  rnrRetry: number;
  dlid: number;
}

/**
 * One control command, decoded (values are the peer's: unvalidated). `addr` is -1 when the
 * wire value is not a safe integer.
 */
export type CtrlCommand =
  | { readonly kind: 'queryPort' }
  | { readonly kind: 'allocPd' }
  | { readonly kind: 'deallocPd'; readonly pd: number }
  | {
      readonly kind: 'regMr';
      readonly pd: number;
      readonly addr: number;
      readonly length: number;
      readonly access: number;
      readonly npages: number;
      readonly indirectRefs: readonly number[];
    }
  | { readonly kind: 'deregMr'; readonly mr: number }
  | {
      readonly kind: 'createCq';
      readonly entries: number;
      readonly ringRefs: readonly number[];
      /** virtio-rdma: the ring's guest-physical address (decoded: a safe integer, or -1 if not one). */
      readonly ringGpa?: number;
    }
  | { readonly kind: 'destroyCq'; readonly cq: number }
  | {
      readonly kind: 'createQp';
      readonly pd: number;
      readonly sendCq: number;
      readonly recvCq: number;
      readonly cap: PvQpCap;
      readonly sqSigAll: boolean;
    }
  | { readonly kind: 'modifyQp'; readonly qp: number; readonly mask: number; readonly attr: PvQpAttr }
  | { readonly kind: 'destroyQp'; readonly qp: number };

/** Names of the commands. */
export type CtrlCommandKind = CtrlCommand['kind'];

/** A control request: a sequence number the response echoes, and one command. */
export interface CtrlRequest {
  readonly seq: number;
  readonly cmd: CtrlCommand;
}

/** Results per command family. */
export type CtrlResult =
  | { readonly kind: 'port'; readonly portId: number; readonly state: number; readonly activeMtu: number }
  | { readonly kind: 'pd'; readonly pd: number }
  | { readonly kind: 'mr'; readonly mr: number; readonly lkey: number; readonly rkey: number }
  | { readonly kind: 'cq'; readonly cq: number; readonly entries: number }
  | { readonly kind: 'qp'; readonly qp: number; readonly qpNum: number; readonly cap: PvQpCap };

/** A control response: status 0 with an optional result, or a catalogue status and code. */
export interface CtrlResponse {
  readonly seq: number;
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly result?: CtrlResult;
}
