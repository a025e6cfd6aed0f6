/**
 * The error catalogue: every error pvio raises has a stable string code, a numeric status that
 * fits a response slot (negative, as Xen's GNTST_* and errno values are), a class per area, and
 * a policy. Codes cross threads and rings; classes do not (on Node 20 `postMessage(err)` arrives
 * as a plain `Error` with no `code`), so match on `err.code` and rebuild with `errorFromCode()`.
 *
 * Policy:
 *  - `request`: the request fails with this status and the ring goes on.
 *  - `fatal`: a protocol violation; the backend stops serving that ring until the frontend
 *    reconnects (blkback's "Halting ring processing", netback's `xenvif_fatal_tx_err`).
 *  - `caller`: raised to the local caller (bad argument, bad configuration), never sent on a ring.
 */

/** Where an error sits and what the receiver must do with it. */
export type ErrorPolicy = 'request' | 'fatal' | 'caller';

/** One catalogue row. */
export interface ErrorSpec {
  readonly status: number;
  readonly area: ErrorArea;
  readonly policy: ErrorPolicy;
  readonly message: string;
}

/** The class families; each has its own subclass so callers in one thread can `instanceof`. */
export type ErrorArea =
  | 'arg'
  | 'memory'
  | 'ring'
  | 'grant'
  | 'evtchn'
  | 'store'
  | 'xenbus'
  | 'domain'
  | 'request'
  | 'config'
  | 'rdma'
  | 'pcie'
  | 'lending'
  | 'block'
  | 'virtio';

/**
 * The catalogue. Statuses are unique and never reused; append new codes at the end of an area.
 * Status 0 is success and is not an error.
 */
export const ERROR_CATALOGUE = {
  PV_ERR_INVALID_ARG: { status: -1, area: 'arg', policy: 'caller', message: 'invalid argument' },
  PV_ERR_NOT_SUPPORTED: { status: -2, area: 'arg', policy: 'request', message: 'operation not supported' },
  PV_ERR_TIMEOUT: { status: -3, area: 'arg', policy: 'caller', message: 'timed out' },
  PV_ERR_LIMIT: { status: -4, area: 'arg', policy: 'request', message: 'resource limit exceeded' },

  PV_ERR_OUT_OF_BOUNDS: { status: -10, area: 'memory', policy: 'request', message: 'access outside memory' },
  PV_ERR_NO_MEMORY: { status: -11, area: 'memory', policy: 'caller', message: 'out of guest pages' },
  PV_ERR_BAD_ALIGNMENT: { status: -12, area: 'memory', policy: 'request', message: 'misaligned address' },

  PV_ERR_RING_FULL: { status: -20, area: 'ring', policy: 'caller', message: 'ring is full' },
  PV_ERR_RING_PROD_OVERFLOW: {
    status: -21,
    area: 'ring',
    policy: 'fatal',
    message: 'request producer index overflow (more requests than free response slots)',
  },
  PV_ERR_RING_RSP_OVERFLOW: {
    status: -22,
    area: 'ring',
    policy: 'fatal',
    message: 'response producer index overflow (more responses than outstanding requests)',
  },
  PV_ERR_RING_LAYOUT: { status: -23, area: 'ring', policy: 'caller', message: 'invalid ring layout' },
  PV_ERR_RING_DEAD: { status: -24, area: 'ring', policy: 'fatal', message: 'ring halted after a protocol violation' },

  PV_ERR_GRANT_BAD_REF: { status: -30, area: 'grant', policy: 'request', message: 'unknown or revoked grant ref' },
  PV_ERR_GRANT_BAD_DOMAIN: { status: -31, area: 'grant', policy: 'request', message: 'grant is for another domain' },
  PV_ERR_GRANT_PERMISSION: {
    status: -32,
    area: 'grant',
    policy: 'request',
    message: 'grant permission denied (read-only grant mapped or copied for writing)',
  },
  PV_ERR_GRANT_IN_USE: { status: -33, area: 'grant', policy: 'caller', message: 'grant is still mapped' },
  PV_ERR_GRANT_BAD_COPY: { status: -34, area: 'grant', policy: 'request', message: 'grant copy crosses a page' },
  PV_ERR_GRANT_BAD_HANDLE: { status: -35, area: 'grant', policy: 'request', message: 'unknown map handle' },
  PV_ERR_GRANT_NO_SPACE: { status: -36, area: 'grant', policy: 'request', message: 'grant or maptrack table full' },

  PV_ERR_EVTCHN_BAD_PORT: { status: -40, area: 'evtchn', policy: 'caller', message: 'invalid event-channel port' },
  PV_ERR_EVTCHN_BAD_STATE: { status: -41, area: 'evtchn', policy: 'caller', message: 'port in the wrong state' },
  PV_ERR_EVTCHN_NO_SPACE: { status: -42, area: 'evtchn', policy: 'caller', message: 'no free event-channel port' },

  PV_ERR_STORE_NOENT: { status: -50, area: 'store', policy: 'caller', message: 'no such store path' },
  PV_ERR_STORE_PERM: { status: -51, area: 'store', policy: 'caller', message: 'store permission denied' },
  PV_ERR_STORE_EXISTS: { status: -52, area: 'store', policy: 'caller', message: 'store path exists' },
  PV_ERR_STORE_AGAIN: { status: -53, area: 'store', policy: 'caller', message: 'store transaction conflict, retry' },
  PV_ERR_STORE_INVALID: { status: -54, area: 'store', policy: 'caller', message: 'invalid store path or value' },
  PV_ERR_STORE_QUOTA: { status: -55, area: 'store', policy: 'caller', message: 'store quota exceeded' },

  PV_ERR_XENBUS_STATE: { status: -60, area: 'xenbus', policy: 'caller', message: 'invalid xenbus state transition' },
  PV_ERR_DISCONNECTED: { status: -61, area: 'xenbus', policy: 'request', message: 'peer disconnected' },

  PV_ERR_NO_DOMAIN: { status: -70, area: 'domain', policy: 'caller', message: 'no such domain' },
  PV_ERR_DOMAIN_CRASHED: { status: -71, area: 'domain', policy: 'caller', message: 'domain crashed' },

  PV_ERR_BAD_OP: { status: -80, area: 'request', policy: 'request', message: 'unknown operation' },
  PV_ERR_BAD_LENGTH: { status: -81, area: 'request', policy: 'request', message: 'length or count out of range' },
  PV_ERR_BAD_REQUEST: { status: -82, area: 'request', policy: 'request', message: 'malformed request' },

  PV_ERR_CONFIG: { status: -90, area: 'config', policy: 'caller', message: 'invalid configuration' },

  PV_ERR_RDMA_BAD_HANDLE: { status: -100, area: 'rdma', policy: 'request', message: 'unknown PD, MR, CQ or QP handle' },
  PV_ERR_RDMA_BAD_TRANSITION: {
    status: -101,
    area: 'rdma',
    policy: 'request',
    message: 'invalid QP state transition or missing attributes',
  },
  PV_ERR_RDMA_BAD_ACCESS: { status: -102, area: 'rdma', policy: 'request', message: 'invalid access flags' },
  PV_ERR_RDMA_RESOURCE: { status: -103, area: 'rdma', policy: 'request', message: 'device resources exhausted' },
  PV_ERR_RDMA_BUSY: { status: -104, area: 'rdma', policy: 'request', message: 'resource still in use' },
  PV_ERR_RDMA_QUEUE_FULL: { status: -105, area: 'rdma', policy: 'request', message: 'work queue full' },
  PV_ERR_RDMA_BAD_WR: { status: -106, area: 'rdma', policy: 'request', message: 'invalid work request' },
  PV_ERR_RDMA_BAD_STATE: { status: -107, area: 'rdma', policy: 'request', message: 'QP state does not allow this' },
  PV_ERR_RDMA_BAD_MEMORY: {
    status: -108,
    area: 'rdma',
    policy: 'request',
    message: 'memory not owned, not granted or out of range',
  },

  PV_ERR_PCIE_UNROUTABLE: {
    status: -120,
    area: 'pcie',
    policy: 'request',
    message: 'no route to that address on the PCIe fabric',
  },
  PV_ERR_PCIE_NO_WINDOW: {
    status: -121,
    area: 'pcie',
    policy: 'request',
    message: 'address outside every NTB translation window',
  },
  PV_ERR_PCIE_LINK_DOWN: { status: -122, area: 'pcie', policy: 'request', message: 'PCIe link or NTB is down' },
  PV_ERR_PCIE_BAD_TOPOLOGY: { status: -123, area: 'pcie', policy: 'caller', message: 'invalid fabric topology' },
  PV_ERR_LINK_FRAME: {
    status: -124,
    area: 'pcie',
    policy: 'fatal',
    message: 'malformed or truncated frame on a host link (the link was closed)',
  },

  PV_ERR_LEND_NOT_FOUND: { status: -140, area: 'lending', policy: 'caller', message: 'no such device in the registry' },
  PV_ERR_LEND_BUSY: { status: -141, area: 'lending', policy: 'caller', message: 'device is held by another host' },
  PV_ERR_LEND_IN_USE: {
    status: -142,
    area: 'lending',
    policy: 'caller',
    message: 'device still in use: return refused (force it to fail outstanding requests)',
  },
  PV_ERR_LEND_REVOKED: {
    status: -143,
    area: 'lending',
    policy: 'request',
    message: 'the lent device was returned while this request was outstanding',
  },
  PV_ERR_LEND_NOT_HOLDER: {
    status: -144,
    area: 'lending',
    policy: 'caller',
    message: 'this host does not hold the device',
  },

  PV_ERR_BLK_IO: { status: -160, area: 'block', policy: 'request', message: 'media or device error' },
  PV_ERR_BLK_BAD_SECTOR: { status: -161, area: 'block', policy: 'request', message: 'sector range outside the device' },
  PV_ERR_BLK_BAD_SEGMENT: { status: -162, area: 'block', policy: 'request', message: 'invalid segment' },

  PV_ERR_VIRTQ_LAYOUT: {
    status: -180,
    area: 'virtio',
    policy: 'caller',
    message: 'invalid virtqueue layout (size a power of two ≤ 32768, areas aligned and inside memory)',
  },
  PV_ERR_VIRTQ_BAD_DESC: {
    status: -181,
    area: 'virtio',
    policy: 'fatal',
    message: 'malformed descriptor (index out of range, INDIRECT with NEXT, nested or unnegotiated indirect table)',
  },
  PV_ERR_VIRTQ_LOOP: {
    status: -182,
    area: 'virtio',
    policy: 'fatal',
    message: 'descriptor chain longer than the queue (a loop)',
  },
  PV_ERR_VIRTQ_BAD_ADDR: {
    status: -183,
    area: 'virtio',
    policy: 'fatal',
    message: 'descriptor range outside guest memory',
  },
  PV_ERR_VIRTQ_DIRECTION: {
    status: -184,
    area: 'virtio',
    policy: 'fatal',
    message: 'device-readable descriptor after a device-writable one, or wrong direction for the request',
  },
  PV_ERR_VIRTQ_TOO_LONG: {
    status: -185,
    area: 'virtio',
    policy: 'fatal',
    message: 'descriptor chain longer than 2^32 bytes',
  },
  PV_ERR_VIRTQ_AVAIL_IDX: {
    status: -186,
    area: 'virtio',
    policy: 'fatal',
    message: 'available index moved by more than the queue size',
  },
  PV_ERR_VIRTIO_STATUS: {
    status: -187,
    area: 'virtio',
    policy: 'caller',
    message: 'illegal device status transition or feature negotiation',
  },
  PV_ERR_VIRTIO_NEEDS_RESET: {
    status: -188,
    area: 'virtio',
    policy: 'fatal',
    message: 'device needs reset after a driver protocol violation',
  },
} as const satisfies Record<string, ErrorSpec>;

/** Every stable error code. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Base of every pvio error: a stable `code`, a slot `status`, and the catalogue `policy`. */
export class PvError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly policy: ErrorPolicy;

  constructor(code: ErrorCode, message?: string) {
    const spec: ErrorSpec = ERROR_CATALOGUE[code];
    super(message ?? spec.message);
    this.code = code;
    this.status = spec.status;
    this.policy = spec.policy;
    this.name = CLASS_NAMES[spec.area];
  }
}

/** Bad argument, unsupported operation, limits. */
export class ArgError extends PvError {}
/** Guest memory accessors and page allocator. */
export class MemoryError extends PvError {}
/** Shared-ring index and layout violations. */
export class RingError extends PvError {}
/** Grant-table operations (map, unmap, copy, end access). */
export class GrantError extends PvError {}
/** Event-channel operations. */
export class EvtchnError extends PvError {}
/** Store (xenstore-like) operations. */
export class StoreError extends PvError {}
/** xenbus handshake. */
export class XenbusError extends PvError {}
/** Domain lifecycle. */
export class DomainError extends PvError {}
/** A request a backend refuses (bad op, bad length, malformed). */
export class RequestError extends PvError {}
/** A scenario or option a user gave that cannot run. */
export class ConfigError extends PvError {}
/** A verbs call the device or backend refused. */
export class RdmaError extends PvError {}
/** PCIe fabric routing, NTB windows and links. */
export class PcieError extends PvError {}
/** The device registry: lend, borrow, return. */
export class LendingError extends PvError {}
/** Block devices and the block split driver. */
export class BlockError extends PvError {}
/** Virtqueues and virtio device status / feature negotiation. */
export class VirtioError extends PvError {}

const CLASS_NAMES: Record<ErrorArea, string> = {
  arg: 'ArgError',
  memory: 'MemoryError',
  ring: 'RingError',
  grant: 'GrantError',
  evtchn: 'EvtchnError',
  store: 'StoreError',
  xenbus: 'XenbusError',
  domain: 'DomainError',
  request: 'RequestError',
  config: 'ConfigError',
  rdma: 'RdmaError',
  pcie: 'PcieError',
  lending: 'LendingError',
  block: 'BlockError',
  virtio: 'VirtioError',
};

const CLASSES: Record<ErrorArea, typeof PvError> = {
  arg: ArgError,
  memory: MemoryError,
  ring: RingError,
  grant: GrantError,
  evtchn: EvtchnError,
  store: StoreError,
  xenbus: XenbusError,
  domain: DomainError,
  request: RequestError,
  config: ConfigError,
  rdma: RdmaError,
  pcie: PcieError,
  lending: LendingError,
  block: BlockError,
  virtio: VirtioError,
};

const BY_STATUS = new Map<number, ErrorCode>();
for (const code of Object.keys(ERROR_CATALOGUE) as ErrorCode[]) {
  BY_STATUS.set(ERROR_CATALOGUE[code].status, code);
}

/** True when `code` names a catalogue entry. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code);
}

/** Builds the right subclass for a code (used on the receiving side of a thread or ring). */
export function errorFromCode(code: ErrorCode, message?: string): PvError {
  const area = ERROR_CATALOGUE[code].area;
  return new CLASSES[area](code, message);
}

/** Creates a typed error from its code; the usual way to throw (`throw pvError('PV_ERR_…')`). */
export const pvError = errorFromCode;

/** Maps a slot status back to its code; unknown negative statuses map to `PV_ERR_BAD_REQUEST`. */
export function codeFromStatus(status: number): ErrorCode | undefined {
  if (status === 0) return undefined;
  return BY_STATUS.get(status) ?? 'PV_ERR_BAD_REQUEST';
}

/** The slot status of any thrown value: its code's, or `PV_ERR_BAD_REQUEST`'s (codeFromStatus's inverse). */
export function statusFromError(err: unknown): number {
  const code = (err as { code?: unknown } | undefined)?.code;
  return isErrorCode(code) ? ERROR_CATALOGUE[code].status : ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status;
}

/** What crosses a thread boundary for an error: plain data. */
export interface WireError {
  readonly code: string;
  readonly message: string;
}

/** Flattens any thrown value for `postMessage`. Non-pvio errors keep their message. */
export function toWireError(err: unknown): WireError {
  if (err instanceof PvError) return { code: err.code, message: err.message };
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : 'PV_ERR_UNKNOWN', message: err.message };
  }
  return { code: 'PV_ERR_UNKNOWN', message: String(err) };
}

/** Rebuilds an error received from another thread: a catalogue code gives its class back. */
export function fromWireError(wire: WireError): Error {
  if (isErrorCode(wire.code)) return errorFromCode(wire.code, wire.message);
  const err = new Error(wire.message) as Error & { code: string };
  err.code = wire.code;
  return err;
}
