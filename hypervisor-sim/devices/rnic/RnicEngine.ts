/**
 * The dedicated device thread's loop: poll the NICs, and when there is nothing to do, wait
 * adaptively (DESIGN §4): spin `spinBudget` polls on the doorbell words, then sleep in
 * Atomics.wait. Sleeping is announced in each device's DB_SLEEP word so a doorbell notifies only
 * when somebody sleeps (a notify nobody waits for is not sent).
 *
 * One device: the thread sleeps on that device's `doorbellWord`. Several devices (they must
 * share one fabric): it sleeps on the fabric's WAKE_SEQ word, which their doorbells bump while
 * DB_SLEEP says ON_FABRIC. Every sleep is bounded (IDLE_SLEEP_MS) so a stop request is seen
 * even if nobody wakes the thread; `stopRnicEngine` wakes it at once.
 */

import { pvError } from '../../../protocol/errors.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { DevWord, EngineSleep } from './DevLayout.js';
import type { RnicDevice } from './RnicDevice.js';
import { FabricWord, type RnicFabric } from './RnicFabric.js';

/** A shared word that asks the engine to return when non-zero. */
export interface StopWord {
  readonly words: Int32Array;
  readonly index: number;
}

/** Longest single sleep: a defence against a lost wake-up, not a timing assumption. */
const IDLE_SLEEP_MS = 50;

function stopped(stop: StopWord): boolean {
  // ORDERING: seq-cst load pairs with stopRnicEngine's store.
  return Atomics.load(stop.words, stop.index) !== 0;
}

function setSleep(devices: RnicDevice[], mode: EngineSleep): void {
  // ORDERING: seq-cst store BEFORE the final check of DB_SEQ (Dekker pair with wakeEngine's
  // add of DB_SEQ then load of DB_SLEEP).
  for (const dev of devices) Atomics.store(dev.doorbellWord.words, DevWord.DB_SLEEP, mode);
}

function unchanged(devices: RnicDevice[], seqs: Int32Array): boolean {
  for (let i = 0; i < devices.length; i++) {
    // ORDERING: seq-cst load; pairs with the doorbell's Atomics.add.
    if (Atomics.load(devices[i].doorbellWord.words, DevWord.DB_SEQ) !== seqs[i]) return false;
  }
  return true;
}

/**
 * Runs the devices until `stop` holds a non-zero value. Call it in the host's device Worker;
 * the devices' drivers must use `mmio('dedicated')`. Never throws once started.
 */
export function runRnicEngine(devices: RnicDevice[], stop: StopWord, spinBudget: number): void {
  if (devices.length === 0) throw pvError('PV_ERR_CONFIG', 'runRnicEngine needs at least one device');
  const fabric = devices[0].ctx.fabric;
  for (const dev of devices) {
    if (dev.ctx.fabric.buffer !== fabric.buffer)
      throw pvError('PV_ERR_CONFIG', 'one engine serves NICs of one host only');
  }
  const single = devices.length === 1;
  const seqs = new Int32Array(devices.length);
  const budget = Math.max(0, spinBudget | 0);
  while (!stopped(stop)) {
    // Snapshot BEFORE polling: a doorbell during the poll changes it, and then we do not sleep.
    // ORDERING: seq-cst loads; pair with the doorbells' Atomics.add of DB_SEQ.
    for (let i = 0; i < devices.length; i++) seqs[i] = Atomics.load(devices[i].doorbellWord.words, DevWord.DB_SEQ);
    let work = 0;
    for (const dev of devices) work += dev.poll();
    if (work > 0) continue;
    // Stage ledger: from here to the next poll the engine waits for a doorbell: IDLE.
    const prev = stages.enter(Stage.IDLE);
    idle(devices, seqs, budget, single, fabric, stop);
    stages.enter(prev);
  }
}

/** Spins `budget` polls on the doorbell words, then sleeps (see the file comment). */
function idle(
  devices: RnicDevice[],
  seqs: Int32Array,
  budget: number,
  single: boolean,
  fabric: RnicFabric,
  stop: StopWord,
): void {
  let spins = 0;
  while (spins < budget && unchanged(devices, seqs)) spins++;
  if (spins < budget) return;
  if (single) {
    const db = devices[0].doorbellWord;
    setSleep(devices, EngineSleep.ON_DEVICE);
    // ORDERING: wait re-checks DB_SEQ atomically against the snapshot.
    if (!stopped(stop)) Atomics.wait(db.words, db.index, seqs[0], IDLE_SLEEP_MS);
  } else {
    // ORDERING: snapshot WAKE_SEQ before announcing the sleep, so a bump after it is seen.
    const fseq = Atomics.load(fabric.words, FabricWord.WAKE_SEQ);
    setSleep(devices, EngineSleep.ON_FABRIC);
    if (unchanged(devices, seqs) && !stopped(stop)) {
      // ORDERING: a doorbell after the re-check saw ON_FABRIC and bumps WAKE_SEQ past `fseq`;
      // wait compares it atomically, so that bump either prevents or ends the sleep.
      Atomics.wait(fabric.words, FabricWord.WAKE_SEQ, fseq, IDLE_SLEEP_MS);
    }
  }
  setSleep(devices, EngineSleep.AWAKE);
}

/** Asks an engine running `devices` to return, and wakes it. */
export function stopRnicEngine(devices: RnicDevice[], stop: StopWord): void {
  // ORDERING: seq-cst store before the wake-ups; the engine re-checks it after every wake.
  Atomics.store(stop.words, stop.index, 1);
  Atomics.notify(stop.words, stop.index);
  for (const dev of devices) {
    const db = dev.doorbellWord;
    // ORDERING: bump then notify, so a sleeper whose snapshot predates the bump returns.
    Atomics.add(db.words, db.index, 1);
    Atomics.notify(db.words, db.index);
    const f = dev.ctx.fabric.words;
    // ORDERING: same for an engine sleeping on the fabric word (several devices).
    Atomics.add(f, FabricWord.WAKE_SEQ, 1);
    Atomics.notify(f, FabricWord.WAKE_SEQ);
  }
}
