/**
 * What the verbs frontend of a split RDMA driver needs from its transport, so one frontend
 * (ParavirtProvider, PvObjects, DataPoster, CtrlClient) runs over both designs the project
 * compares:
 *  - `paravirt` / `paravirt-copy`: Xen rings in granted pages and an event channel (PvChannel.ts),
 *    memory exported page by page with grants (PvGrants.ts), a xenbus device;
 *  - `virtio` / `virtio-packed`: two virtqueues of a virtio-mmio device
 *    (frontend/verbs/virtio/VirtioChannel.ts), memory named by guest-physical address
 *    (GpaExport.ts), the virtio status negotiation.
 * Both carry the same slot images: one control slot (CtrlCodec.ts) per call, one data slot
 * (DataSlot.ts) per WR, one response slot per request.
 */

import type { GrantRef, GuestPhysAddr } from '../../../protocol/Types.js';

/** Called for each data response taken off the transport (the slot's words at `w`). */
export type DataResponseSink = (words: Int32Array, w: number) => void;

/** The control and data paths of one device. */
export interface RdmaChannel {
  /** Counters (control calls, sleeps, waits for a full data path, …). */
  readonly stats: Readonly<Record<string, number>>;
  /** The data request being filled: its words, and the commit that queues it (published by `push`). */
  readonly data: { readonly words: Int32Array; commitRequest(): void };
  /** Where data responses go (set once by the provider). */
  onDataResponse(sink: DataResponseSink): void;
  /** One synchronous control round trip: the encoded request in, a private copy of the response out. */
  call(msg: Uint8Array): Uint8Array;
  /** Word offset in `data.words` of a free data request slot (waits, bounded, if none is free). */
  dataSlot(): number;
  /** Publishes the queued data requests; notifies the backend only if it asked. */
  push(): void;
  /** Takes every data response the backend published, handing each to the sink; returns how many. */
  drainData(): number;
}

/**
 * How the frontend hands memory to the backend: grant refs (`byAddress` false: the refs travel
 * in the commands, and end when the backend unmapped them) or nothing at all (`byAddress` true:
 * the commands carry guest-physical addresses and the device model maps them itself).
 */
export interface MemoryExport {
  readonly byAddress: boolean;
  /** Grants `pages` pages from `addr` (none when `byAddress`). */
  grantRange(addr: number, pages: number, readonly: boolean): GrantRef[];
  /** Ends `refs` and frees `free` once nothing maps them (at once when `byAddress`). */
  end(refs: readonly GrantRef[], free?: { addr: GuestPhysAddr; pages: number }): void;
  /** Grants still mapped by the backend. */
  readonly lingering: number;
  /** Retries what lingers; returns how many refs stay mapped (leaked, never reused). */
  settle(timeoutMs?: number): Promise<number>;
}

/** The device a provider closes at the end (a xenbus device, or a virtio device it resets). */
export interface RdmaDeviceHandle {
  /** Orderly close (the backend tears its side down). */
  close(): Promise<void>;
  /** Forced end when the orderly close did not finish. */
  destroy(): Promise<void>;
}
