/**
 * What each end does next, as a pure function of what it sees (own state, the peer's state as
 * just re-read, and a few local flags). Keeping the decisions here, apart from the store plumbing,
 * makes the machine level-triggered by construction: a watch event only means "look again", and
 * the same view always gives the same action, so coalesced or spurious events are harmless.
 *
 * Sources: startup and teardown follow blkif.h's state diagrams and Linux blkback/blkfront
 * (reference §4.3, §4.4). pvio departs from Linux in two places, both to make a backend restart
 * visible to the frontend even when watch events coalesce (design reasoning, no source):
 *  - a backend in InitWait does not connect to a frontend that already says Connected (that
 *    frontend is attached to a previous backend instance); it waits for the frontend to notice
 *    (it sees InitWait while Connected), tear down and publish a fresh ring;
 *  - a Connected backend that sees the frontend Initialised compares the frontend's keys with
 *    those it connected with, and reconnects if they changed (a frontend restart it missed).
 */

import { PEER_GONE, type PeerState, XenbusState } from './XenbusState.js';

/** Frontend steps. */
export type FrontendAction =
  /** Nothing to do in this view. */
  | 'none'
  /** Allocate and grant the ring (`setup` hook), publish keys, go Initialised. */
  | 'setup'
  /** Read the backend's properties (`connected` hook), go Connected. */
  | 'connected'
  /** Go Closing (own close request). */
  | 'closing'
  /** Go Closed (ack of the backend's Closing, or end of our own close). */
  | 'closed'
  /** The backend went away or restarted: withdraw keys, go Initialising, release the ring. */
  | 'reset'
  /** The backend no longer maps our ring: release it (`disconnected` hook). */
  | 'release'
  /** From Closed, start over: go Initialising. */
  | 'reconnect';

/** Backend steps. */
export type BackendAction =
  | 'none'
  /** Disconnect (idempotent), read the frontend's keys, map and bind (`connect` hook), go Connected. */
  | 'connect'
  /** Connected but the frontend says Initialised: reconnect only if its keys changed. */
  | 'recheck'
  /** Disconnect, go InitWait ("prepare for reconnect"). */
  | 'initWait'
  /** Go Closing (follow the frontend, or own unplug request). */
  | 'closing'
  /** Disconnect, go Closed. */
  | 'closed'
  /** The frontend's state is not a valid state: disconnect, go Closing (xenbus_dev_fatal). */
  | 'fatal';

/** What a frontend sees. */
export interface FrontendView {
  readonly state: XenbusState;
  readonly peer: PeerState;
  /** `close()` was called (or reconnecting was given up): head for Closed and stay there. */
  readonly closing: boolean;
  /** The `setup` hook ran and `disconnected` has not: we hold a ring the backend may map. */
  readonly holding: boolean;
  /** Set up without waiting for InitWait (blkif.h shortcut: defaults in effect). */
  readonly eager: boolean;
}

/** What a backend sees. */
export interface BackendView {
  readonly state: XenbusState;
  readonly peer: PeerState;
  /** `close()` was called (unplug): head for Closed and stay there. */
  readonly closing: boolean;
}

/** Backend states in which it maps nothing of ours, so the ring may be released. */
function backendUnmapped(p: PeerState): boolean {
  return (
    p === PEER_GONE ||
    p === XenbusState.Closed ||
    p === XenbusState.Initialising ||
    p === XenbusState.InitWait ||
    p === XenbusState.Initialised
  );
}

/**
 * Frontend table. The ring is released only once the backend cannot be mapping it any more
 * (order of XSA-396: backend unmaps, then the frontend ends its grants).
 */
export function frontendAction(v: FrontendView): FrontendAction {
  const { state: s, peer: p } = v;
  if (v.closing) {
    if (s !== XenbusState.Closing && s !== XenbusState.Closed) return 'closing';
    if (s === XenbusState.Closing) {
      return p === XenbusState.Closing || p === XenbusState.Closed || p === PEER_GONE ? 'closed' : 'none';
    }
    return v.holding && backendUnmapped(p) ? 'release' : 'none';
  }
  // An invalid peer state is never acted upon (blkfront ignores Unknown too).
  if (p === XenbusState.Unknown) return 'none';
  switch (s) {
    case XenbusState.Initialising:
      if (p === XenbusState.InitWait || p === XenbusState.Initialised) return 'setup';
      if (v.eager && p === XenbusState.Initialising) return 'setup';
      return p === XenbusState.Closing ? 'closed' : 'none';
    case XenbusState.Initialised:
      if (p === XenbusState.Connected) return 'connected';
      if (p === XenbusState.Closing) return 'closed';
      // A backend that is gone or restarting will (re)connect to the keys we published.
      return p === XenbusState.Closed ? 'reset' : 'none';
    case XenbusState.Connected:
      if (p === XenbusState.Connected || p === XenbusState.Reconfiguring || p === XenbusState.Reconfigured) {
        return 'none';
      }
      return p === XenbusState.Closing ? 'closed' : 'reset';
    case XenbusState.Closing:
      return p === XenbusState.Closing || p === XenbusState.Closed || p === PEER_GONE ? 'closed' : 'none';
    case XenbusState.Closed:
      if (v.holding) return backendUnmapped(p) ? 'release' : 'none';
      return p === XenbusState.Closed || p === PEER_GONE || p === XenbusState.Initialising || p === XenbusState.InitWait
        ? 'reconnect'
        : 'none';
    default:
      return 'none';
  }
}

/** Backend table (Linux blkback `frontend_changed`, with the two changes above). */
export function backendAction(v: BackendView): BackendAction {
  const { state: s, peer: p } = v;
  if (v.closing) {
    if (s !== XenbusState.Closing && s !== XenbusState.Closed) return 'closing';
    return s === XenbusState.Closing && (p === XenbusState.Closed || p === PEER_GONE) ? 'closed' : 'none';
  }
  switch (p) {
    case PEER_GONE:
    case XenbusState.Closed:
      return s === XenbusState.Closed ? 'none' : 'closed';
    case XenbusState.Closing:
      return s === XenbusState.Closing || s === XenbusState.Closed ? 'none' : 'closing';
    case XenbusState.Initialising:
      return s === XenbusState.InitWait ? 'none' : 'initWait';
    case XenbusState.Initialised:
      if (s === XenbusState.InitWait) return 'connect';
      if (s === XenbusState.Connected) return 'recheck';
      // Closed: the frontend started over and we missed its Initialising.
      return s === XenbusState.Closed ? 'initWait' : 'none';
    case XenbusState.Connected:
    case XenbusState.InitWait:
    case XenbusState.Reconfiguring:
    case XenbusState.Reconfigured:
      return 'none';
    default:
      // Unknown: the frontend wrote something that is not a state.
      return s === XenbusState.Closing || s === XenbusState.Closed ? 'none' : 'fatal';
  }
}
