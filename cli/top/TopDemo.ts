/**
 * `pvio top --demo`: a live workload to watch, run in this process on one host with REAL Workers
 * (the Scenario machinery): dom0 serves three guests — an RDMA guest doing 4 KiB WRITEs at queue
 * depth 1, a guest keeping 64 RDMA WRITEs posted beside it (the fairness benchmark's programs,
 * bench/fairness), and a guest doing 4 KiB random reads of its paravirtual disk — for `seconds`.
 * Snapshots come straight from the process's live hosts (LiveHosts.ts).
 */

import { newControl } from '../../bench/fairness/Control.js';
import { snapshotAll } from '../../hypervisor-sim/monitor/LiveHosts.js';
import type { MonitorSnapshot } from '../../hypervisor-sim/monitor/Snapshot.js';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';

const NEIGHBOUR = new URL('../../bench/fairness/Neighbour.js', import.meta.url);
const FLOODER = new URL('../../bench/fairness/Flooder.js', import.meta.url);

/** The demo as a snapshot source for TopCommand. */
export function startDemo(seconds: number): {
  snapshot(): Promise<MonitorSnapshot>;
  readonly ended: Promise<string>;
  close(): Promise<void>;
} {
  const ctl = newControl();
  const stop = new SharedArrayBuffer(4);
  const nic = [{ device: 'nic0', transport: 'paravirt' as const }];
  const disk = [{ device: 'nvme0', transport: 'paravirt' as const }];
  const run = runScenario({
    host: { nics: 1, nvmes: [{ sizeBytes: 64 << 20 }] },
    guests: [
      {
        name: 'rdma-lat',
        program: NEIGHBOUR,
        memoryMiB: 16,
        devices: nic,
        args: { backend: 'rdma', seconds, ctl, stop, status: true },
      },
      {
        name: 'rdma-flood',
        program: FLOODER,
        memoryMiB: 16,
        devices: nic,
        args: { backend: 'rdma', mode: 'full', ctl },
      },
      {
        name: 'blk-reader',
        program: NEIGHBOUR,
        memoryMiB: 16,
        devices: disk,
        args: { backend: 'blk', seconds, stop, status: true },
      },
    ],
  });
  const ended = run.then(
    () => 'demo finished',
    (err: unknown) => `demo failed: ${err instanceof Error ? err.message : String(err)}`,
  );
  return {
    ended,
    snapshot: async () => snapshotAll(`pvio top --demo --seconds ${seconds}`),
    // Quitting early: the guests end their timed phase, the flooder follows, the host shuts down
    // (removing its temporary disk) before the command returns.
    close: async () => {
      // ORDERING: seq-cst store; the guests load it before each operation.
      Atomics.store(new Int32Array(stop), 0, 1);
      await ended;
    },
  };
}
