/**
 * XenBus device states (Xen `io/xenbus.h`, reference §4.1), the parsing of a peer's `state` key
 * and the transitions each side may make.
 *
 * The `state` key of the peer is untrusted input: `parseState` accepts only the canonical decimal
 * spelling of 0..8 and maps anything else to `Unknown`, which neither side ever acts on as if it
 * were a real state (the backend treats it as a fatal peer error, the frontend ignores it).
 */

import { pvError } from '../errors.js';

/** `enum xenbus_state`. */
export const enum XenbusState {
  Unknown = 0,
  /** Toolstack created the device; the driver has not started. */
  Initialising = 1,
  /** "Finished early initialisation but waiting for information from the peer." */
  InitWait = 2,
  /** "Waiting for a connection from the peer" (the frontend published its ring). */
  Initialised = 3,
  Connected = 4,
  /** "Being closed due to an error or an unplug event." */
  Closing = 5,
  Closed = 6,
  Reconfiguring = 7,
  Reconfigured = 8,
}

const NAMES = [
  'Unknown',
  'Initialising',
  'InitWait',
  'Initialised',
  'Connected',
  'Closing',
  'Closed',
  'Reconfiguring',
  'Reconfigured',
] as const;

/** The peer's `state` key is missing: its directory was removed (device or domain gone). */
export const PEER_GONE = 'gone';

/** What one side can observe of the other. */
export type PeerState = XenbusState | typeof PEER_GONE;

/** Which end of a split device. */
export type XenbusRole = 'frontend' | 'backend';

/** Human-readable name for logs and test messages. */
export function stateName(state: PeerState | number): string {
  if (state === PEER_GONE) return 'gone';
  return NAMES[state] ?? `invalid(${state})`;
}

/** Canonical spelling: no sign, no leading zero, no blanks, no exponent, no hex. */
const CANONICAL = /^[0-8]$/;

/** Parses an untrusted `state` value; anything but "0".."8" is `Unknown`. */
export function parseState(raw: string): XenbusState {
  return typeof raw === 'string' && CANONICAL.test(raw) ? (Number(raw) as XenbusState) : XenbusState.Unknown;
}

/** The value written to a `state` key. */
export function formatState(state: XenbusState): string {
  if (!Number.isInteger(state) || state < XenbusState.Unknown || state > XenbusState.Reconfigured) {
    throw pvError('PV_ERR_XENBUS_STATE', `not a xenbus state: ${state}`);
  }
  return String(state);
}

type Table = Readonly<Record<number, readonly XenbusState[]>>;

/**
 * States a frontend may write next, from each state. Start-up normalises a leftover state to
 * Initialising (or Closing when the backend is still attached, as `xenbus_reset_frontend` does);
 * Closing always leads to Closed, and Closed back to Initialising for a reconnect.
 */
const FRONTEND: Table = {
  [XenbusState.Unknown]: [XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Initialising]: [XenbusState.Initialised, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.InitWait]: [XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Initialised]: [XenbusState.Connected, XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Connected]: [XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Closing]: [XenbusState.Closed],
  [XenbusState.Closed]: [XenbusState.Initialising],
  [XenbusState.Reconfiguring]: [XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Reconfigured]: [XenbusState.Initialising, XenbusState.Closing, XenbusState.Closed],
};

/**
 * States a backend may write next. It (re)enters InitWait after probing and whenever the frontend
 * starts over (Closed → InitWait is Linux's "prepare for reconnect"); it never writes Initialised.
 */
const BACKEND: Table = {
  [XenbusState.Unknown]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Initialising]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.InitWait]: [XenbusState.Connected, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Initialised]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Connected]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Closing]: [XenbusState.Closed, XenbusState.InitWait],
  [XenbusState.Closed]: [XenbusState.InitWait],
  [XenbusState.Reconfiguring]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
  [XenbusState.Reconfigured]: [XenbusState.InitWait, XenbusState.Closing, XenbusState.Closed],
};

/** True when `role` may write `to` while its state is `from` (staying put is always allowed). */
export function canTransition(role: XenbusRole, from: XenbusState, to: XenbusState): boolean {
  if (from === to) return true;
  return (role === 'frontend' ? FRONTEND : BACKEND)[from]?.includes(to) ?? false;
}
