/**
 * `pvio ring-bench` over virtio (issue 10): the Xen ring's two measurements — one 64 B request in
 * flight (round trip) and a full queue (throughput) — over a split or packed virtqueue, so the
 * three transports are printed side by side from one run.
 *
 * Two Workers and one SharedArrayBuffer of guest memory, nothing else shared but the virtio-mmio
 * register block and a stop word:
 *  - the device (VirtioDeviceWorker.ts): MmioDevice over a GuestMemoryMap of the guest memory and
 *    an echo server that copies each chain's 64 B device-readable request into its device-writable
 *    response buffer, as the Xen io backend answers a slot;
 *  - the guest (VirtioGuestWorker.ts): MmioDriver probes, negotiates EVENT_IDX (plus RING_PACKED for
 *    `packed`), places one queue in its own memory and drives it with SplitDriver / PackedDriver,
 *    checking every echo.
 * The queue has QS = 64 descriptors: 32 two-descriptor chains in flight, as many requests as the
 * order-0 Xen io ring holds (63 slots rounded down to 32), so the throughput rows are comparable.
 * Both sides poll up to `spinBudget` times before they sleep (device: the doorbell; guest: the
 * interrupt word), as the Xen ring's backend and frontend do with the same `--spin`.
 */

import { Worker } from 'node:worker_threads';
import { pvError } from '../../protocol/errors.js';

/** Descriptors per queue; chains are two descriptors, so QS / 2 requests are in flight. */
export const VIRTIO_BENCH_QS = 64;
/** Bytes of one request and of its response, as one Xen io slot. */
export const VIRTIO_BENCH_MSG = 64;
/** Guest-physical address of the queue (16-aligned) and of the first buffer. */
export const VIRTIO_BENCH_QUEUE_GPA = 4096;
export const VIRTIO_BENCH_BUF_GPA = 65536;
/** Guest memory: the queue, then a request and a response buffer per in-flight slot. */
export const VIRTIO_BENCH_MEM_BYTES = 1 << 20;

/** Word indices of the control block shared by the three threads. */
export const enum CtlWord {
  /** Set to 1 by the main thread when the guest is done; the device then returns its counters. */
  STOP = 0,
  WORDS = 1,
}

/** Which virtqueue layout. */
export type VirtqKind = 'split' | 'packed';

/** What the device Worker is given. */
export interface DeviceWorkerData {
  readonly kind: VirtqKind;
  readonly mem: SharedArrayBuffer;
  readonly ctl: SharedArrayBuffer;
  readonly spinBudget: number;
}

/** What the device Worker returns once stopped. */
export interface DeviceResult {
  /** Chains popped and echoed. */
  readonly served: number;
  /** Used-buffer interrupts raised (publishUsed() asked for them). */
  readonly interrupts: number;
  /** Doorbell sleeps after the spin budget ran out. */
  readonly sleeps: number;
  /** Times `kicked()` reported the queue. */
  readonly kicksSeen: number;
  readonly broken: boolean;
}

/** What the guest Worker is given. */
export interface GuestWorkerData {
  readonly kind: VirtqKind;
  readonly mode: 'pingpong' | 'throughput';
  readonly count: number;
  readonly spinBudget: number;
  readonly mem: SharedArrayBuffer;
  readonly regs: SharedArrayBuffer;
}

/** What the guest Worker returns. */
export interface GuestResult {
  readonly negotiated: string;
  readonly completed: number;
  /** Requests answered at least once (a duplicate answer counts in `completed` but not here). */
  readonly distinct: number;
  /** Responses whose length or bytes were not the request's echo. */
  readonly badData: number;
  /** QueueNotify writes (publish() said the device wanted one), chains published by them. */
  readonly kicks: number;
  readonly publishes: number;
  /** Interrupt waits after the spin budget ran out and the re-check found nothing; waits that timed out. */
  readonly sleeps: number;
  readonly timeouts: number;
  readonly seconds: number;
  readonly rate: number;
  /** Round trips in µs (pingpong only). */
  readonly samples?: number[];
}

/** One virtio run: the guest's and the device's view. */
export interface VirtioRun {
  readonly kind: VirtqKind;
  readonly guest: GuestResult;
  readonly device: DeviceResult;
}

function settle<T>(w: Worker, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    w.once('message', (m: T) => resolve(m));
    w.once('error', reject);
    w.once('exit', (code) =>
      reject(pvError('PV_ERR_DOMAIN_CRASHED', `${what} Worker exited (${code}) without a result`)),
    );
  });
}

/** Runs one mode over one virtqueue layout and returns both sides' counters. */
export async function runVirtioRing(
  kind: VirtqKind,
  mode: 'pingpong' | 'throughput',
  count: number,
  spinBudget: number,
): Promise<VirtioRun> {
  if (!Number.isSafeInteger(count) || count < 1) throw pvError('PV_ERR_INVALID_ARG', `count ${count}`);
  const mem = new SharedArrayBuffer(VIRTIO_BENCH_MEM_BYTES);
  const ctl = new SharedArrayBuffer(4 * CtlWord.WORDS);
  const ctlWords = new Int32Array(ctl);
  const devData: DeviceWorkerData = { kind, mem, ctl, spinBudget };
  const device = new Worker(new URL('./VirtioDeviceWorker.js', import.meta.url), { workerData: devData });
  let guest: Worker | undefined;
  try {
    // The device builds its register block; the guest gets it as a VM gets its mmio window.
    const regs = await new Promise<SharedArrayBuffer>((resolve, reject) => {
      device.once('message', (m: { regs: SharedArrayBuffer }) => resolve(m.regs));
      device.once('error', reject);
    });
    const deviceDone = settle<DeviceResult>(device, 'device');
    const gData: GuestWorkerData = { kind, mode, count, spinBudget, mem, regs };
    guest = new Worker(new URL('./VirtioGuestWorker.js', import.meta.url), { workerData: gData });
    const g = await Promise.race([settle<GuestResult>(guest, 'guest'), deviceDone.then(() => undefined)]);
    if (g === undefined) throw pvError('PV_ERR_DOMAIN_CRASHED', 'the device stopped before the guest finished');
    // ORDERING: seq-cst store; the device loads it each round and sleeps with a short timeout.
    Atomics.store(ctlWords, CtlWord.STOP, 1);
    const d = await deviceDone;
    return { kind, guest: g, device: d };
  } finally {
    // ORDERING: seq-cst store; stops the device on the error path too.
    Atomics.store(ctlWords, CtlWord.STOP, 1);
    await guest?.terminate();
    await device.terminate();
  }
}
