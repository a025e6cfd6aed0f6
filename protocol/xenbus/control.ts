/**
 * Toolstack-driven waits over the store. `control/shutdown` (xenstore-paths
 * `~/control/shutdown`): the toolstack asks a domain to power off by writing a reason there,
 * and the domain's program watches it and exits cleanly. Device directories: a frontend waits
 * for the toolstack to plug its device, as the guest's xenbus probe does.
 */

import type { StoreOps } from '../Hypercalls.js';
import type { DomId } from '../Types.js';

/** The key a toolstack writes to ask a domain to shut down. */
export function shutdownPath(domid: DomId): string {
  return `/local/domain/${domid}/control/shutdown`;
}

/** Resolves with the reason (`poweroff`, `reboot`, …) once the toolstack writes one. */
export async function waitForShutdown(store: StoreOps, domid: DomId): Promise<string> {
  const path = shutdownPath(domid);
  return new Promise<string>((resolve, reject) => {
    let done = false;
    let unwatch: (() => Promise<void>) | undefined;
    const check = (): void => {
      store.tryRead(path).then((reason) => {
        if (done || reason === undefined || reason === '') return;
        done = true;
        resolve(reason);
        unwatch?.().catch(() => {});
      }, reject);
    };
    store.watch(path, check).then((u) => {
      unwatch = u;
      if (done) u().catch(() => {});
    }, reject);
  });
}

/**
 * Resolves once `path` exists (a frontend waiting for the toolstack to plug its device, as the
 * guest's xenbus probe does on a watch of `device/`).
 */
export async function waitForPath(store: StoreOps, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    let unwatch: (() => Promise<void>) | undefined;
    const check = (): void => {
      store.tryRead(path).then((v) => {
        if (done || v === undefined) return;
        done = true;
        resolve();
        unwatch?.().catch(() => {});
      }, reject);
    };
    store.watch(path, check).then((u) => {
      unwatch = u;
      if (done) u().catch(() => {});
    }, reject);
  });
}
