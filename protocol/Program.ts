/**
 * What a domain program receives: the contract between the host that starts a domain and the
 * module that runs in it. A program is an ordinary ES module whose default export is
 * `main(env)`; its resolved value is the domain's result (structured-cloneable).
 */

import type { Hypercalls } from './Hypercalls.js';
import type { DeviceAttachment } from './Pci.js';
import type { DomId } from './Types.js';

/** The environment handed to a domain program. */
export interface DomainEnv {
  /** This domain's id. */
  readonly domid: DomId;
  /** The domain's name as given at creation. */
  readonly name: string;
  /** Hypervisor services (memory, grants, event channels, store). */
  readonly hypercalls: Hypercalls;
  /** Devices this domain was given, in the order the scenario listed them. */
  readonly devices: readonly DeviceAttachment[];
  /** Arguments from the scenario (structured-cloned). */
  readonly args: Readonly<Record<string, unknown>>;
  /** Writes a line to the domain's console. */
  log(line: string): void;
}

/** Shape of a program module's default export. */
export type DomainMain = (env: DomainEnv) => Promise<unknown> | unknown;
