/**
 * What crosses the `MessagePort` between a domain's `StoreClient` and the host's `StoreServer`.
 *
 * ```
 * client → server   { id, op, args }           a request; `id` is echoed in the response
 * server → client   { id, ok: true, value }     success
 *                   { id, ok: false, error }    failure; `error` is a WireError (code survives)
 * server → client   { watchId, path }           a watch event (no response expected)
 * client → server   { ack: watchId }            the event was handled; frees a delivery credit
 * ```
 * The domain id is never in a message: the server knows which domain is on each port.
 * `watchId` is chosen by the client (like a xenstore token), so an event that overtakes the
 * response to its `watch` request still finds its callback.
 */

import type { WireError } from '../../protocol/errors.js';

/** Every operation a client may request; `StoreSession` holds the one table that runs them. */
export const STORE_OPS = [
  'read',
  'tryRead',
  'write',
  'mkdir',
  'rm',
  'directory',
  'setPerms',
  'getPerms',
  'watch',
  'unwatch',
  'transactionStart',
  'transactionEnd',
] as const;

/** Name of a store operation. */
export type StoreOpName = (typeof STORE_OPS)[number];

/** A request from a client. */
export interface StoreRequest {
  readonly id: number;
  readonly op: StoreOpName;
  readonly args: readonly unknown[];
}

/** The answer to one request. */
export type StoreResponse =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: WireError };

/** A watch event pushed to a client. */
export interface StoreWatchEvent {
  readonly watchId: number;
  readonly path: string;
}

/** A client's acknowledgement of one watch event. */
export interface StoreWatchAck {
  readonly ack: number;
}

/** Server side: a well-formed request envelope (the args are checked per op later). */
export function isStoreRequest(msg: unknown): msg is { id: number; op: unknown; args: unknown } {
  return typeof msg === 'object' && msg !== null && typeof (msg as { id?: unknown }).id === 'number';
}

/** Server side: an acknowledgement. */
export function isStoreWatchAck(msg: unknown): msg is StoreWatchAck {
  return typeof msg === 'object' && msg !== null && typeof (msg as { ack?: unknown }).ack === 'number';
}

/** Client side: a watch event (the server is trusted; only the shape is told apart). */
export function isStoreWatchEvent(msg: unknown): msg is StoreWatchEvent {
  return typeof msg === 'object' && msg !== null && typeof (msg as { watchId?: unknown }).watchId === 'number';
}
