/**
 * The device's guest memory map, wrapped so every translation it hands out is checked against
 * the guest's own region list (GuestRam, the oracle): the range must lie inside one region, the
 * returned backing offset must be that region's, and a write must not target a read-only region.
 * Together with the canary holes of GuestRam this is the "recording canary" of the virtq target:
 * the holes catch a write that got out anyway, the record catches the translation that let it.
 *
 * `inner` lets a test put a deliberately faulty map under the recorder, to prove the checks fire.
 */

import { GuestMemoryMap, type Translation } from '../../backend/virtio/GuestMemoryMap.js';
import { guestPhysAddr } from '../../protocol/Types.js';
import type { Violation } from '../core/FuzzTarget.js';
import type { GuestRam } from './GuestRam.js';

/** See the file comment. */
export class RecordingMap extends GuestMemoryMap {
  /** Translations handed out. */
  translations = 0;
  private readonly _violations: Violation[] = [];

  constructor(
    private readonly _ram: GuestRam,
    private readonly _what: string,
    private readonly _inner?: GuestMemoryMap,
  ) {
    super(
      _ram.regions.map((r) => ({
        gpa: guestPhysAddr(r.gpa),
        size: r.size,
        backing: _ram.sab,
        offset: r.offset,
        readOnly: r.readOnly,
      })),
    );
  }

  override translate(gpa: number, len: number, write: boolean, out: Translation): void {
    if (this._inner) this._inner.translate(gpa, len, write, out);
    else super.translate(gpa, len, write, out);
    this.translations++;
    // A zero-length range at the boundary of two GPA-adjacent regions belongs to either.
    const r = this._ram.regions.find(
      (x) => gpa >= x.gpa && gpa + len <= x.gpa + x.size && out.offset === x.offset + (gpa - x.gpa),
    );
    const where = `${this._what}: 0x${gpa.toString(16)}+${len}`;
    if (!r || out.bytes.buffer !== this._ram.sab) {
      this._violations.push({
        signature: 'virtq/memory:translated-outside',
        detail: `${where} resolved to backing ${out.offset}, not inside one region`,
      });
    } else if (write && r.readOnly) {
      this._violations.push({ signature: 'virtq/memory:write-read-only', detail: `${where} resolved for writing` });
    }
  }

  /** The violations recorded since the last call. */
  take(): Violation[] {
    return this._violations.splice(0);
  }
}
