/**
 * An echo device over one SplitDevice: each popped chain's readable bytes are copied (through a
 * private bounce buffer) into its writable bytes, as many as both sides hold, and the chain is
 * completed with that length. What it served is recorded for the target's oracles: the head,
 * the used length, and the backing byte ranges of the writable segments (the only guest bytes,
 * besides the used ring, the device may change).
 */

import type { IovecList } from '../../backend/virtio/DescChain.js';
import type { SplitDevice } from '../../backend/virtio/SplitDevice.js';
import type { GuestRam } from './GuestRam.js';

/** Largest echo per chain (a chain may carry up to 2^32 bytes; the echo stops here). */
export const ECHO_MAX = 0x20000;

/** One completed chain. */
export interface Served {
  readonly head: number;
  readonly len: number;
  /** Backing [start, end) of each writable segment, per the guest's own region list. */
  readonly writable: ReadonlyArray<readonly [number, number]>;
}

/** See the file comment. */
export class EchoServer {
  readonly served: Served[] = [];
  private readonly _bounce = new Uint8Array(ECHO_MAX);
  readonly iov: IovecList;

  constructor(
    readonly dev: SplitDevice,
    private readonly _ram: GuestRam,
  ) {
    this.iov = dev.newIovecList();
  }

  /**
   * Pops, echoes and completes one chain; returns its head, or −1 when nothing was available.
   * Whatever the device throws is thrown on.
   */
  serveOne(): number {
    const iov = this.iov;
    const head = this.dev.pop(iov);
    if (head < 0) return -1;
    const n = Math.min(iov.readableBytes, iov.writableBytes, ECHO_MAX);
    const got = iov.read(0, this._bounce, 0, n);
    const put = iov.write(0, this._bounce, 0, got);
    const writable: Array<[number, number]> = [];
    for (let i = iov.readableCount; i < iov.readableCount + iov.writableCount; i++) {
      const r = this._ram.regionAt(iov.gpa(i), iov.len(i));
      // A segment outside the oracle's regions is RecordingMap's finding; record nothing allowed for it.
      if (r) {
        const start = r.offset + (iov.gpa(i) - r.gpa);
        writable.push([start, start + iov.len(i)]);
      }
    }
    this.dev.pushUsed(head, put);
    this.served.push({ head, len: put, writable });
    return head;
  }
}
