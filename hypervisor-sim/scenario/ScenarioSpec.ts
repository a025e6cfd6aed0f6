/**
 * A scenario, as a researcher describes it: the host (its NICs and NVMe SSDs, and how the NICs' engines run), the
 * driver domain, and the guests — each a program module with arguments and memory — with the
 * devices each guest uses and through which transport. `validateScenario` refuses a bad
 * scenario before anything starts, naming the field at fault.
 */

import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';

/** The transports a guest may use to reach an RDMA NIC. */
export const TRANSPORTS: readonly Transport[] = [
  'paravirt',
  'paravirt-copy',
  'virtio',
  'virtio-packed',
  'passthrough',
  'native',
  'tcp',
];
/** Transports whose NIC dom0 owns and serves to the guest (vrdma rings or virtio-rdma queues). */
export const SERVED_TRANSPORTS: readonly Transport[] = ['paravirt', 'paravirt-copy', 'virtio', 'virtio-packed'];

/** True when dom0 serves the device to the guest over `t` (see SERVED_TRANSPORTS). */
export function isServedTransport(t: Transport): boolean {
  return SERVED_TRANSPORTS.includes(t);
}

/** The transports a guest may use to reach an NVMe SSD (paravirt = a vbd served by dom0's blkback). */
export const BLOCK_TRANSPORTS: readonly Transport[] = ['paravirt', 'passthrough', 'native'];

/** One device a guest uses. */
export interface GuestDeviceSpec {
  /** A NIC of the host (`nic0`), an NVMe SSD (`nvme0`), or any name for `tcp` (no NIC is used). */
  readonly device: string;
  readonly transport: Transport;
}

/** One guest (or, with transport `native`, a program running in the host's own context). */
export interface GuestSpec {
  readonly name: string;
  /** URL or absolute path of the compiled program module (default export `main(env)`). */
  readonly program: string | URL;
  readonly args?: Record<string, unknown>;
  /** Guest memory in MiB (default 64). */
  readonly memoryMiB?: number;
  readonly devices?: readonly GuestDeviceSpec[];
}

/** One NVMe SSD of the host (named nvme0, nvme1, … in order). */
export interface NvmeHostSpec {
  /** Media size in bytes: a positive multiple of 512 (default 64 MiB). */
  readonly sizeBytes?: number;
  /** Backing file; default a sparse temporary file, removed when the scenario ends. */
  readonly backingFile?: string;
}

/** The host and its devices. */
export interface HostSpec {
  readonly name?: string;
  /** Number of RDMA NICs, named nic0 … (default 2), all on one wire. */
  readonly nics?: number;
  /**
   * Port id ("LID") of nic0; NIC i gets `portBase + i` (default 1). Hosts whose NICs talk to
   * each other over a host link (issue 6) need distinct ranges.
   */
  readonly portBase?: number;
  /** NVMe SSDs, named nvme0 … (default none). */
  readonly nvmes?: readonly NvmeHostSpec[];
  /** Where device engines run (DESIGN §4). */
  readonly deviceEngine?: 'inline' | 'dedicated';
  /** Wire model between NICs: `ideal` (no delay) or `ib-edr`. */
  readonly wire?: 'ideal' | 'ib-edr';
  /** PCIe timing of local device paths: `ideal` (no cost, default) or `pcie3-x8-ntb` (pcie/Profiles.ts). */
  readonly fabric?: 'ideal' | 'pcie3-x8-ntb';
  /**
   * Run the per-stage time ledgers (frontend, ring + notify, backend, grant map/copy, device,
   * fabric, idle) in every thread and return them (protocol/stage/StageLedger.ts; a guest program
   * may bound them to its measured loop with `stages.openWindow()` / `closeWindow()`). A clock
   * read per stage switch: keep it off in a run whose latency or bandwidth is reported, and get
   * the breakdown from a separate run.
   */
  readonly instrumentStages?: boolean;
}

/** The driver domain's backend. */
export interface BackendSpec {
  /** Polls before the backend sleeps. */
  readonly spinBudget?: number;
  /** Requests taken from one ring per round. */
  readonly batchLimit?: number;
  /** dom0 memory in MiB (default 256: bounce buffers and queues). */
  readonly memoryMiB?: number;
}

/** A whole scenario. */
export interface ScenarioSpec {
  readonly host?: HostSpec;
  readonly backend?: BackendSpec;
  readonly guests: readonly GuestSpec[];
}

/** Largest `host.portBase`. */
export const MAX_PORT_BASE = 0xffff_ff00;
/** Largest port id a NIC accepts (RnicDevice.create: [0, 2^31)). */
export const MAX_PORT_ID = 0x7fff_ffff;

/** Size of an NVMe SSD whose spec gives none. */
export const DEFAULT_NVME_BYTES = 64 << 20;

/** Smallest guest memory pvio accepts (rings, queues and a few buffers). */
export const MIN_GUEST_MIB = 4;
/** Largest guest memory (a SharedArrayBuffer of this size is committed lazily). */
export const MAX_GUEST_MIB = 4096;

function fail(field: string, why: string): never {
  throw pvError('PV_ERR_CONFIG', `${field}: ${why}`);
}

/** Checks a scenario; throws PV_ERR_CONFIG with a message that names the field. */
export function validateScenario(spec: ScenarioSpec): void {
  const nics = spec.host?.nics ?? 2;
  if (!Number.isInteger(nics) || nics < 0 || nics > 16) fail('host.nics', `must be an integer in [0, 16], got ${nics}`);
  const portBase = spec.host?.portBase ?? 1;
  if (!Number.isInteger(portBase) || portBase < 1 || portBase > MAX_PORT_BASE) {
    fail('host.portBase', `must be an integer in [1, ${MAX_PORT_BASE}], got ${portBase}`);
  }
  if (portBase + Math.max(nics, 1) - 1 > MAX_PORT_ID) {
    fail('host.portBase', `the last NIC's port id ${portBase + nics - 1} exceeds ${MAX_PORT_ID} (a NIC's limit)`);
  }
  const engine = spec.host?.deviceEngine ?? 'inline';
  if (engine !== 'inline' && engine !== 'dedicated') {
    fail('host.deviceEngine', `must be 'inline' or 'dedicated', got '${engine}'`);
  }
  const wire = spec.host?.wire ?? 'ideal';
  if (wire !== 'ideal' && wire !== 'ib-edr') fail('host.wire', `must be 'ideal' or 'ib-edr', got '${wire}'`);
  const fabric = spec.host?.fabric ?? 'ideal';
  if (fabric !== 'ideal' && fabric !== 'pcie3-x8-ntb') {
    fail('host.fabric', `must be 'ideal' or 'pcie3-x8-ntb', got '${String(fabric)}'`);
  }
  const instrument = spec.host?.instrumentStages;
  if (instrument !== undefined && typeof instrument !== 'boolean') {
    fail('host.instrumentStages', `must be a boolean, got ${JSON.stringify(instrument)}`);
  }
  const nvmes = spec.host?.nvmes ?? [];
  if (!Array.isArray(nvmes) || nvmes.length > 16) fail('host.nvmes', 'must be an array of at most 16 SSDs');
  nvmes.forEach((n, i) => {
    const size = n.sizeBytes ?? DEFAULT_NVME_BYTES;
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
      fail(`host.nvmes[${i}].sizeBytes`, `must be a positive multiple of 512, got ${size}`);
    }
    if (n.backingFile !== undefined && (typeof n.backingFile !== 'string' || n.backingFile.length === 0)) {
      fail(`host.nvmes[${i}].backingFile`, `must be a non-empty path, got ${JSON.stringify(n.backingFile)}`);
    }
  });
  if (!Array.isArray(spec.guests) || spec.guests.length === 0) fail('guests', 'a scenario needs at least one guest');
  const names = new Set<string>();
  const owners = new Map<string, string>();
  spec.guests.forEach((g, i) => {
    const at = `guests[${i}]`;
    if (typeof g.name !== 'string' || !/^[A-Za-z0-9_-]{1,32}$/.test(g.name)) {
      fail(`${at}.name`, `must be 1-32 letters, digits, '-' or '_', got ${JSON.stringify(g.name)}`);
    }
    if (names.has(g.name)) fail(`${at}.name`, `'${g.name}' is used by two guests`);
    names.add(g.name);
    if (!(g.program instanceof URL) && typeof g.program !== 'string') fail(`${at}.program`, 'must be a URL or a path');
    const mib = g.memoryMiB ?? 64;
    if (!Number.isInteger(mib) || mib < MIN_GUEST_MIB || mib > MAX_GUEST_MIB) {
      fail(`${at}.memoryMiB`, `must be an integer in [${MIN_GUEST_MIB}, ${MAX_GUEST_MIB}] MiB, got ${mib}`);
    }
    const devices: readonly GuestDeviceSpec[] = g.devices ?? [];
    devices.forEach((d, j) => {
      const dat = `${at}.devices[${j}]`;
      if (!TRANSPORTS.includes(d.transport)) {
        fail(`${dat}.transport`, `unknown transport '${d.transport}' (one of ${TRANSPORTS.join(', ')})`);
      }
      const ssd = /^nvme(\d+)$/.exec(d.device);
      if (ssd) {
        if (Number(ssd[1]) >= nvmes.length) {
          fail(`${dat}.device`, `unknown device '${d.device}': this host has ${nvmes.length} NVMe SSD(s) (host.nvmes)`);
        }
        if (!BLOCK_TRANSPORTS.includes(d.transport)) {
          fail(`${dat}.transport`, `an NVMe SSD is reached by ${BLOCK_TRANSPORTS.join(', ')}, not '${d.transport}'`);
        }
      } else {
        if (d.transport === 'tcp') return;
        const m = /^nic(\d+)$/.exec(d.device);
        if (!m || Number(m[1]) >= nics) {
          fail(`${dat}.device`, `unknown device '${d.device}': this host has ${nics} NIC(s), nic0 … nic${nics - 1}`);
        }
      }
      if (d.transport === 'passthrough' || d.transport === 'native') {
        const prev = owners.get(d.device);
        if (prev !== undefined) {
          fail(
            `${dat}.transport`,
            `${d.device} cannot be given to '${g.name}' by ${d.transport}: it is already ${prev}`,
          );
        }
        owners.set(d.device, `owned by '${g.name}' (${d.transport})`);
      }
    });
  });
  // A NIC a guest owns cannot also be served by the backend to paravirt guests.
  spec.guests.forEach((g, i) => {
    const devices: readonly GuestDeviceSpec[] = g.devices ?? [];
    devices.forEach((d, j) => {
      if (isServedTransport(d.transport) && owners.has(d.device)) {
        fail(
          `guests[${i}].devices[${j}].transport`,
          `${d.device} cannot be used by '${g.name}' through ${d.transport}: it is ${owners.get(d.device)}, not the driver domain's`,
        );
      }
    });
  });
}
