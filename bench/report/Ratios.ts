/**
 * The ratio arithmetic of a `pvio compare` cell, shared by the terminal table and the Markdown
 * report so both print the same numbers.
 *
 * Every ratio is `this cell's value / the reference value` for the same op, kind and size:
 * - latency cells compare medians (µs), so > 1 means slower than the reference;
 * - bandwidth cells compare average MiB/s, so < 1 means less bandwidth than the reference.
 * The floors come from the same run: a latency floor is the spinning thread hand-off (half its
 * round trip for write/send, whose perftest latency is half a ping-pong; the full round trip for
 * read, whose latency is a full round trip, and for a block request); the bandwidth floor is the SharedArrayBuffer memcpy.
 */
import type { CellKey, CellResult, CompareResults, CompareTransport } from '../compare/Results.js';
import { findCell, isBlockOp } from '../compare/Results.js';

/** The figure of a cell and its three ratios; a field is undefined when it cannot be computed. */
export interface CellRatios {
  /** Median µs (lat) or average MiB/s (bw); undefined when the cell failed or has no result. */
  readonly value?: number;
  /** The floor the cell is compared with: µs (lat) or MiB/s (bw). */
  readonly floor?: number;
  /** value / the native cell's value. */
  readonly toNative?: number;
  /** value / the passthrough cell's value. */
  readonly toPassthrough?: number;
  /** value / floor. */
  readonly toFloor?: number;
}

/** A positive, finite number or nothing: a ratio against 0, NaN or a missing figure means nothing. */
function usable(x: number | undefined): number | undefined {
  return x !== undefined && Number.isFinite(x) && x > 0 ? x : undefined;
}

/** `a / b` when both are usable, else undefined. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  const num = usable(a);
  const den = usable(b);
  return num === undefined || den === undefined ? undefined : num / den;
}

/** The figure a cell is ranked by: median µs for lat, average MiB/s for bw; undefined if it failed. */
export function cellValue(cell: CellResult | undefined): number | undefined {
  if (cell === undefined || cell.error !== undefined) return undefined;
  const v = cell.kind === 'lat' ? cell.lat?.usec.median : cell.bw?.avgMiBps;
  return usable(v);
}

/**
 * The in-run floor for a cell key: spinning hand-off round trip / 2 for write and send latency,
 * the full round trip for read latency, the memcpy bandwidth for every bandwidth cell.
 */
export function floorFor(r: CompareResults, key: Pick<CellKey, 'op' | 'kind'>): number | undefined {
  if (key.kind === 'bw') return usable(r.floors.memcpyMiBps);
  const rtt = usable(r.floors.handoffSpinRttUs.median);
  if (rtt === undefined) return undefined;
  // A block request is a full round trip (submit → completion), as an RDMA READ is.
  return key.op === 'read' || isBlockOp(key.op) ? rtt : rtt / 2;
}

/** The value of the same op × kind × size cell on another transport. */
function referenceValue(r: CompareResults, cell: CellKey, transport: CompareTransport): number | undefined {
  return cellValue(findCell(r, { transport, op: cell.op, kind: cell.kind, size: cell.size }));
}

/**
 * A cell's value and its ratios to native, to passthrough and to the floor. A native cell's
 * ratio to native is 1 (it is its own reference), and likewise for passthrough.
 */
export function ratios(r: CompareResults, cell: CellResult): CellRatios {
  const value = cellValue(cell);
  const floor = floorFor(r, cell);
  return {
    value,
    floor,
    toNative: ratio(value, referenceValue(r, cell, 'native')),
    toPassthrough: ratio(value, referenceValue(r, cell, 'passthrough')),
    toFloor: ratio(value, floor),
  };
}
