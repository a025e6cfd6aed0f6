/**
 * SmartIO's shared memory segments (TOCS 2021; Dolphin SISCI's `SCICreateSegment` /
 * `SCIConnectSegment`): a host exports a named region of its memory, other hosts (and devices
 * lent to them) map it and read and write it directly, so a cluster application and a lent
 * device can share one global address space.
 *
 * A mapping is the program-side view: the exporter's SharedArrayBuffer itself (from
 * `bufferOffset`) plus the exporter's identity and the segment's `base` (its address in the
 * exporter's bus address space). The Cluster (cluster/ClusterSegments.ts) places segments in a
 * host's segment pool and opens the NTB windows through which mapping hosts and their lent
 * devices reach `base` across the fabric.
 *
 * Rules: names are unique cluster-wide; only the exporter unexports; an unexport is refused
 * while anyone has the segment mapped (PV_ERR_LEND_IN_USE) unless forced, which revokes every
 * mapping: its `onRevoke` runs, and every later access through it throws PV_ERR_LEND_REVOKED.
 * Accesses go through `read`/`write`/`view`, which check the mapping is live and the range is
 * inside the segment; a Uint8Array taken from `view` before a revocation cannot be recalled
 * (plain memory), so users take a view per access.
 */

import { type PvError, pvError } from '../../protocol/errors.js';
import type { HostName } from './Types.js';

/** What an exporter offers. */
export interface SegmentSpec {
  /** Cluster-wide unique name. */
  readonly name: string;
  /** Exporting host. */
  readonly host: HostName;
  /** Bytes in the segment (> 0). */
  readonly size: number;
  /** Address of the segment in the exporter's physical address space (default 0: not placed yet). */
  readonly base?: number;
  /** Backing memory, at least `size` bytes (the segment is its first `size` bytes); allocated if absent. */
  readonly buffer?: SharedArrayBuffer;
  /** Where the segment starts in `buffer` (default 0; a host's segment pool holds several). */
  readonly bufferOffset?: number;
}

/** A segment as `lookup` and `list` report it. */
export interface SegmentInfo {
  readonly name: string;
  readonly host: HostName;
  readonly size: number;
  readonly base: number;
  /** Hosts that have it mapped, one entry per mapping, in mapping order. */
  readonly mappedBy: readonly HostName[];
}

/** The registry's record of one exported segment. */
export interface ExportedSegment {
  readonly name: string;
  readonly host: HostName;
  readonly size: number;
  readonly base: number;
  readonly buffer: SharedArrayBuffer;
  /** Byte offset of the segment in `buffer`. */
  readonly offset: number;
  readonly mappings: Set<SegmentMapping>;
}

/** A host's mapping of a segment. */
export class SegmentMapping {
  /** Registry-wide unique mapping id. */
  readonly id: number;
  readonly segment: string;
  /** The exporting host and the segment's address there (see the file comment). */
  readonly exporter: HostName;
  readonly base: number;
  readonly size: number;
  /** The mapping host. */
  readonly mapper: HostName;
  private readonly _buffer: SharedArrayBuffer;
  private readonly _offset: number;
  private readonly _onRevoke: ((err: PvError) => void) | undefined;
  private _ended: PvError | undefined;
  private readonly _release: (m: SegmentMapping) => void;

  /** Made by SegmentRegistry.map only. */
  constructor(
    id: number,
    seg: ExportedSegment,
    mapper: HostName,
    release: (m: SegmentMapping) => void,
    onRevoke?: (err: PvError) => void,
  ) {
    this.id = id;
    this.segment = seg.name;
    this.exporter = seg.host;
    this.base = seg.base;
    this.size = seg.size;
    this.mapper = mapper;
    this._buffer = seg.buffer;
    this._offset = seg.offset;
    this._release = release;
    this._onRevoke = onRevoke;
  }

  /** True once unmapped or revoked. */
  get ended(): boolean {
    return this._ended !== undefined;
  }

  /** A byte view of [offset, offset + length) of the segment. */
  view(offset = 0, length = this.size - offset): Uint8Array {
    this._check(offset, length);
    return new Uint8Array(this._buffer, this._offset + offset, length);
  }

  /** Copies `length` bytes at `offset` out of the segment. */
  read(offset: number, length: number): Uint8Array {
    return this.view(offset, length).slice();
  }

  /** Copies `data` into the segment at `offset`. */
  write(offset: number, data: Uint8Array): void {
    this.view(offset, data.length).set(data);
  }

  /** Drops the mapping (idempotent); later accesses throw PV_ERR_LEND_NOT_HOLDER. */
  unmap(): void {
    if (this._ended !== undefined) return;
    this._ended = pvError('PV_ERR_LEND_NOT_HOLDER', `${this.mapper} unmapped segment ${this.segment}`);
    this._release(this);
  }

  /** Called by a forced unexport. */
  revoke(): void {
    if (this._ended !== undefined) return;
    this._ended = pvError('PV_ERR_LEND_REVOKED', `segment ${this.segment} was unexported by ${this.exporter}`);
    this._onRevoke?.(pvError('PV_ERR_LEND_REVOKED', this._ended.message));
  }

  private _check(offset: number, length: number): void {
    if (this._ended !== undefined) throw pvError(this._ended.code, this._ended.message);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `segment ${this.segment}: bad range ${offset} + ${length}`);
    }
    if (offset + length > this.size) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `segment ${this.segment}: [${offset}, ${offset + length}) > ${this.size}`);
    }
  }
}

/** Options of `map`. */
export interface MapOptions {
  /** Runs when a forced unexport revokes the mapping. */
  readonly onRevoke?: (err: PvError) => void;
}

/** The cluster's exported segments (see the file comment). */
export class SegmentRegistry {
  private readonly _segments = new Map<string, ExportedSegment>();
  private _nextMapping = 1;

  /** Exports a segment; returns its backing buffer (the exporter's own memory). */
  export(spec: SegmentSpec): SharedArrayBuffer {
    if (typeof spec?.name !== 'string' || spec.name.length === 0) {
      throw pvError('PV_ERR_INVALID_ARG', 'segment name must be a non-empty string');
    }
    if (typeof spec.host !== 'string' || spec.host.length === 0) {
      throw pvError('PV_ERR_INVALID_ARG', `segment ${spec.name}: host must be a non-empty string`);
    }
    if (this._segments.has(spec.name)) throw pvError('PV_ERR_INVALID_ARG', `segment ${spec.name} is already exported`);
    if (!Number.isSafeInteger(spec.size) || spec.size <= 0) {
      throw pvError('PV_ERR_INVALID_ARG', `segment ${spec.name}: size must be a positive integer, got ${spec.size}`);
    }
    const base = spec.base ?? 0;
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(base + spec.size)) {
      throw pvError('PV_ERR_INVALID_ARG', `segment ${spec.name}: base must be a non-negative integer, got ${base}`);
    }
    const buffer = spec.buffer ?? new SharedArrayBuffer(spec.size);
    const offset = spec.bufferOffset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw pvError('PV_ERR_INVALID_ARG', `segment ${spec.name}: bufferOffset must be a non-negative integer`);
    }
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < offset + spec.size) {
      throw pvError(
        'PV_ERR_INVALID_ARG',
        `segment ${spec.name}: buffer must be a SharedArrayBuffer of ≥ ${offset + spec.size} B`,
      );
    }
    const seg = {
      name: spec.name,
      host: spec.host,
      size: spec.size,
      base,
      buffer,
      offset,
      mappings: new Set<SegmentMapping>(),
    };
    this._segments.set(spec.name, seg);
    return buffer;
  }

  /** One segment. */
  lookup(name: string): SegmentInfo {
    return info(this._segment(name));
  }

  /** Every segment, in export order. */
  list(): SegmentInfo[] {
    return [...this._segments.values()].map(info);
  }

  /** Maps a segment for `host` (the exporter may map its own segment too). */
  map(name: string, host: HostName, opts: MapOptions = {}): SegmentMapping {
    const seg = this._segment(name);
    if (typeof host !== 'string' || host.length === 0) {
      throw pvError('PV_ERR_INVALID_ARG', 'host must be a non-empty string');
    }
    const m = new SegmentMapping(this._nextMapping++, seg, host, (x) => seg.mappings.delete(x), opts.onRevoke);
    seg.mappings.add(m);
    return m;
  }

  /**
   * Withdraws a segment. Only its exporter may (PV_ERR_LEND_NOT_HOLDER); refused while mapped
   * (PV_ERR_LEND_IN_USE) unless forced. Returns how many mappings were revoked.
   */
  unexport(name: string, host: HostName, opts: { readonly force?: boolean } = {}): number {
    const seg = this._segment(name);
    if (host !== seg.host)
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `segment ${name} is exported by ${seg.host}, not ${host}`);
    const mapped = [...seg.mappings];
    if (mapped.length > 0 && opts.force !== true) {
      throw pvError('PV_ERR_LEND_IN_USE', `segment ${name} is mapped by ${mapped.map((m) => m.mapper).join(', ')}`);
    }
    // Remove first: an onRevoke callback that re-maps finds the segment gone (NOT_FOUND).
    this._segments.delete(name);
    seg.mappings.clear();
    // Every mapping is revoked even if one callback throws; the first throw is rethrown after.
    let thrown: { err: unknown } | undefined;
    for (const m of mapped) {
      try {
        m.revoke();
      } catch (err) {
        thrown ??= { err };
      }
    }
    if (thrown !== undefined) throw thrown.err;
    return mapped.length;
  }

  private _segment(name: string): ExportedSegment {
    const seg = this._segments.get(name);
    if (seg === undefined) throw pvError('PV_ERR_LEND_NOT_FOUND', `no segment ${String(name)} is exported`);
    return seg;
  }
}

function info(seg: ExportedSegment): SegmentInfo {
  return {
    name: seg.name,
    host: seg.host,
    size: seg.size,
    base: seg.base,
    mappedBy: [...seg.mappings].map((m) => m.mapper),
  };
}
