/**
 * Worker side of the cross-thread window test: attaches to the cluster from its descriptor and,
 * until `ctl[CTL_STOP]`, looks up and routes one address of host A's NTB aperture while the main
 * thread opens and closes window X or Y over it. Every answer must be "no window" or exactly X or
 * exactly Y: a torn window (the base or size of one with the peer base of the other, or a half
 * written 64-bit field) matches neither.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { type ClusterDescriptor, PcieCluster } from '../../../../hypervisor-sim/pcie/PcieCluster.js';
import type { ClusterSpec, WindowSpec } from '../../../../hypervisor-sim/pcie/Types.js';
import type { WindowEntry } from '../../../../hypervisor-sim/pcie/WindowTable.js';
import { PvError } from '../../../../protocol/errors.js';
import { GIB } from './Clusters.js';

/** `ctl` words. */
export const CTL_STOP = 0;
export const CTL_HITS_X = 1;
export const CTL_HITS_Y = 2;
export const CTL_MISSES = 3;
export const CTL_VIOLATIONS = 4;
export const CTL_SWEEPS = 5;
export const CTL_WORDS = 8;

/** The address the reader resolves (inside both windows). */
export const PROBE = 0x9c00_1000;
/** Two windows over PROBE whose every field differs, 64-bit halves included. */
export const WIN_X: WindowSpec = { base: 0x9c00_0000, size: 0x2000, peerBase: 0x1_0000_0000 };
export const WIN_Y: WindowSpec = { base: 0x9bff_f000, size: 0x4000, peerBase: 0x3_2000_0000 };

/** A back-to-back pair with 16 GiB on B, so peer bases pass 2^32. */
export function bigPair(): ClusterSpec {
  return {
    hosts: [
      {
        name: 'A',
        ramBytes: GIB,
        nodes: [
          { id: 'rc', kind: 'rc' },
          { id: 'ntbA', kind: 'ntb', aperture: { size: 0x1000_0000, base: 0x9000_0000 } },
        ],
        links: [{ a: 'rc', b: 'ntbA' }],
      },
      {
        name: 'B',
        ramBytes: 16 * GIB,
        nodes: [
          { id: 'rc', kind: 'rc' },
          { id: 'ntbB', kind: 'ntb', aperture: { size: 0x1000_0000 } },
        ],
        links: [{ a: 'rc', b: 'ntbB' }],
      },
    ],
    ntbs: [
      {
        name: 'ab',
        sides: [
          { host: 'A', node: 'ntbA' },
          { host: 'B', node: 'ntbB' },
        ],
      },
    ],
  };
}

/** What the test passes in `workerData`. */
export interface WindowReaderData {
  readonly cluster: ClusterDescriptor;
  readonly ctl: SharedArrayBuffer;
}

/** 'X', 'Y', or null if `e` is neither window exactly. */
function which(e: WindowEntry): 'X' | 'Y' | null {
  for (const [name, w] of [['X', WIN_X] as const, ['Y', WIN_Y] as const]) {
    if (e.base === w.base && e.size === w.size && e.peerBase === w.peerBase && e.port === 0) return name;
  }
  return null;
}

function run(data: WindowReaderData): string | null {
  const ctl = new Int32Array(data.ctl);
  const cluster = PcieCluster.attach(data.cluster);
  const table = cluster.windowTable('A');
  let first: string | null = null;
  const violate = (what: string): void => {
    first ??= what;
    // ORDERING: seq-cst add; the test reads it after the worker is done.
    Atomics.add(ctl, CTL_VIOLATIONS, 1);
  };
  // ORDERING: seq-cst load; the test stores STOP once.
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const e = table.lookup(PROBE);
    if (e === null) {
      Atomics.add(ctl, CTL_MISSES, 1);
    } else {
      const w = which(e);
      if (w === null) violate(`torn lookup ${JSON.stringify(e)}`);
      else Atomics.add(ctl, w === 'X' ? CTL_HITS_X : CTL_HITS_Y, 1);
    }
    try {
      const r = cluster.route({ host: 'A', node: 'rc' }, PROBE as never, 8);
      const t = r.target;
      const ok = [WIN_X, WIN_Y].some(
        (w) => t.kind === 'ram' && t.host === 'B' && t.addr === w.peerBase + PROBE - w.base,
      );
      if (!ok) violate(`torn route ${JSON.stringify(t)}`);
    } catch (err) {
      if (!(err instanceof PvError) || err.code !== 'PV_ERR_PCIE_NO_WINDOW') violate(`route threw ${String(err)}`);
    }
    // ORDERING: seq-cst add; the writer dwells until it sees this advance.
    Atomics.add(ctl, CTL_SWEEPS, 1);
  }
  return first;
}

if (parentPort !== null && workerData !== null && workerData !== undefined) {
  const port = parentPort;
  port.postMessage({ type: 'ready' });
  port.postMessage({ type: 'done', firstViolation: run(workerData as WindowReaderData) });
}
