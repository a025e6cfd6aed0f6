/**
 * A domain thread that uses the store only through `StoreClient` on the port it was given:
 * writes and reads its home, tries to write another domain's home (must be refused with the
 * error code intact), then watches `<home>/ping` and reports once the host has written `pong`.
 */

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { StoreClient } from '../../../../hypervisor-sim/store/StoreClient.js';

/** What the test passes in `workerData`. */
export interface StoreWorkerData {
  readonly domid: number;
  readonly victim: number;
  readonly port: MessagePort;
}

/** Messages the worker posts. */
export type StoreWorkerReport =
  | { readonly type: 'watching' }
  | {
      readonly type: 'done';
      readonly readBack: string;
      readonly forgedCode: string | undefined;
      readonly forgedName: string | undefined;
      readonly events: readonly string[];
      readonly ping: string;
    }
  | { readonly type: 'failed'; readonly message: string };

async function run(): Promise<void> {
  const data = workerData as StoreWorkerData;
  const out = parentPort;
  if (out === null) throw new Error('StoreWorker must run in a worker thread');
  const home = `/local/domain/${data.domid}`;
  const client = new StoreClient(data.port);
  try {
    await client.write(`${home}/from-worker`, 'hello');
    const readBack = await client.read(`${home}/from-worker`);
    let forgedCode: string | undefined;
    let forgedName: string | undefined;
    try {
      await client.write(`/local/domain/${data.victim}/forged`, 'x');
    } catch (err) {
      forgedCode = (err as { code?: string }).code;
      forgedName = (err as Error).name;
    }
    const events: string[] = [];
    const ping = await new Promise<string>((resolve, reject) => {
      const path = `${home}/ping`;
      // Level-triggered: every event (the registration one included) re-reads the key.
      client
        .watch(path, (changed) => {
          events.push(changed);
          client.tryRead(path).then((v) => {
            if (v === 'pong') resolve(v);
          }, reject);
        })
        .then(() => out.postMessage({ type: 'watching' } satisfies StoreWorkerReport), reject);
    });
    out.postMessage({ type: 'done', readBack, forgedCode, forgedName, events, ping } satisfies StoreWorkerReport);
  } catch (err) {
    out.postMessage({ type: 'failed', message: String(err) } satisfies StoreWorkerReport);
  } finally {
    client.close();
  }
}

void run();
