/**
 * Finds the devices the toolstack asks this driver domain to serve: watches
 * `/local/domain/<me>/backend/<type>` and runs one backend `XenbusDevice` per
 * `<frontDomid>/<devid>` that appears, destroying it when its directory goes away (unplug, or
 * the frontend domain died and the toolstack cleaned up). Directory names come from the store,
 * which other domains cannot write here, but they are still parsed strictly.
 */

import type { StoreOps, Unwatch } from '../../protocol/Hypercalls.js';
import { type DomId, domId } from '../../protocol/Types.js';
import type { BackendHooks } from '../../protocol/xenbus/XenbusDevice.js';
import { XenbusDevice } from '../../protocol/xenbus/XenbusDevice.js';

/** Makes the hooks for one device. */
export type HooksFactory = (frontDomid: DomId, devid: number) => BackendHooks;

const NUMBER = /^(0|[1-9][0-9]{0,9})$/;

/** One device under a backend directory: `<front>/<devid>`. */
export interface BackendEntry {
  readonly key: string;
  readonly front: DomId;
  readonly devid: number;
}

/**
 * The `<front>/<devid>` entries under a driver domain's `dir` (`…/backend/<type>`), names parsed
 * strictly (others skipped); a directory that does not exist is empty.
 */
export async function listBackendEntries(store: StoreOps, dir: string): Promise<BackendEntry[]> {
  const list = (path: string): Promise<string[]> => store.directory(path).catch(() => []);
  const out: BackendEntry[] = [];
  for (const fe of await list(dir)) {
    if (!NUMBER.test(fe)) continue;
    for (const dev of await list(`${dir}/${fe}`)) {
      if (NUMBER.test(dev)) out.push({ key: `${fe}/${dev}`, front: domId(Number(fe)), devid: Number(dev) });
    }
  }
  return out;
}

export class BackendDirWatcher {
  private readonly _devices = new Map<string, XenbusDevice>();
  private _unwatch: Unwatch | undefined;
  private _scanning = Promise.resolve();
  /** Errors from devices that failed to start (for logs and tests). */
  readonly errors: Error[] = [];

  constructor(
    private readonly _store: StoreOps,
    private readonly _domid: DomId,
    private readonly _type: string,
    private readonly _hooks: HooksFactory,
  ) {}

  /** The watched directory. */
  get dir(): string {
    return `/local/domain/${this._domid}/backend/${this._type}`;
  }

  /** Devices being served, by `<front>/<devid>`. */
  devices(): ReadonlyMap<string, XenbusDevice> {
    return this._devices;
  }

  /** Starts watching; the first scan happens at once (a watch fires on registration). */
  async start(): Promise<void> {
    this._unwatch = await this._store.watch(this.dir, () => {
      this._scanning = this._scanning
        .then(() => this._scan())
        .catch((err: unknown) => {
          this.errors.push(err as Error);
        });
    });
  }

  /** Stops watching and closes every device (orderly). */
  async stop(): Promise<void> {
    await this._unwatch?.();
    await this._scanning;
    for (const dev of this._devices.values()) await dev.destroy();
    this._devices.clear();
  }

  private async _scan(): Promise<void> {
    const seen = new Set<string>();
    for (const { key, front, devid } of await listBackendEntries(this._store, this.dir)) {
      seen.add(key);
      if (this._devices.has(key)) continue;
      const device = new XenbusDevice({
        role: 'backend',
        store: this._store,
        domid: this._domid,
        type: this._type,
        devid,
        frontDomid: front,
        hooks: this._hooks(front, devid),
      });
      this._devices.set(key, device);
      try {
        await device.start();
      } catch (err) {
        this.errors.push(err as Error);
        this._devices.delete(key);
        await device.destroy();
      }
    }
    for (const [key, device] of this._devices) {
      if (!seen.has(key)) {
        this._devices.delete(key);
        await device.destroy();
      }
    }
  }
}
